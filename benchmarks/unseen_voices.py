"""The synthetic demo task on voices it never heard: the tiny preset's own audio encoder against real Whisper.

    bash scripts/fetch_real_parts.sh                                  # Whisper tiny.en
    clipwhisper demo --out /tmp/demos/seed-0                          # the demo's model and corpus
    python benchmarks/unseen_voices.py --demo /tmp/demos/seed-0 --out /tmp/unseen

Synthesises a test set in eSpeak voices and faces the demo's corpus never uses (``clipwhisper synth --voices
unseen``), trains the demo's recipe again with one change, the audio encoder replaced by real Whisper tiny.en
(frozen), on the same corpus with the same seed and epochs, and decodes the demo's test split and the
unseen-voice set with both models (clean speech): audio, video and both.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml

from clipwhisper.config import TrainConfig, nested, packaged_config, resolve
from clipwhisper.demo import decode_grid
from clipwhisper.modality import MODALITIES
from clipwhisper.synth.corpus import SynthOptions, synthesise
from clipwhisper.training.loop import run_training

REAL = Path(os.environ.get("CLIPWHISPER_REAL", Path.home() / ".cache" / "clipwhisper" / "real")).expanduser()


def train_with_whisper(demo: Path, whisper: Path, run: Path) -> float:
    """The demo's training with the audio encoder replaced; seconds (0 when ``run`` already has a model)."""
    if (run / "final" / "config.json").exists():
        return 0.0
    identity = json.loads((demo / "identity.json").read_text())
    recipe = yaml.safe_load(packaged_config("tiny").read_text())
    recipe["model"]["audio_encoder"] = {"name": str(whisper), "trainable": False}
    run.parent.mkdir(parents=True, exist_ok=True)
    (run.parent / "tiny-with-whisper.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    config = resolve(TrainConfig, run.parent / "tiny-with-whisper.yaml", nested({
        "data.path": demo / "corpus", "output_path": run, "max_epochs": identity["epochs"], "keep_last": 1,
        "seed": identity["seed"], "feature_cache": run.parent / "features"}))  # the frozen Whisper runs once
    started = time.perf_counter()
    run_training(config)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, required=True, help="a finished `clipwhisper demo` folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--whisper", type=Path, default=REAL / "whisper-tiny.en")
    parser.add_argument("--utterances", type=int, default=150, help="in the unseen-voice set")
    args = parser.parse_args()

    unseen = args.out / "unseen-corpus"
    if not (unseen / "test.tsv").exists():
        synthesise(unseen, SynthOptions(utterances=args.utterances, seed=7, image_size=48, voices="unseen"))
    seconds = train_with_whisper(args.demo, args.whisper, args.out / "run-whisper")
    models = {"tiny preset encoder (the demo's)": args.demo / "run" / "final",
              f"{args.whisper.name} frozen": args.out / "run-whisper" / "final"}
    sets = {"demo test (seen voices)": args.demo / "corpus", "unseen voices": unseen}
    print(f"\ntraining with {args.whisper.name}: {seconds:.0f} s\n")
    print("| audio encoder | test set | " + " | ".join(MODALITIES) + " |")
    print("|---|---|" + "---|" * len(MODALITIES))
    for m, (model_name, checkpoint) in enumerate(models.items()):
        for s, (set_name, corpus) in enumerate(sets.items()):
            summary = decode_grid(checkpoint, corpus, args.out / f"decode-{m}-{s}", snrs=["clean"])
            wer = {cell["modality"]: cell["wer"] for cell in summary["cells"]}
            print(f"| {model_name} | {set_name} | " + " | ".join(f"{100 * wer[x]:.1f}" for x in MODALITIES) + " |")


if __name__ == "__main__":
    main()
