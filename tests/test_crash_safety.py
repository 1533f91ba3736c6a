"""Killing training and decoding on purpose: nothing is lost, nothing is half-written, results are exact."""

import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import read_records, untimed
from test_train import log_records

from clipwhisper.model.checkpoint import read_checkpoint_config
from clipwhisper.training.run_folder import RunFolder

STEPS = 30


def train_command(corpus: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "clipwhisper", "train", "-c", "tiny", "--data-path", str(corpus),
            "--output-path", str(out), "--max-steps", str(STEPS), "--save-steps", "3", "--seed", "1",
            "--resume", "auto"]


ENV = {**os.environ, "CLIPWHISPER_LOG_EVERY": "1", "CLIPWHISPER_KEEP_LAST": "2", "CLIPWHISPER_LEARNING_RATE": "0.003"}


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in log_records(run)]


def steps_logged(run: Path) -> int:
    log = run / "train_log.jsonl"
    return log.read_text().count('"event": "train"') if log.exists() else 0


def wait_for(condition, process, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"exited early with {process.returncode}: {process.stderr.read()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def saving_now(run: Path) -> bool:
    return any(p.name.startswith(".step-") and ".tmp-" in p.name for p in run.iterdir()) if run.exists() else False


@pytest.fixture(scope="module")
def straight_run(synth_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    subprocess.run(train_command(synth_corpus, out), env=ENV, check=True, capture_output=True)
    return out


def test_sigkill_at_random_moments_loses_nothing(straight_run, synth_corpus, tmp_path):
    """10 kills, half of them while a checkpoint is being written; then the run finishes exactly."""
    run, rng, kills = tmp_path / "run", random.Random(5), 0
    while kills < 10:
        process = subprocess.Popen(train_command(synth_corpus, run), env=ENV, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        if kills % 2:  # during a checkpoint write
            wait_for(lambda: saving_now(run), process)
        else:  # anywhere: start-up, a step, an evaluation, a save
            steps_before, deadline = steps_logged(run), time.monotonic() + rng.uniform(1.0, 7.0)
            # but before the run gets two steps further, however fast this machine trains: 10 kills must fit in it
            while time.monotonic() < deadline and steps_logged(run) < steps_before + 2 and process.poll() is None:
                time.sleep(0.01)
        if process.poll() is not None:
            break  # finished before the kill: the loop below must then see a complete run
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        latest = RunFolder(run).latest() if run.exists() else None
        if latest is not None:  # the newest checkpoint that resume would take is complete and readable
            assert read_checkpoint_config(latest)["step"] == int(latest.name.split("-")[1])
    assert kills == 10
    subprocess.run(train_command(synth_corpus, run), env=ENV, check=True, capture_output=True)
    assert losses(run) == losses(straight_run)
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no partial folders left behind


def test_a_kill_while_pruning_leaves_nothing_half_deleted(tmp_path):
    """Pruning renames a step folder out of the steps before deleting it; what a kill leaves is tidied."""
    run = tmp_path / "run"
    for step in (1, 2, 3):
        (run / f"step-00000{step}" / "train_state").mkdir(parents=True)
        (run / f"step-00000{step}" / "config.json").write_text("{}")
    RunFolder(run).prune(keep_last=1)
    assert sorted(p.name for p in run.iterdir()) == ["step-000003"]
    (run / ".step-000001.del-77" / "train_state").mkdir(parents=True)  # killed inside the delete
    (run / "step-000002" / "train_state").mkdir(parents=True)  # half deleted in place (config.json gone first)
    assert sorted(p.name for p in RunFolder(run).path.iterdir()) == ["step-000003"]


def test_sigint_saves_and_exits_130_then_resumes_exactly(straight_run, synth_corpus, tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(train_command(synth_corpus, run), env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    log = run / "train_log.jsonl"
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 4, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    stopped = [json.loads(line) for line in log.read_text().splitlines() if '"stopped"' in line]
    assert len(stopped) == 1 and stopped[0]["signal"] == signal.SIGINT
    assert f"step-{stopped[0]['step']:06d}" in stderr and "--resume auto" in stderr
    assert RunFolder(run).latest().name == f"step-{stopped[0]['step']:06d}"
    subprocess.run(train_command(synth_corpus, run), env=ENV, check=True, capture_output=True)
    assert losses(run) == losses(straight_run)


def test_sigkill_during_decode_then_rerun_gives_the_same_hyps(synth_corpus, straight_run, tmp_path):
    def command(out):
        return [sys.executable, "-m", "clipwhisper", "decode", "--model-path", str(straight_run / "final"),
                "--test-tsv", str(synth_corpus / "test.tsv"), "--output-dir", str(out), "--batch-size", "2",
                "--snr-db", "clean", "--snr-db", "0", "--noise", str(synth_corpus / "noise" / "babble.wav")]

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(command(straight), check=True, capture_output=True)
    hyps, total = killed / "hyps.jsonl", len((straight / "hyps.jsonl").read_text().splitlines())

    def written(fraction):
        return hyps.exists() and len(hyps.read_text().splitlines()) >= fraction * total

    for fraction in (0.2, 0.6):  # kill twice, at different points of the test set
        process = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(functools.partial(written, fraction), process)
        process.send_signal(signal.SIGKILL)
        process.wait()
    subprocess.run(command(killed), check=True, capture_output=True)
    records = read_records(killed / "hyps.jsonl")
    assert untimed(records) == untimed(read_records(straight / "hyps.jsonl"))  # timings are the wall clock's
    keys = [(r["id"], r["modality"], r["snr"]) for r in records]
    assert len(keys) == len(set(keys)) == total
    cells = [json.loads((folder / "summary.json").read_text())["cells"] for folder in (killed, straight)]
    assert untimed(cells[0]) == untimed(cells[1])
