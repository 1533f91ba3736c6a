"""Real speech, real weights: clipwhisper's audio path against Whisper's own decoder on the Asterisk prompts.

    bash scripts/fetch_real_parts.sh                     # Whisper tiny.en/base, Gemma 3 270M, the prompts
    python benchmarks/real_speech.py --out /tmp/rs       # tiny.en: baseline, then ours trained on all of train
    python benchmarks/real_speech.py --whisper base --train-sizes 100,200,all --epochs 6 --out /tmp/rs-base

Builds a fixed split of the 563 prompts (seed 0: 450 train / 50 valid / 63 test) with
``clipwhisper manifest from-folder``, decodes the test split with openai-whisper and the real weights
(greedy, no timestamps), trains ``real_small`` (the Whisper encoder frozen, Gemma 3 270M with LoRA) on the
first N training utterances, decodes the test split with ``clipwhisper decode``, and prints both WERs under
the same normaliser (Whisper's English one), with training time. ``--pad-to-30s`` trains the encoder on
30-s padded input instead of the clip's own length, for the comparison of the two.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from clipwhisper.data.manifest import read_manifest, write_manifest
from clipwhisper.data.media import load_audio
from clipwhisper.data.metrics import normalizer, word_errors
from clipwhisper.manifest_from_folder import build
from clipwhisper.model.whisper_formats import read_ctranslate2

REAL = Path(os.environ.get("CLIPWHISPER_REAL", Path.home() / ".cache" / "clipwhisper" / "real")).expanduser()
GGUF = REAL / "gemma-3-270m" / "gemma-3-270m-q4_k_m.gguf"


def corpus(out: Path) -> Path:
    data = out / "asterisk"
    if not (data / "test.tsv").exists():
        build(REAL / "asterisk", REAL / "asterisk" / "core-sounds-en.txt", data, valid=50, test=63, seed=0,
              workers=os.cpu_count() or 1)
    return data


def whisper_baseline(model_dir: Path, test_tsv: Path, out: Path, device: str) -> tuple[float, float]:
    """openai-whisper's own decoder with the real weights (written as its .pt): WER and seconds."""
    import whisper

    dims, state = read_ctranslate2(model_dir)
    checkpoint = out / f"{model_dir.name}.pt"
    torch.save({"dims": dims, "model_state_dict": state}, checkpoint)
    model = whisper.load_model(str(checkpoint), device=device)
    options = whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False)  # fp32 everywhere
    normalise, errors, words, start = normalizer("whisper"), 0, 0, time.perf_counter()
    for utterance in read_manifest(test_tsv):
        audio = torch.from_numpy(load_audio(utterance.audio))
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), dims["n_mels"]).to(device)
        hypothesis = whisper.decode(model, mel, options).text
        counts = word_errors(normalise(utterance.text), normalise(hypothesis))
        errors, words = errors + counts.errors, words + counts.reference_length
    return errors / words, time.perf_counter() - start


def training_set(data: Path, size: str, synthetic: int, out: Path) -> Path:
    """A data folder whose train split is the first ``size`` Asterisk utterances, after ``synthetic``
    synthetic ones (eSpeak voices, `clipwhisper synth`); valid and test as in ``data``."""
    if size == "all" and not synthetic:
        return data
    folder = out / f"train-{size}-synth{synthetic}"
    folder.mkdir(exist_ok=True)
    train = read_manifest(data / "train.tsv", data / "train.wrd")
    train = train if size == "all" else train[: int(size)]
    if synthetic:
        from clipwhisper.synth.corpus import SynthOptions, synthesise

        corpus = out / f"synth-{synthetic}"
        if not (corpus / "train.tsv").exists():
            synthesise(corpus, SynthOptions(utterances=synthetic, seed=1, image_size=48, fractions=(1.0, 0.0, 0.0)))
        train = [*read_manifest(corpus / "train.tsv", corpus / "train.wrd"), *train]
    write_manifest(folder / "train.tsv", Path("/"), train, wrd=folder / "train.wrd")
    for split in ("valid", "test"):
        for suffix in (".tsv", ".wrd"):
            (folder / f"{split}{suffix}").write_text((data / f"{split}{suffix}").read_text())
    return folder


