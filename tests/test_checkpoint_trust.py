"""A checkpoint's config.json cannot point outside its folder, drop weights it needs, or claim another
format version: each is a one-line CheckpointError naming config.json."""

from __future__ import annotations

import json
import shutil

import pytest

from clipwhisper.errors import CheckpointError
from clipwhisper.model.checkpoint import load_checkpoint


def edited(checkpoint, tmp_path, change) -> object:
    folder = tmp_path / "ck"
    shutil.copytree(checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(("change", "says"), [
    (lambda c: c.update(llm_weights="../elsewhere"), "llm_weights must name a folder inside the checkpoint"),
    (lambda c: c.update(llm_weights="/etc"), "llm_weights must name a folder inside the checkpoint"),
    (lambda c: c.update(adapter="../../x"), "adapter must name a folder inside the checkpoint"),
    (lambda c: c.update(llm_weights=5), "llm_weights must name a folder inside the checkpoint, not 5"),
    (lambda c: c.pop("llm_weights"), "no llm_weights"),
    (lambda c: c.update(version=2), "checkpoint format version 2; this clipwhisper reads version 1"),
    (lambda c: c["model"]["video_encoder"].update(vision_cfg="x"),
     "invalid settings: model.video_encoder.vision_cfg: Input should be a valid dictionary"),
    (lambda c: c["model"]["audio_encoder"].pop("dims"), "model.audio_encoder: set name"),
])
def test_config_json_cannot_escape_or_silently_change_the_model(checkpoint, tmp_path, change, says):
    (tmp_path / "elsewhere").mkdir()
    folder = edited(checkpoint, tmp_path, change)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(folder)
    assert says in str(caught.value) and "config.json" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("damaged", ["model.safetensors", "llm/model.safetensors"])
def test_flipped_bytes_in_any_weights_file_are_caught(checkpoint, tmp_path, damaged):
    """200 bytes flipped in a weights file's data (its header intact) load unnoticed without digests."""
    folder = tmp_path / "ck"
    shutil.copytree(checkpoint, folder)
    path = folder / damaged
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 200] = bytes(b ^ 0xFF for b in data[middle:middle + 200])
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{damaged}: its SHA-256 differs"):
        load_checkpoint(folder)


def test_a_garbage_tokenizer_is_the_checkpoints_fault_in_one_line(checkpoint, tmp_path):
    folder = edited(checkpoint, tmp_path, lambda c: None)
    (folder / "tokenizer" / "tokenizer.json").write_text("{garbage")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(folder)
    assert "no tokenizer loads from" in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.exit_code == 1
