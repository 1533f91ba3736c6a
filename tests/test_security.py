"""No code runs from data: nothing we write is a pickle, the one pickle we read is loaded weights-only,
ffmpeg runs from argument lists and YAML loads safely."""

import re
from pathlib import Path

import pytest
import torch

import clipwhisper
from clipwhisper.config import AudioEncoderConfig
from clipwhisper.errors import CheckpointError
from clipwhisper.model.audio_encoder import WhisperAudioEncoder

PACKAGE = Path(clipwhisper.__file__).parent
FORBIDDEN = {
    r"\bpickle\.(loads?|dumps?|Unpickler|Pickler)\b": "pickle",
    r"torch\.save\(": "torch.save writes a pickle",
    r"shell\s*=\s*True|os\.system\(|os\.popen\(": "a shell",
    r"yaml\.load\(|yaml\.unsafe_load|yaml\.full_load": "unsafe YAML loading",
    r"(?<![\w.])(eval|exec)\(": "eval/exec",
    r"weights_only\s*=\s*False": "a full unpickling torch.load",
}


@pytest.mark.parametrize("pattern, what", FORBIDDEN.items())
def test_the_package_source_has_no(pattern, what):
    offenders = [f"{path.relative_to(PACKAGE)}:{number}" for path in PACKAGE.rglob("*.py")
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
                 if re.search(pattern, line) and not line.lstrip().startswith("#")]
    assert not offenders, f"{what} in {offenders}"


def test_every_torch_load_is_weights_only():
    calls = [line for path in PACKAGE.rglob("*.py") for line in path.read_text(encoding="utf-8").splitlines()
             if "torch.load(" in line]
    assert calls and all("weights_only=True" in line for line in calls)


def test_a_checkpoint_holds_no_pickle(checkpoint):
    files = [p for p in checkpoint.rglob("*") if p.is_file()]
    assert files and {p.suffix for p in files} <= {".json", ".safetensors", ".txt", ".jinja"}
    assert not [p for p in files if p.read_bytes()[:1] == b"\x80"]  # the pickle protocol marker


class Payload:
    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_malicious_whisper_file_does_not_run(tmp_path):
    Payload.marker = tmp_path / "pwned"
    torch.save({"dims": {}, "model_state_dict": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt: not an openai-whisper checkpoint"):
        WhisperAudioEncoder.build(AudioEncoderConfig(name=str(tmp_path / "evil.pt")))
    assert not Payload.marker.exists()
