"""A decode folder's identity: what its hypotheses depend on, so a rerun resumes only the same decode.

``--snr-db`` and ``--modality`` are not part of it: every record carries its cell, so a rerun may add cells.
"""

from __future__ import annotations

from pathlib import Path

from ..config import DecodeConfig
from ..errors import ConfigError
from ..model.checkpoint import fingerprint
from ..runtime.digest import file_sha256
from ..runtime.folder_claim import IDENTITY_FILE, settle_identity

ADVICE = "pass --overwrite to start over (it removes the hyps and the summary only) or choose another --output-dir"


def decode_identity(config: DecodeConfig) -> dict:
    wrd = config.test_wrd or Path(config.test_tsv).with_suffix(".wrd")  # none beside an auto_avsr CSV
    return {"checkpoint": fingerprint(config.model_path), "test_tsv": file_sha256(config.test_tsv),
            "test_wrd": file_sha256(wrd) if wrd.is_file() else None,
            "noise": file_sha256(config.noise) if config.noise else None,
            "beam_size": config.beam_size, "max_new_tokens": config.max_new_tokens,
            "normalizer": config.normalizer, "precision": config.precision}


def our_files(output: Path) -> list[Path]:
    return [output / "hyps.jsonl", output / "summary.json", output / "scores.txt", output / "wer_vs_snr.png",
            output / IDENTITY_FILE,
            *output.glob("hyps.rank*.jsonl"), *output.glob("trn/*.ref.trn"), *output.glob("trn/*.hyp.trn")]


def settle_decode_folder(config: DecodeConfig, output: Path) -> None:
    """Start over (``--overwrite``), resume the same decode, or refuse (exit 2) results of another one."""
    if config.overwrite:
        for path in our_files(output):
            path.unlink(missing_ok=True)
    elif not (output / IDENTITY_FILE).exists() and any(p.exists() for p in our_files(output)):
        raise ConfigError(str(output), [f"holds hypotheses with no record of how they were made (an older "
                                        f"clipwhisper); {ADVICE}"])
    settle_identity(output, decode_identity(config), ADVICE, ours=None if config.overwrite else ())
