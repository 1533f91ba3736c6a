from __future__ import annotations

import json
from pathlib import Path

import ffmpeg
import pytest

from clipwhisper.data.media import ffmpeg_binary


def make_media(path: Path, *, audio: bool = True, video: bool = True, seconds: float = 1.0,
               rate: int = 16000, channels: int = 1, fps: float = 25, size: str = "64x48", **output) -> Path:
    """A real media file made by ffmpeg from its test sources."""
    streams = []
    if video:
        streams.append(ffmpeg.input(f"testsrc=size={size}:rate={fps}:duration={seconds}", f="lavfi"))
    if audio:
        tone = ffmpeg.input(f"sine=frequency=440:sample_rate={rate}:duration={seconds}", f="lavfi")
        streams.append(tone)
        if channels == 2:
            output["ac"] = 2
    ffmpeg.output(*streams, str(path), **output).overwrite_output().run(cmd=ffmpeg_binary(), quiet=True)
    return path


TIMING = ("media_s", "decode_s", "rtfx", "utterances_per_s")


def untimed(rows: list[dict]) -> list[dict]:
    """Records or summary cells without their timings, which differ from run to run."""
    return [{key: value for key, value in row.items() if key not in TIMING} for row in rows]


def by_id(records: list[dict]) -> list[dict]:
    """In id order: a cell is decoded longest utterances first, and put in manifest order only at the end."""
    return sorted(records, key=lambda r: r["id"])


def read_records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> Path:
    """A small synthetic corpus made once per test session."""
    from clipwhisper.synth.corpus import SynthOptions, synthesise

    out = tmp_path_factory.mktemp("corpus")
    synthesise(out, SynthOptions(utterances=120, seed=7, image_size=48))
    return out


@pytest.fixture(scope="session")
def checkpoint(synth_corpus, tmp_path_factory):
    """A tiny `both` checkpoint trained for 12 steps on the session corpus."""
    from clipwhisper.config import TrainConfig, nested, packaged_config, resolve
    from clipwhisper.training.loop import run_training

    out = tmp_path_factory.mktemp("decode_run")
    run_training(resolve(TrainConfig, packaged_config("tiny"), nested({
        "data.path": synth_corpus, "output_path": out, "max_steps": 12, "learning_rate": 3e-3, "warmup_steps": 2})))
    return out / "final"


@pytest.fixture(scope="session")
def untrained_checkpoint(synth_corpus, tmp_path_factory):
    """A tiny `both` checkpoint one step from its random start, at a tiny learning rate: it writes long,
    near-random token strings that depend on every input, which makes two decoding paths that should agree
    token for token show any difference."""
    from clipwhisper.config import TrainConfig, nested, packaged_config, resolve
    from clipwhisper.training.loop import run_training

    out = tmp_path_factory.mktemp("untrained_run")
    run_training(resolve(TrainConfig, packaged_config("tiny"), nested({
        "data.path": synth_corpus, "output_path": out, "max_steps": 1, "learning_rate": 1e-7, "warmup_steps": 0})))
    return out / "final"


def beams_agree(model, batch, modality: str, new_tokens: int = 10) -> list[str]:
    """``model``'s beam-5 hypotheses for ``batch``, asserted equal to transformers' own beam search given the
    whole prefix (which it runs once per beam, where ``generate`` starts from its cache computed once per row)."""
    prefix, mask = model.generation_prefix(batch, modality)
    tokenizer = model.tokenizer
    plain = model.llm.generate(inputs_embeds=prefix, attention_mask=mask.long(), num_beams=5, do_sample=False,
                               max_new_tokens=new_tokens, eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id)
    expected = [text.strip() for text in tokenizer.batch_decode(plain, skip_special_tokens=True)]
    found = model.generate(batch, modality=modality, beam_size=5, max_new_tokens=new_tokens, static=False)
    assert found == expected, modality
    return found


def summary_row(output: str) -> list[str]:
    """The cells of the last table row of ``prepare``'s printed summary."""
    rows = [line for line in output.splitlines() if line.startswith("│")]
    return [cell.strip() for cell in rows[-1].strip("│").split("│")]
