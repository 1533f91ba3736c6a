"""DDP training on the CPU with the gloo backend and 2 processes under torchrun."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from test_train import log_records

NO_DROPOUT = {"CLIPWHISPER_MODEL__FUSION__AUDIO_DROP": "0", "CLIPWHISPER_MODEL__FUSION__VIDEO_DROP": "0"}
TOLERANCE = 1e-5  # relative: float sums in another order (per-rank gradients are averaged by all-reduce)


def train(corpus, out, ranks, batch_size, max_steps, env=None, resume=False):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] \
        if ranks > 1 else [sys.executable]
    command = [*launcher, "-m", "clipwhisper", "train", "-c", "tiny", "--data-path", str(corpus), "--output-path",
               str(out), "--batch-size", str(batch_size), "--max-steps", str(max_steps), "--save-steps", "6"]
    environment = {**os.environ, "CLIPWHISPER_LOG_EVERY": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run([*command, *(["--resume", "auto"] if resume else [])], env=environment,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


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


def test_two_ranks_at_batch_4_train_as_one_process_at_batch_8(single, ddp):
    out, result = ddp
    losses = [r["loss"] for r in log_records(out)]
    assert losses == pytest.approx([r["loss"] for r in log_records(single)], rel=TOLERANCE)
    assert [r["step"] for r in log_records(out)] == list(range(1, 13))  # rank 0 alone logs
    assert result.stdout.count("training done") == 1  # and prints
    ours, theirs = weights(out / "final"), weights(single / "final")
    assert all(torch.allclose(ours[k], theirs[k], rtol=1e-3, atol=1e-5) for k in theirs)


def test_a_two_rank_checkpoint_resumes_on_one_process(single, ddp, synth_corpus, tmp_path):
    out = tmp_path / "resumed"
    out.mkdir()
    shutil.copytree(ddp[0] / "step-000006", out / "step-000006")
    shutil.copy(ddp[0] / "train_log.jsonl", out / "train_log.jsonl")
    train(synth_corpus, out, 1, 8, 12, NO_DROPOUT, resume=True)
    assert [r["loss"] for r in log_records(out)] == pytest.approx([r["loss"] for r in log_records(single)],
                                                                  rel=TOLERANCE)


def test_modality_dropout_and_accumulation_under_ddp(synth_corpus, tmp_path):
    """No unused-parameter errors (tiny drops audio or video for half the items); grad_accum 2 syncs once."""
    train(synth_corpus, tmp_path / "dropout", 2, 4, 4, {"CLIPWHISPER_GRAD_ACCUM": "2"})
    assert [r["step"] for r in log_records(tmp_path / "dropout")] == [1, 2, 3, 4]


def test_sharded_decode_equals_single_process_decode(checkpoint, synth_corpus, tmp_path):
    def decode(out, ranks):
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] \
            if ranks > 1 else [sys.executable]
        command = [*launcher, "-m", "clipwhisper", "decode", "--model-path", str(checkpoint), "--test-tsv",
                   str(synth_corpus / "test.tsv"), "--output-dir", str(out), "--batch-size", "4",
                   "--snr-db", "clean", "--snr-db", "0", "--noise", str(synth_corpus / "noise" / "babble.wav")]
        result = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]

    decode(tmp_path / "one", 1)
    decode(tmp_path / "two", 2)
    assert (tmp_path / "two" / "hyps.jsonl").read_text() == (tmp_path / "one" / "hyps.jsonl").read_text()
    assert (tmp_path / "two" / "summary.json").read_text() == (tmp_path / "one" / "summary.json").read_text()
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["hyps.jsonl", "summary.json"]
