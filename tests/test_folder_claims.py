"""One writer per run or decode folder, and one configuration per folder: nothing is silently reused or mixed."""

import json
import os
import socket
import subprocess
import sys

from conftest import by_id, untimed
from typer.testing import CliRunner

from clipwhisper.cli import app
from clipwhisper.data.manifest import read_manifest, write_manifest
from clipwhisper.runtime.folder_claim import LOCK_FILE, claimed

runner = CliRunner()


def small_manifest(corpus, folder, count=2):
    folder.mkdir()
    utterances = read_manifest(corpus / "test.tsv")[:count]
    write_manifest(folder / "test.tsv", corpus, utterances, wrd=folder / "test.wrd")
    return folder / "test.tsv"


def decode(checkpoint, tsv, out, *more):
    return runner.invoke(app, ["decode", "--model-path", str(checkpoint), "--test-tsv", str(tsv), "--output-dir",
                               str(out), "--max-new-tokens", "4", *more])


def records(out):
    return [json.loads(line) for line in (out / "hyps.jsonl").read_text().splitlines()]


def test_a_second_writer_is_refused_with_the_holders_pid_and_host(checkpoint, synth_corpus, tmp_path):
    tsv, out = small_manifest(synth_corpus, tmp_path / "m"), tmp_path / "dec"
    with claimed(out):  # this process decodes there, as far as any other process can tell
        result = subprocess.run([sys.executable, "-m", "clipwhisper", "decode", "--model-path", str(checkpoint),
                                 "--test-tsv", str(tsv), "--output-dir", str(out)], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert f"in use by PID {os.getpid()} on {socket.gethostname()}" in result.stderr
    assert not (out / "hyps.jsonl").exists()


def test_a_lock_left_by_a_dead_process_is_no_lock(checkpoint, synth_corpus, tmp_path):
    tsv, out = small_manifest(synth_corpus, tmp_path / "m"), tmp_path / "dec"
    out.mkdir()
    (out / LOCK_FILE).write_text("PID 999999999 on elsewhere\n")  # what a killed decode leaves
    assert decode(checkpoint, tsv, out).exit_code == 0
    assert len(records(out)) == 2


def test_a_rerun_with_other_settings_is_refused_then_overwrite_starts_over(checkpoint, synth_corpus, tmp_path):
    tsv, out = small_manifest(synth_corpus, tmp_path / "m"), tmp_path / "dec"
    assert decode(checkpoint, tsv, out).exit_code == 0
    first = records(out)
    assert decode(checkpoint, tsv, out).exit_code == 0  # the same decode resumes: nothing to do, nothing added
    assert records(out) == first
    other = decode(checkpoint, tsv, out, "--beam-size", "2")
    assert other.exit_code == 2
    assert "beam_size: 1 there, 2 now" in other.output and "--overwrite" in other.output
    bigger = small_manifest(synth_corpus, tmp_path / "m3", count=3)
    refused = decode(checkpoint, bigger, out)
    assert refused.exit_code == 2 and "test_tsv" in refused.output
    assert records(out) == first  # untouched by the refused reruns
    (out / "mine.txt").write_text("a user's file")
    assert decode(checkpoint, bigger, out, "--overwrite").exit_code == 0
    assert [r["id"] for r in records(out)] == [u.id for u in read_manifest(bigger)]
    assert (out / "mine.txt").read_text() == "a user's file"


def test_torn_or_foreign_lines_in_hyps_are_dropped_and_their_utterances_redone(checkpoint, synth_corpus, tmp_path):
    tsv, out = small_manifest(synth_corpus, tmp_path / "m", count=3), tmp_path / "dec"
    assert decode(checkpoint, tsv, out).exit_code == 0
    whole = (out / "hyps.jsonl").read_text().splitlines()
    (out / "hyps.jsonl").write_text("\n".join([whole[0], '{"note": "a line of mine"}', '[1, 2]', "not json",
                                               whole[2], '{"id": "x", "modal']))
    result = decode(checkpoint, tsv, out)
    assert result.exit_code == 0, result.output
    assert "4 lines were not whole records" in " ".join(result.output.split())  # rich wraps lines
    assert by_id(untimed(records(out))) == by_id(untimed(map(json.loads, whole)))  # timings aside


def test_a_folder_of_someone_elses_files_is_not_written_into(checkpoint, synth_corpus, tmp_path):
    tsv, out = small_manifest(synth_corpus, tmp_path / "m"), tmp_path / "theirs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = decode(checkpoint, tsv, out)
    assert refused.exit_code == 2 and "holds files clipwhisper did not write (notes.txt)" in refused.output
    train = runner.invoke(app, ["train", "-c", "tiny", "--data-path", str(synth_corpus), "--output-path", str(out),
                                "--max-steps", "1"])
    assert train.exit_code == 2 and "holds files clipwhisper did not write" in train.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # as it was: no lock file left behind
    assert decode(checkpoint, tsv, out, "--overwrite").exit_code == 0  # asked for: written beside them
    assert (out / "notes.txt").read_text() == "mine"


def test_results_with_no_record_of_their_settings_are_not_reused(checkpoint, synth_corpus, tmp_path):
    tsv, out = small_manifest(synth_corpus, tmp_path / "m"), tmp_path / "dec"
    assert decode(checkpoint, tsv, out).exit_code == 0
    (out / "identity.json").unlink()  # a folder an older clipwhisper wrote
    result = decode(checkpoint, tsv, out)
    assert result.exit_code == 2 and "no record of how they were made" in result.output


def test_training_into_a_folder_in_use_or_made_with_other_settings_is_refused(synth_corpus, tmp_path):
    run = tmp_path / "run"
    train = ["train", "-c", "tiny", "--data-path", str(synth_corpus), "--output-path", str(run), "--max-steps", "1"]
    assert runner.invoke(app, [*train, "--modality", "both"]).exit_code == 0
    with claimed(run):
        busy = runner.invoke(app, [*train, "--resume", "auto"])
    assert busy.exit_code == 2 and "in use by PID" in busy.output
    other = runner.invoke(app, [*train, "--resume", "auto", "--modality", "audio"])
    assert other.exit_code == 2
    assert 'model.modality: "both" there, "audio" now' in other.output
    assert runner.invoke(app, [*train, "--resume", "auto", "--max-steps", "2"]).exit_code == 0  # longer: allowed


def test_data_commands_do_not_write_into_someone_elses_folder(synth_corpus, tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "train.tsv").write_text("a manifest of mine")
    utterances = read_manifest(synth_corpus / "test.tsv")[:2]
    transcripts = tmp_path / "text"
    transcripts.write_text("".join(f"{u.id} {u.text}\n" for u in utterances))
    commands = {"synth": ["synth", str(theirs), "-n", "2"],
                "prepare": ["prepare", str(utterances[0].media("video")), "--out", str(theirs)],
                "manifest from-folder": ["manifest", "from-folder", str(synth_corpus / "audio"), str(transcripts),
                                         "--out", str(theirs)]}
    for name, command in commands.items():
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (name, result.output)
        assert "holds files clipwhisper did not write (train.tsv)" in " ".join(result.output.split()), name
    assert [p.name for p in theirs.iterdir()] == ["train.tsv"]
    assert (theirs / "train.tsv").read_text() == "a manifest of mine"


def test_a_corpus_is_not_rewritten_with_other_settings(tmp_path):
    out = tmp_path / "corpus"
    assert runner.invoke(app, ["synth", str(out), "-n", "3", "--image-size", "16"]).exit_code == 0
    listing = sorted(p.relative_to(out) for p in out.rglob("*"))
    other = runner.invoke(app, ["synth", str(out), "-n", "3", "--image-size", "16", "--seed", "1"])
    assert other.exit_code == 2 and "seed: 0 there, 1 now" in other.output
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == listing
    again = runner.invoke(app, ["synth", str(out), "-n", "3", "--image-size", "16"])  # the same corpus: rewritten
    assert again.exit_code == 0, again.output


def test_a_config_path_no_file_can_have_is_a_one_line_usage_error():
    result = runner.invoke(app, ["train", "-c", "tiny\x00.yaml"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["clipwhisper: error: 'tiny\\x00.yaml': not a usable path "
                                                   "(embedded null byte)"]
