"""The ``clipwhisper`` command: thin Typer commands over the library.

Heavy modules (torch, whisper, open_clip, transformers, peft) are imported
inside the commands so that ``--help`` answers at once. Known errors become
one line on stderr and exit code 2 (usage, config) or 1 (runtime);
``--debug`` or ``CLIPWHISPER_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import typer

app = typer.Typer(
    name="clipwhisper",
    help="Audio-visual speech recognition: Whisper + CLIP encoders feeding a Llama-style LLM.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"clipwhisper: error: {message}", err=True)
    return typer.Exit(code)


def reports_errors(command):
    """Turn the project's known errors into one line on stderr and their exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from .errors import ClipWhisperError

        try:
            return command(*args, **kwargs)
        except ClipWhisperError as exc:
            if _state["debug"]:
                raise
            raise _fail(str(exc), exc.exit_code) from None

    return wrapper


def _show_version(wanted: bool) -> None:
    """The package's version and what it runs on, for bug reports."""
    if not wanted:
        return
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        ours = version("clipwhisper")
    except PackageNotFoundError:  # run from a source tree that is not installed
        ours = "(not installed)"
    cuda = torch.version.cuda or "none"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    python = platform.python_version()
    typer.echo(f"clipwhisper {ours} (torch {torch.__version__}, CUDA {cuda}, {gpu}; Python {python})")
    raise typer.Exit()


@app.callback()
def _global(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks (also CLIPWHISPER_DEBUG=1)."),
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Show the version, torch's and CUDA's, and exit."),
):
    _state["debug"] = debug or os.environ.get("CLIPWHISPER_DEBUG", "") not in ("", "0")


ConfigOption = typer.Option(None, "--config", "-c", help="YAML config file, or the name of a packaged one (tiny).")
PrintConfigOption = typer.Option(False, "--print-config", help="Print the resolved config as YAML and exit.")
SetOption = typer.Option(None, "--set", metavar="KEY=VALUE",
                         help="Any setting by its dotted key, e.g. model.fusion.kind=sum (repeatable).")
DeviceOption = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, ...")
PrecisionOption = typer.Option(None, "--precision", metavar="[auto|bf16|fp16|fp32]",
                               help="auto (default: bf16 on a GPU, fp32 on the CPU), bf16, fp16, fp32.")
CudaGraphsOption = typer.Option(None, "--cuda-graphs/--no-cuda-graphs",
                                help="Replay CUDA graphs of frozen encoders and a LoRA LLM, compile CLIP's "
                                "input, and decode with a static KV cache and a compiled per-token step (default: "
                                "on; GPU only).")


def _default(kind: str, key: str, what: str = "") -> str:
    """Help text ending in the setting's own default, read from its Pydantic model so the two never differ."""
    from . import config as cfg

    model = {"train": cfg.TrainConfig, "decode": cfg.DecodeConfig}[kind]
    default = model.model_fields[key].default
    return f"{what} (default: {'none' if default is None else default})".strip()


def _config_path(config: str | None) -> Path | None:
    if config is None:
        return None
    if Path(config).exists() or config.endswith((".yaml", ".yml")):
        return Path(config)
    from .config import packaged_config

    return packaged_config(config)


def _resolve(kind: str, config: str | None, flags: dict, sets: list[str] | None = None):
    """Flags and ``--set`` items over the environment, the YAML file and the defaults; a key given both ways
    is a usage error."""
    from . import config as cfg
    from .errors import ConfigError

    cls = {"train": cfg.TrainConfig, "decode": cfg.DecodeConfig}[kind]
    extra = cfg.parse_sets(cls, sets or [])
    twice = [key for key in extra if flags.get(key) is not None]
    if twice:
        raise ConfigError("--set", [f"'{key}' is also given by its own flag; give it once" for key in twice])
    return cfg.resolve(cls, _config_path(config), cfg.nested({**flags, **extra}))


def _print_config(resolved) -> None:
    from .config import to_yaml

    typer.echo(to_yaml(resolved), nl=False)


