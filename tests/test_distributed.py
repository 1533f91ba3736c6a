"""DDP and FSDP training and sharded decoding on the CPU with the gloo backend and 2 processes under torchrun."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import read_records, untimed
from safetensors import safe_open
from test_train import bad_sample_records, broken_corpus, log_records

from clipwhisper.data.dataset import BucketBatchSampler
from clipwhisper.data.manifest import read_manifest
from clipwhisper.data.utterance import duration_s

NO_DROPOUT = {"CLIPWHISPER_MODEL__FUSION__AUDIO_DROP": "0", "CLIPWHISPER_MODEL__FUSION__VIDEO_DROP": "0"}
TOLERANCE = 1e-5  # relative: float sums in another order (per-rank gradients are averaged by all-reduce)


def train(corpus, out, ranks, batch_size, max_steps, env=None, resume=False, args=(), check=True):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] \
        if ranks > 1 else [sys.executable]
    command = [*launcher, "-m", "clipwhisper", "train", "-c", "tiny", "--data-path", str(corpus), "--output-path",
               str(out), "--batch-size", str(batch_size), "--max-steps", str(max_steps), "--save-steps", "6"]
    environment = {**os.environ, "CLIPWHISPER_LOG_EVERY": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run([*command, *(["--resume", "auto"] if resume else []), *args], env=environment,
                            capture_output=True, text=True, timeout=600)  # a rank left waiting would hang
    assert result.returncode == 0 or not check, result.stderr[-3000:]
    return result


def learnt(key, tensor):
    """``tensor`` without the key third of an attention's ``in_proj_bias``: its true gradient is zero (a softmax
    ignores what a query adds to every key alike), so Adam moves it by rounding noise alone, which differs
    between one process and two (about 2e-5 after 12 steps of the tiny preset)."""
    if key.endswith("attn.in_proj_bias"):
        third = len(tensor) // 3
        return torch.cat([tensor[:third], tensor[2 * third:]])
    return tensor


def weights(folder):
    with safe_open(folder / "model.safetensors", "pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}


@pytest.fixture(scope="module")
def single(synth_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    train(synth_corpus, out, 1, 8, 12, NO_DROPOUT)
    return out


@pytest.fixture(scope="module")
def ddp(synth_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    return out, train(synth_corpus, out, 2, 4, 12, NO_DROPOUT)


@pytest.fixture(scope="module")
def fsdp(synth_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp") / "run"
    return out, train(synth_corpus, out, 2, 4, 12, NO_DROPOUT, args=["--strategy", "fsdp"])


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_at_batch_4_train_as_one_process_at_batch_8(single, strategy, request):
    out, result = request.getfixturevalue(strategy)
    losses = [r["loss"] for r in log_records(out)]
    assert losses == pytest.approx([r["loss"] for r in log_records(single)], rel=TOLERANCE)
    assert [r["step"] for r in log_records(out)] == list(range(1, 13))  # rank 0 alone logs
    assert result.stdout.count("training done") == 1  # and prints
    ours, theirs = weights(out / "final"), weights(single / "final")  # FSDP: gathered from the shards
    assert all(torch.allclose(learnt(k, ours[k]), learnt(k, theirs[k]), rtol=1e-3, atol=1e-5) for k in theirs)


def test_two_nodes_train_as_one_process(single, synth_corpus, tmp_path):
    """A multi-node launch (torchrun --nnodes 2, c10d rendezvous), both nodes on this host as two launchers."""
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
               "--rdzv-backend=c10d", f"--rdzv-endpoint=localhost:{port}", "--rdzv-id=clipwhisper-test",
               "-m", "clipwhisper", "train", "-c", "tiny", "--data-path", str(synth_corpus), "--output-path",
               str(tmp_path / "run"), "--batch-size", "4", "--max-steps", "12"]
    env = {**os.environ, "CLIPWHISPER_LOG_EVERY": "1", "OMP_NUM_THREADS": "1", **NO_DROPOUT}
    nodes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [node.communicate(timeout=600)[1] for node in nodes]
    assert all(node.returncode == 0 for node in nodes), errors[0][-2000:] + errors[1][-2000:]
    assert [r["loss"] for r in log_records(tmp_path / "run")] == pytest.approx(
        [r["loss"] for r in log_records(single)], rel=TOLERANCE)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_two_rank_checkpoint_resumes_on_one_process(single, strategy, request, synth_corpus, tmp_path):
    out = tmp_path / "resumed"
    out.mkdir()
    run = request.getfixturevalue(strategy)[0]
    shutil.copytree(run / "step-000006", out / "step-000006")
    shutil.copy(run / "train_log.jsonl", out / "train_log.jsonl")
    train(synth_corpus, out, 1, 8, 12, NO_DROPOUT, resume=True)
    assert [r["loss"] for r in log_records(out)] == pytest.approx([r["loss"] for r in log_records(single)],
                                                                  rel=TOLERANCE)


def test_a_one_process_checkpoint_resumes_sharded_on_two_ranks(single, synth_corpus, tmp_path):
    """The optimizer state saved whole is cut into each rank's shard on load."""
    out = tmp_path / "resumed"
    out.mkdir()
    shutil.copytree(single / "step-000006", out / "step-000006")
    shutil.copy(single / "train_log.jsonl", out / "train_log.jsonl")
    train(synth_corpus, out, 2, 4, 12, NO_DROPOUT, resume=True, args=["--strategy", "fsdp"])
    assert [r["loss"] for r in log_records(out)] == pytest.approx([r["loss"] for r in log_records(single)],
                                                                  rel=TOLERANCE)