def ours(model_dir: Path, data: Path, size: str, args, out: Path) -> dict:
    """Train real_small on the first ``size`` training utterances, decode the test split: WER and seconds."""
    # every setting in the name: a rerun with another one trains and decodes afresh instead of being refused
    tags = (f"lr{args.lr:g}{'-pad30' if args.pad_to_30s else ''}-synth{args.add_synthetic}-ctc{args.ctc_weight:g}"
            f"-{args.llm_finetune}-ep{args.epochs}-seed{args.seed}")
    run = out / f"run-{model_dir.name}-{size}-{tags}"
    train = training_set(data, size, args.add_synthetic, out)
    env = {**os.environ, "CLIPWHISPER_MODEL__AUDIO_ENCODER__NAME": str(model_dir),
           "CLIPWHISPER_MODEL__LLM__NAME": str(GGUF),
           "CLIPWHISPER_MODEL__AUDIO_ENCODER__PAD_TO_30S": "true" if args.pad_to_30s else "false",
           "CLIPWHISPER_MODEL__AUDIO_CONNECTOR__CTC_WEIGHT": str(args.ctc_weight),
           "CLIPWHISPER_MODEL__LLM__FINETUNE": args.llm_finetune}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "clipwhisper", "train", "-c", "real_small", "--data-path", str(train),
                    "--output-path", str(run), "--max-epochs", str(args.epochs), "--device", args.device,
                    "--learning-rate", str(args.lr), *(["--no-compile"] if args.no_compile else []),
                    "--seed", str(args.seed)], env=env, check=True)
    trained = time.perf_counter() - start
    decoded = out / f"decode-{run.name[4:]}"
    start = time.perf_counter()
    code = subprocess.run([sys.executable, "-m", "clipwhisper", "decode", "--model-path", str(run / "best"),
                           "--test-tsv", str(data / "test.tsv"), "--output-dir", str(decoded), "--device",
                           args.device]).returncode
    if code not in (0, 1):  # 1: some utterances failed, counted as deletions in the WER
        sys.exit(f"real_speech: decode exited {code}")
    cell = json.loads((decoded / "summary.json").read_text())["cells"][0]
    return {"wer": cell["wer"], "failed": len(cell["failed"]), "train_s": trained,
            "decode_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--whisper", default="tiny.en", choices=["tiny.en", "base"])
    parser.add_argument("--train-sizes", default="all", help="comma-separated: 100,200,all ('' for none)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=5e-4, help="real_small's learning rate")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pad-to-30s", action="store_true")
    parser.add_argument("--add-synthetic", type=int, default=0, help="synthetic utterances added to train")
    parser.add_argument("--ctc-weight", type=float, default=1.0, help="CTC loss on the audio connector's tokens "
                        "(real_small's weight; 0 for none)")
    parser.add_argument("--llm-finetune", default="lora", choices=["lora", "frozen"], help="model.llm.finetune")
    parser.add_argument("--no-compile", action="store_true", help="on a GPU: skip compiling the LLM's layers")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    model_dir = REAL / f"whisper-{args.whisper}"
    for needed in (model_dir / "model.bin", GGUF, REAL / "asterisk" / "core-sounds-en.txt"):
        if not needed.exists():
            sys.exit(f"real_speech: {needed} is missing: run scripts/fetch_real_parts.sh")
    args.out.mkdir(parents=True, exist_ok=True)
    data = corpus(args.out)
    rows = []
    if not args.skip_baseline:
        device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
        wer, seconds = whisper_baseline(model_dir, data / "test.tsv", args.out, device)
        rows.append(f"| Whisper {args.whisper}, its own decoder | - | {100 * wer:.1f} | - | {seconds:.0f} |")
    for size in filter(None, args.train_sizes.split(",")):
        result = ours(model_dir, data, size, args, args.out)
        padded = ", 30-s padded" if args.pad_to_30s else ""
        synthetic = f" + {args.add_synthetic} synthetic" if args.add_synthetic else ""
        ctc = f", CTC {args.ctc_weight:g}" if args.ctc_weight else ""
        llm = "LoRA" if args.llm_finetune == "lora" else "frozen"
        name = f"clipwhisper: Whisper {args.whisper} frozen + Gemma 3 270M {llm}{padded}{ctc}{synthetic}"
        rows.append(f"| {name} | {size} | {100 * result['wer']:.1f} ({result['failed']} failed) | "
                    f"{result['train_s']:.0f} | {result['decode_s']:.0f} |")
    print(f"\nAsterisk test split (63 prompts), {args.epochs} epochs, lr {args.lr:g}, seed {args.seed}, "
          f"{platform.machine()} {os.cpu_count()} cores, "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}")
    print("| system | training utterances | test WER % | training s | decoding s |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