@app.command()
@reports_errors
def train(
    config: str | None = ConfigOption,
    data_path: Path | None = typer.Option(None, "--data-path", "--data_path", help="Folder with train/valid TSV+WRD."),
    output_path: Path | None = typer.Option(None, "--output-path", "--output_path", help="Run folder."),
    modality: str | None = typer.Option(None, "--modality", metavar="[audio|video|both]",
                                        help="What the model reads (default: both)."),
    batch_size: int | None = typer.Option(None, "--batch-size", "--batch_size",
                                          help=_default("train", "batch_size", "Utterances per micro-batch.")),
    max_epochs: int | None = typer.Option(None, "--max-epochs", "--max_epochs", help=_default("train", "max_epochs")),
    max_steps: int | None = typer.Option(None, "--max-steps", "--max_steps", help=_default("train", "max_steps")),
    learning_rate: float | None = typer.Option(None, "--learning-rate", "--learning_rate", "--lr",
                                               help=_default("train", "learning_rate")),
    precision: str | None = PrecisionOption,
    video_image_size: int | None = typer.Option(
        None, "--video-image-size", help="CLIP input size in px (e.g. 112 for mouth crops); positions interpolated."),
    save_steps: int | None = typer.Option(None, "--save-steps", "--save_steps", help="Checkpoint every N steps."),
    log_param_updates: bool = typer.Option(
        False, "--log-param-updates", "--log_param_updates", help="Log per-component parameter changes."
    ),
    resume: str | None = typer.Option(None, "--resume", help="'auto' or a checkpoint folder."),
    seed: int | None = typer.Option(None, "--seed", help=_default("train", "seed")),
    device: str | None = DeviceOption,
    feature_cache: Path | None = typer.Option(None, "--feature-cache", help="Cache frozen encoder outputs here."),
    on_bad_sample: str | None = typer.Option(None, "--on-bad-sample", metavar="[skip|fail]",
                                             help="skip (default) or fail."),
    strategy: str | None = typer.Option(None, "--strategy", metavar="[ddp|fsdp]",
                                        help="Under torchrun: ddp (default) or fsdp."),
    compile_llm: bool | None = typer.Option(None, "--compile/--no-compile",
                                            help="torch.compile the LLM's layers (default: on a GPU)."),
    cuda_graphs: bool | None = CudaGraphsOption,
    report_to: list[str] | None = typer.Option(None, "--report-to", metavar="[tensorboard|mlflow|wandb]",
                                               help="Send scalars, settings and plots there too (repeatable)."),
    sets: list[str] | None = SetOption,
    print_config: bool = PrintConfigOption,
):
    """Train an audio, video or audio-visual model; writes a run folder with checkpoints."""
    resolved = _resolve("train", config, {
        "data.path": data_path, "output_path": output_path, "model.modality": modality,
        "batch_size": batch_size, "max_epochs": max_epochs, "max_steps": max_steps,
        "learning_rate": learning_rate, "precision": precision, "save_steps": save_steps,
        "log_param_updates": log_param_updates or None, "resume": resume, "seed": seed, "device": device,
        "feature_cache": feature_cache, "on_bad_sample": on_bad_sample,
        "strategy": strategy, "compile": compile_llm, "model.video_encoder.image_size": video_image_size,
        "cuda_graphs": cuda_graphs, "report_to": report_to or None,
    }, sets)
    if print_config:
        return _print_config(resolved)
    from .training.loop import run_training

    run_training(resolved)