def test_fsdp_with_compiled_layers_trains_as_one_process(synth_corpus, tmp_path):
    """On a GPU --compile is the default, so FSDP runs over compiled decoder layers (compiled, then sharded)."""
    train(synth_corpus, tmp_path / "one", 1, 8, 3, NO_DROPOUT)
    train(synth_corpus, tmp_path / "two", 2, 4, 3, NO_DROPOUT, args=["--strategy", "fsdp", "--compile"])
    assert [r["loss"] for r in log_records(tmp_path / "two")] == pytest.approx(
        [r["loss"] for r in log_records(tmp_path / "one")], rel=TOLERANCE)


def test_fsdp_shards_a_frozen_base_with_its_lora_adapter(synth_corpus, tmp_path):
    """LoRA on a frozen LLM with frozen encoders: a unit holds frozen and trainable tensors. In fp32 the losses
    and logged parameter updates equal one process's; in bf16 (frozen parts bf16, trainable fp32) it trains
    and writes an adapter that loads."""
    from clipwhisper.model.checkpoint import load_checkpoint

    lora = {**NO_DROPOUT, "CLIPWHISPER_MODEL__LLM__FINETUNE": "lora", "CLIPWHISPER_MODEL__LLM__LORA__DROPOUT": "0",
            "CLIPWHISPER_MODEL__AUDIO_ENCODER__TRAINABLE": "false",
            "CLIPWHISPER_MODEL__VIDEO_ENCODER__TRAINABLE": "false"}
    args = ["--log-param-updates", "--precision"]
    train(synth_corpus, tmp_path / "one", 1, 8, 4, lora, args=[*args, "fp32"])
    train(synth_corpus, tmp_path / "two", 2, 4, 4, lora, args=[*args, "fp32", "--strategy", "fsdp"])
    assert [r["loss"] for r in log_records(tmp_path / "two")] == pytest.approx(
        [r["loss"] for r in log_records(tmp_path / "one")], rel=TOLERANCE)

    def updates(run, key):
        return [part[key] for record in log_records(run, "param_updates") for part in record["components"].values()]

    assert updates(tmp_path / "two", "tensors_changed") == updates(tmp_path / "one", "tensors_changed")
    assert updates(tmp_path / "two", "update_norm") == pytest.approx(updates(tmp_path / "one", "update_norm"),
                                                                     rel=1e-3)
    train(synth_corpus, tmp_path / "bf16", 2, 4, 4, lora, args=[*args, "bf16", "--strategy", "fsdp"])
    model = load_checkpoint(tmp_path / "bf16" / "final")
    assert any("lora_" in name for name, _ in model.llm.named_parameters())