@app.command()
@reports_errors
def decode(
    config: str | None = ConfigOption,
    model_path: Path | None = typer.Option(None, "--model-path", "--model_path", help="Checkpoint folder."),
    test_tsv: Path | None = typer.Option(None, "--test-tsv", "--test_data", "--test-data", help="Manifest TSV."),
    test_wrd: Path | None = typer.Option(None, "--test-wrd", "--test_wrd", help="Transcripts (default: TSV's .wrd)."),
    modality: str | None = typer.Option(None, "--modality", metavar="[audio|video|both|all]",
                                        help="One, several (audio,both) or all the checkpoint serves, decoded in "
                                        "one pass; default: the checkpoint's."),
    output_dir: Path | None = typer.Option(None, "--output-dir", "--output_dir", help=_default("decode", "output_dir")),
    batch_size: int | None = typer.Option(None, "--batch-size", "--batch_size",
                                          help="Utterances per batch (default: 64 on a GPU, 8 on the CPU)."),
    beam_size: int | None = typer.Option(None, "--beam-size", "--beam_size", help=_default("decode", "beam_size")),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", "--max_new_tokens",
                                              help=_default("decode", "max_new_tokens")),
    snr_db: list[str] | None = typer.Option(None, "--snr-db", help="Repeatable: clean, 10, 0, -5 ..."),
    noise: Path | None = typer.Option(None, "--noise", help="Noise wav mixed in at each --snr-db."),
    normalizer: str | None = typer.Option(None, "--normalizer", metavar="[whisper|basic|none]",
                                          help="whisper (default), basic or none."),
    num_workers: int | None = typer.Option(None, "--num-workers", "--num_workers", help="Media-decoding "
                                           "processes (default: none on the CPU, up to 8 beside a GPU)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print REF/HYP per utterance."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in an --output-dir holding another "
                                   "decode's results (removes its hyps and summary only)."),
    single_file: list[Path] | None = typer.Option(None, "--single-file", "--single_file",
                                                     help="Transcribe this file instead (alias of transcribe)."),
    device: str | None = DeviceOption,
    precision: str | None = PrecisionOption,
    cuda_graphs: bool | None = CudaGraphsOption,
    sets: list[str] | None = SetOption,
    print_config: bool = PrintConfigOption,
):
    """Decode a test set and report WER per modality and SNR."""
    resolved = _resolve("decode", config, {
        "model_path": model_path, "test_tsv": test_tsv, "test_wrd": test_wrd, "modality": modality,
        "output_dir": output_dir, "batch_size": batch_size, "beam_size": beam_size,
        "max_new_tokens": max_new_tokens, "snr_db": snr_db, "noise": noise, "normalizer": normalizer,
        "verbose": verbose or None, "overwrite": overwrite or None, "device": device, "precision": precision,
        "cuda_graphs": cuda_graphs, "num_workers": num_workers,
    }, sets)
    if print_config:
        return _print_config(resolved)
    if single_file:
        from .inference.transcribe import run_transcribe

        return run_transcribe(resolved, single_file, output_format="text")
    from .inference.decode import run_decode

    raise typer.Exit(run_decode(resolved))


DetectorOption = typer.Option(
    "landmarks", "--detector", metavar="[landmarks|haar]",
    help="landmarks (default): dlib's 68 points aligned to a reference face (pip install 'clipwhisper[landmarks]'); "
         "haar: OpenCV's face and eye cascades, the mouth at a fixed place in the face box.")
MeanFaceOption = typer.Option(
    None, "--mean-face", help="The reference face landmarks are aligned to: a (68, 2) .npy or .json "
    "(e.g. auto_avsr's 20words_mean_face.npy); default: the packaged one.")
SpeakerOption = typer.Option(
    "active", "--speaker", metavar="[active|largest|all]",
    help="Where several faces are seen: active (default), the face whose mouth moves with the sound; largest; "
         "all (prepare only): each face its own crop video, ID-track0, ID-track1...")


@app.command()
@reports_errors
def transcribe(
    files: list[Path] = typer.Argument(..., help="Audio or video files."),
    model_path: Path = typer.Option(..., "--model-path", "--model_path", help="Checkpoint folder."),
    output_format: str = typer.Option("text", "--format", metavar="[text|json]", help="text (default) or json."),
    device: str | None = DeviceOption,
    precision: str | None = PrecisionOption,
    crop: str | None = typer.Option(None, "--prepare", metavar="[mouth|face]",
                                    help="Crop raw video first, as `prepare` does."),
    detector: str = DetectorOption,
    mean_face: Path | None = MeanFaceOption,
    speaker: str = SpeakerOption,
    cuda_graphs: bool | None = CudaGraphsOption,
):
    """Transcribe audio or video files with a checkpoint."""
    from .inference.transcribe import run_transcribe
    from .prepare.run import Cropping

    resolved = _resolve("decode", None, {"model_path": model_path, "device": device, "precision": precision,
                                         "cuda_graphs": cuda_graphs})
    if speaker == "all":
        from .errors import ConfigError

        raise ConfigError("--speaker", ["transcribe reads one face: active or largest"])
    cropping = Cropping(crop, detector, mean_face, speaker) if crop else None
    run_transcribe(resolved, files, output_format=output_format, cropping=cropping)


@app.command()
@reports_errors
def prepare(
    inputs: list[Path] = typer.Argument(..., help="Video files, or folders searched for videos."),
    out: Path = typer.Option(..., "--out", help="Output folder: video/, audio/, SPLIT.tsv, SPLIT.wrd."),
    transcripts: Path | None = typer.Option(None, "--transcripts", help="'id text' lines (id: the file's stem)."),
    crop: str = typer.Option("mouth", "--crop", metavar="[mouth|face]",
                             help="mouth (default: 96x96 around the mouth) or face."),
    size: int = typer.Option(96, "--size", min=16, help="Crop size in pixels."),
    centre: int | None = typer.Option(None, "--centre", "--center", help="Keep the central N x N pixels of each "
                                      "crop (auto_avsr and AV-HuBERT: 88 of 96)."),
    split: str = typer.Option("test", "--split", help="The manifest's name."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes (0: one per core)."),
    preview: bool = typer.Option(False, "--preview", help="Also write preview/ID.png per video: frames with the "
                                 "crop's square drawn, each beside its crop."),
    detector: str = DetectorOption,
    mean_face: Path | None = MeanFaceOption,
    speaker: str = SpeakerOption,
):
    """Crop the mouth (or face) from your own videos and write 25 fps crops, 16 kHz wav and a manifest."""
    from .prepare.command import run_prepare
    from .prepare.run import Cropping, Options

    options = Options(out, Cropping(crop, detector, mean_face, speaker), size, preview, centre)
    run_prepare(inputs, out, transcripts, options, split, workers)


@app.command()
@reports_errors
def export(
    checkpoint: Path = typer.Argument(..., help="A checkpoint folder."),
    out: Path = typer.Argument(..., help="The folder to write."),
    merge_lora: bool = typer.Option(False, "--merge-lora", help="Merge the LoRA adapter into the LLM's weights."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a checkpoint already in OUT (nothing else)."),
):
    """Copy a checkpoint with every pretrained part it references, so it loads offline."""
    from .inference.export import export_checkpoint

    folder = export_checkpoint(checkpoint, out, merge_lora, overwrite)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    typer.echo(f"exported {checkpoint} to {folder} ({size / 2**20:.1f} MiB): loads with no downloads")


manifest_app = typer.Typer(help="Convert and check manifests (AV-HuBERT TSV/WRD, auto_avsr CSV).",
                            no_args_is_help=True)
app.add_typer(manifest_app, name="manifest")


@manifest_app.command("convert")
@reports_errors
def manifest_convert(
    source: Path = typer.Argument(..., help="A .tsv (with its .wrd) or an auto_avsr .csv."),
    target: Path = typer.Argument(..., help="The .csv or .tsv to write (a .tsv gets its .wrd)."),
    spm: Path | None = typer.Option(None, "--spm", help="auto_avsr's SentencePiece model (NAME_units.txt beside)."),
    dataset: str = typer.Option("data", "--dataset", help="The CSV's dataset column: paths are under ROOT/DATASET."),
):
    """Convert between AV-HuBERT TSV/WRD and auto_avsr CSV."""
    from .manifest_commands import convert

    typer.echo(f"wrote {target}: {convert(source, target, spm, dataset)} utterances")


@manifest_app.command("check")
@reports_errors
def manifest_check(
    manifest: Path = typer.Argument(..., help="A .tsv (with its .wrd) or an auto_avsr .csv."),
    wrd: Path | None = typer.Option(None, "--wrd", help="Transcripts, if not the .wrd beside the TSV."),
    files_only: bool = typer.Option(False, "--files-only", help="Check that files exist; do not decode them."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes (0: one per core)."),
):
    """Check that every file exists and matches its counts; print hours, words and a duration histogram."""
    from .manifest_commands import run_check

    run_check(manifest, wrd, not files_only, workers)


@manifest_app.command("from-folder")
@reports_errors
def manifest_from_folder(
    folder: Path = typer.Argument(..., help="A folder of audio (or video) files, searched recursively."),
    transcripts: Path = typer.Argument(..., help="'id text' or 'id: text' lines, or a .csv with id and text "
                                                 "columns; an id is a file's path under FOLDER, suffix optional."),
    out: Path = typer.Option(..., "--out", help="Folder for train/valid/test .tsv and .wrd."),
    valid: int = typer.Option(0, "--valid", min=0, help="Utterances drawn at random for valid.tsv."),
    test: int = typer.Option(0, "--test", min=0, help="Utterances drawn at random for test.tsv."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random split."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes counting samples (0: one per core)."),
):
    """Build a manifest from a folder of audio files and a transcript file (the rest goes to train.tsv)."""
    from rich.markup import escape

    from .manifest_from_folder import build
    from .runtime.report import status

    built = build(folder, transcripts, out, valid, test, seed, workers or os.cpu_count() or 1)
    for what, keys in (("have no audio file", built.missing), ("have no words outside [brackets]",
                                                                built.non_speech)):
        if keys:
            listed = escape(f"{', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}")
            status.print(f"[yellow]left out {len(keys)} transcripts that {escape(what)}: {listed}[/yellow]",
                         soft_wrap=True)
    typer.echo(", ".join(f"{out / split}.tsv: {count} utterances" for split, count in built.splits.items()))


@app.command()
@reports_errors
def inspect(
    path: Path = typer.Argument(..., help="A checkpoint folder or a run folder."),
    output_format: str = typer.Option("table", "--format", metavar="[table|json]", help="table (default) or json."),
):
    """Show a checkpoint's configuration, components, files and training state."""
    from .inference.inspect import run_inspect

    run_inspect(path, output_format)


@app.command()
@reports_errors
def report(
    folders: list[Path] = typer.Argument(..., help="Decode folders (each with summary.json and hyps.jsonl)."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write."),
    manifest: Path | None = typer.Option(None, "--manifest", help="The test manifest (.tsv): links each utterance "
                                         "to its video and audio."),
    embed_media: bool = typer.Option(False, "--embed-media", help="Inline clips up to 2 MB in the page instead of "
                                     "linking them."),
    seed: int = typer.Option(0, "--seed", help="Seeds the bootstrap of the confidence intervals."),
):
    """Write one self-contained HTML page of error analysis over decode folders: WER with confidence
    intervals, where audio+video fixes or breaks audio alone, frequent errors, every utterance aligned."""
    from .report.command import run_report

    run_report(folders, out, manifest, embed_media, seed)


@app.command()
@reports_errors
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write the corpus into."),
    utterances: int = typer.Option(200, "--utterances", "-n", min=1, help="Utterances in train+valid+test."),
    seed: int = typer.Option(0, "--seed"),
    image_size: int = typer.Option(96, "--image-size", min=16, help="Mouth video frame size in pixels."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes (0: one per core)."),
    voices: str = typer.Option("seen", "--voices", help="seen: train/valid/test in the corpus's voices; unseen: "
                               "a test split alone, in voices and faces no 'seen' corpus has."),
):
    """Synthesise a GRID-style audio-visual corpus (eSpeak NG speech, rendered mouth video)."""
    import time

    from rich.progress import Progress

    from .synth.corpus import SynthOptions, synthesise

    started = time.perf_counter()
    with Progress(disable=not sys.stderr.isatty(), transient=True) as bar:
        task = bar.add_task("synthesising", total=utterances)
        counts = synthesise(out_dir, SynthOptions(utterances=utterances, seed=seed, image_size=image_size,
                                                  workers=workers, voices=voices),
                            progress=lambda done: bar.update(task, completed=done))
    elapsed = time.perf_counter() - started
    summary = ", ".join(f"{split} {n}" for split, n in counts.items())
    typer.echo(f"wrote {out_dir}: {summary} utterances in {elapsed:.1f} s ({utterances / elapsed:.1f} utt/s)")


@app.command()
@reports_errors
def demo(
    out: Path = typer.Option(Path("demo"), "--out", help="Folder for the corpus, run, decodes and report."),
    quick: bool = typer.Option(False, "--quick", help="A smaller corpus and fewer epochs."),
    seed: int = typer.Option(0, "--seed", help="Seed of the model's training (the corpus is the same for all)."),
):
    """Synthesise a corpus, train the tiny preset, decode at several SNRs and report WER (CPU, no downloads)."""
    from .demo import run_demo

    run_demo(out, quick=quick, seed=seed)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