def test_bad_samples_on_every_rank_are_listed_by_rank_0(synth_corpus, tmp_path):
    """2 ranks x batch 1: a broken file empties its rank's micro-batch, so both ranks skip that step; every
    broken file is listed, whichever rank read it. --on-bad-sample fail stops both ranks with the file's name."""
    data, broken = broken_corpus(synth_corpus, tmp_path)
    run = tmp_path / "skip"
    train(data, run, 2, 1, 1000, args=["--max-epochs", "1"])
    assert sorted(r["id"] for r in bad_sample_records(run)) == sorted(broken)
    train_set = read_manifest(data / "train.tsv")  # the global batches of 2 the ranks split
    batches = BucketBatchSampler([duration_s(u, 25) for u in train_set], 2, seed=0).batches()
    broken_in = [sum(train_set[i].id in broken for i in batch) for batch in batches]
    assert len(log_records(run, "skipped_micro_batches")) == broken_in.count(1)  # one rank had a sample
    assert json.loads((run / "final" / "config.json").read_text())["step"] == broken_in.count(0)
    failed = train(data, tmp_path / "fail", 2, 1, 1000, args=["--on-bad-sample", "fail"], check=False)
    assert failed.returncode == 1 and any(str(path) in failed.stderr for path in broken.values())


def test_modality_dropout_and_accumulation_under_ddp(synth_corpus, tmp_path):
    """No unused-parameter errors (tiny drops audio or video for half the items); grad_accum 2 syncs once."""
    train(synth_corpus, tmp_path / "dropout", 2, 4, 4, {"CLIPWHISPER_GRAD_ACCUM": "2"})
    assert [r["step"] for r in log_records(tmp_path / "dropout")] == [1, 2, 3, 4]


def test_sharded_decode_equals_single_process_decode(untrained_checkpoint, synth_corpus, tmp_path):
    def decode(out, ranks):
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] \
            if ranks > 1 else [sys.executable]
        command = [*launcher, "-m", "clipwhisper", "decode", "--model-path", str(untrained_checkpoint), "--test-tsv",
                   str(synth_corpus / "test.tsv"), "--output-dir", str(out), "--batch-size", "4",
                   "--snr-db", "clean", "--snr-db", "0", "--noise", str(synth_corpus / "noise" / "babble.wav")]
        result = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]

    decode(tmp_path / "one", 1)
    decode(tmp_path / "two", 2)
    one, two = (read_records(tmp_path / name / "hyps.jsonl") for name in ("one", "two"))
    assert untimed(two) == untimed(one) and len({r["hyp"] for r in one}) > 5  # timings aside, the same file
    cells = [json.loads((tmp_path / name / "summary.json").read_text())["cells"] for name in ("one", "two")]
    assert untimed(cells[1]) == untimed(cells[0])
    left = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert left == ["clipwhisper.lock", "hyps.jsonl", "identity.json", "scores.txt", "summary.json", "trn",
                    "wer_vs_snr.png"]


def test_the_scaling_benchmark_runs_and_agrees_across_process_counts(tmp_path):
    """benchmarks/scaling.py (issue 9's measurements) in --quick mode: 2 ranks follow 1 rank's loss curve and
    decode the same hypotheses."""
    script = Path(__file__).parent.parent / "benchmarks" / "scaling.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outputs = {}
    for ranks in (1, 2):
        outputs[ranks] = tmp_path / f"{ranks}.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
                   str(script), "--quick", "--global-batch", "8", "--batches", "2", "--steps", "3", "--warmup", "1",
                   "--new-tokens", "6", "--out", str(outputs[ranks])]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=script.parent)
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = (json.loads(outputs[r].read_text()) for r in (1, 2))
    assert two["losses"] == pytest.approx(one["losses"], rel=TOLERANCE) and len(one["losses"]) == 4
    assert two["hyps"] == one["hyps"] and len(one["hyps"]) == 16


ENDS_ITS_GROUP = """
import os, sys
from clipwhisper.runtime.distributed import Distributed
cluster = Distributed.from_env("cpu")
with cluster.closing():
    import transformers
    transformers.LlamaConfig()  # imports torch.distributed.nn, which binds the world group if already started
    cluster.barrier()
    cluster.broadcast(cluster.rank)
task = f"/proc/{os.getpid()}/task"
names = [open(f"{task}/{thread}/comm").read().strip() for thread in os.listdir(task)]
sys.exit(f"gloo threads alive at exit: {names}" if any("gloo" in name for name in names) else 0)
"""


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads thread names from /proc")
def test_a_rank_ends_its_process_group_before_the_interpreter_shuts_down(tmp_path):
    # gloo's threads still running at shutdown abort the process now and then (SIGABRT after the work is done)
    script = tmp_path / "ends_group.py"
    script.write_text(ENDS_ITS_GROUP, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
