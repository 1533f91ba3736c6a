"""``clipwhisper inspect``: what a checkpoint or run folder holds, read from headers without loading weights."""

from __future__ import annotations

import json
from math import prod
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from ..errors import CheckpointError
from ..modality import STREAMS, streams_of
from ..model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_checkpoint_config
from ..model.components import COMPONENTS, ENCODERS
from ..runtime.report import console
from ..training.curves import PLOTS, read_curves, sparkline


def _header(path: Path) -> dict[str, tuple[str, list[int]]]:
    """``{tensor name: (dtype, shape)}`` from a safetensors header."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: (str(handle.get_slice(key).get_dtype()), list(handle.get_slice(key).get_shape()))
                    for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(path, f"corrupt safetensors file: {exc}") from None


def _summarise(tensors: dict[str, tuple[str, list[int]]]) -> dict:
    return {"parameters": sum(prod(shape) for _, shape in tensors.values()),
            "dtype": ",".join(sorted({dtype.lower() for dtype, _ in tensors.values()})) or "-",
            "tensors": len(tensors)}


def _llm_tensors(folder: Path) -> dict[str, tuple[str, list[int]]]:
    tensors = {}
    for path in sorted(folder.glob("*.safetensors")):
        tensors.update(_header(path))
    if not tensors:
        raise CheckpointError(folder, "no safetensors weights")
    return tensors


def describe_checkpoint(folder: Path) -> dict:
    folder = Path(folder)
    manifest = read_checkpoint_config(folder)
    model = manifest["model"]
    header = _header(folder / WEIGHTS_FILE)
    grouped: dict[str, dict] = {}
    for key, value in header.items():
        grouped.setdefault(key.split(".", 1)[0], {})[key] = value
    components = []
    for component in COMPONENTS:
        if component.prefix in grouped:
            trainable = model[component.attribute].get("trainable", True) if component.encoder else True
            stats = _summarise(grouped[component.prefix])
            components.append({"component": component.name, "source": WEIGHTS_FILE, **stats,
                               "trainable": stats["parameters"] if trainable else 0})
    streams = streams_of(model["modality"])
    for encoder in ENCODERS:
        if encoder.stream in streams and encoder.prefix not in grouped:
            settings = model[encoder.attribute]
            ref = settings["name"] + (f" ({settings['pretrained']})" if "pretrained" in settings else "")
            components.append({"component": encoder.name, "source": _referenced(manifest, encoder.name, ref),
                               "parameters": None, "trainable": 0, "dtype": "-", "tensors": None})
    llm = model["llm"]
    if manifest.get("llm_weights"):
        stats = _summarise(_llm_tensors(folder / manifest["llm_weights"]))
        trainable = stats["parameters"] if llm["finetune"] == "full" else 0
        components.append({"component": "llm base", "source": f"{manifest['llm_weights']}/", **stats,
                           "trainable": trainable})
    else:
        components.append({"component": "llm base", "source": _referenced(manifest, "llm base", llm["name"]),
                           "parameters": None, "trainable": 0, "dtype": "-", "tensors": None})
    if manifest.get("adapter"):
        stats = _summarise(_llm_tensors(folder / manifest["adapter"]))
        components.append({"component": "lora", "source": f"{manifest['adapter']}/", **stats,
                           "trainable": stats["parameters"]})
    ctc = {stream: connector for stream in sorted(STREAMS)
           if (connector := model[f"{stream}_connector"]).get("ctc_weight", 0.0)}
    return {
        "path": str(folder), "kind": "checkpoint", "modality": model["modality"], "prompt": model["prompt"],
        "fusion": model["fusion"]["kind"], "llm": llm["name"] or "built from config", "finetune": llm["finetune"],
        "ctc_weights": {stream: connector["ctc_weight"] for stream, connector in ctc.items()},
        "ctc_units": {stream: connector.get("ctc_units", "tokens") for stream, connector in ctc.items()},
        "components": components,
        "training": {key: manifest.get(key) for key in ("step", "epoch", "best_valid_wer", "valid_wer")}
        | {"resumable": (folder / "train_state").is_dir()},
        "files": _files(folder),
        "problems": consistency_problems(model, grouped, folder, manifest),
        "config": model,
    }


def consistency_problems(model: dict, grouped: dict, folder: Path, manifest: dict) -> list[str]:
    """Headers against the configuration: the right components, with the shapes the config implies."""
    problems = []
    streams = streams_of(model["modality"])
    for stream in streams:
        if f"{stream}_connector" not in grouped:
            problems.append(f"{stream} connector weights missing for modality {model['modality']}")
    for stream in set(STREAMS) - set(streams):
        if f"{stream}_connector" in grouped:
            problems.append(f"{stream} connector weights present but modality is {model['modality']}")
    dims = model["audio_encoder"].get("dims")
    first = grouped.get("audio_connector", {})
    first_weight = first.get("audio_connector.project.0.weight") or first.get("audio_connector.project.weight")
    if dims and first_weight:
        expected = dims["n_audio_state"] * model["audio_connector"]["stack"]
        if first_weight[1][1] != expected:
            problems.append(f"audio connector takes {first_weight[1][1]} inputs, config implies {expected}")
    boundaries = grouped.get("fusion", {}).get("fusion.boundaries")
    if model["fusion"]["kind"] == "concat" and boundaries is None:
        problems.append("concat fusion without boundary embeddings")
    hidden = _llm_hidden_size(folder, manifest)
    if hidden and boundaries and boundaries[1][-1] != hidden:
        problems.append(f"fusion width {boundaries[1][-1]} differs from the LLM's hidden size {hidden}")
    return problems


def _llm_hidden_size(folder: Path, manifest: dict) -> int | None:
    if not manifest.get("llm_weights"):
        return None
    config = json.loads((folder / manifest["llm_weights"] / "config.json").read_text(encoding="utf-8"))
    return config.get("hidden_size")


def _files(folder: Path) -> list[dict]:
    return [{"path": str(p.relative_to(folder)), "bytes": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file()]


def describe_run(folder: Path) -> dict:
    checkpoints = []
    for child in sorted(folder.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        if not (child / CONFIG_FILE).is_file():
            checkpoints.append({"name": child.name, "complete": False})
            continue
        info = json.loads((child / CONFIG_FILE).read_text(encoding="utf-8"))
        checkpoints.append({"name": child.name, "complete": True, "step": info.get("step"),
                            "epoch": info.get("epoch"), "valid_wer": info.get("valid_wer"),
                            "best_valid_wer": info.get("best_valid_wer"),
                            "resumable": (child / "train_state").is_dir()})
    partial = [p.name for p in folder.iterdir() if p.name.startswith(".") and ".tmp-" in p.name]
    curves = {name: {"points": len(points), "first": points[0][1], "last": points[-1][1],
                     "best": min(v for _, v in points), "sparkline": sparkline([v for _, v in points])}
              for name, points in read_curves(folder).items() if points}
    plots = [name for name in PLOTS if (folder / name).is_file()]
    return {"path": str(folder), "kind": "run", "checkpoints": checkpoints, "interrupted_writes": partial,
            "curves": curves, "plots": plots}


def run_inspect(path: Path, output_format: str = "table") -> None:
    path = Path(path)
    if (path / CONFIG_FILE).exists() or (path / WEIGHTS_FILE).exists():
        info = describe_checkpoint(path)
    elif path.is_dir() and ((path / "config.yaml").exists() or any(path.glob("step-*"))):
        info = describe_run(path)
    else:
        raise CheckpointError(path, "neither a checkpoint folder (config.json) nor a run folder (config.yaml)")
    if output_format == "json":
        console.print_json(json.dumps(info))
    else:
        _print(info)
    if info.get("problems"):
        raise CheckpointError(path, "; ".join(info["problems"]))


def _print(info: dict) -> None:
    if info["kind"] == "run":
        table = Table(title=escape(f"Run {info['path']}"))
        for column in ("checkpoint", "step", "epoch", "valid WER", "resumable"):
            table.add_column(column)
        for ck in info["checkpoints"]:
            if not ck["complete"]:
                table.add_row(escape(ck["name"]), "-", "-", "-", "incomplete")
                continue
            wer = f"{100 * ck['valid_wer']:.2f}%" if ck.get("valid_wer") is not None else "-"
            table.add_row(escape(ck["name"]), str(ck["step"]), str(ck["epoch"]), wer,
                          "yes" if ck["resumable"] else "no")
        console.print(table)
        _print_curves(info)
        return
    ctc = "".join(f", CTC {weight:g} on {stream} ({info['ctc_units'][stream]})"
                  for stream, weight in info["ctc_weights"].items())
    console.print(f"[bold]{escape(info['path'])}[/bold]: modality {info['modality']}, fusion {info['fusion']}{ctc}, "
                  f"LLM {escape(str(info['llm']))} ({info['finetune']}), prompt {escape(repr(info['prompt']))}")
    table = Table(title="Components (weights: stored tensor elements, persistent buffers included)")
    for column in ("component", "weights", "trainable", "dtype", "source"):
        table.add_column(column, justify="right" if column in ("weights", "trainable") else "left")
    for row in info["components"]:
        params = f"{row['parameters']:,}" if row["parameters"] is not None else "-"
        table.add_row(row["component"], params, f"{row['trainable']:,}", row["dtype"], escape(row["source"]))
    console.print(table)
    training = info["training"]
    best = training.get("best_valid_wer")
    console.print(f"training: step {training.get('step')}, epoch {training.get('epoch')}, best valid WER "
                  f"{'-' if best is None else f'{100 * best:.2f}%'}, resumable: {training['resumable']}")
    files = Table(title="Files")
    files.add_column("file")
    files.add_column("bytes", justify="right")
    for entry in info["files"]:
        files.add_row(escape(entry["path"]), f"{entry['bytes']:,}")
    console.print(files)
    console.print("[green]headers match the configuration[/green]" if not info["problems"] else
                  f"[red]{len(info['problems'])} problems[/red]")


def _print_curves(info: dict) -> None:
    if info["curves"]:
        table = Table(title="Curves over steps (train_log.jsonl)")
        for column in ("curve", "points", "first", "last", "lowest", ""):
            table.add_column(column, justify="right" if column not in ("curve", "") else "left")
        for name, curve in info["curves"].items():
            table.add_row(name, str(curve["points"]), f"{curve['first']:.4g}", f"{curve['last']:.4g}",
                          f"{curve['best']:.4g}", curve["sparkline"])
        console.print(table)
    if info["plots"]:
        console.print("plots: " + escape(", ".join(str(Path(info["path"]) / name) for name in info["plots"])))


def _referenced(manifest: dict, component: str, name: str) -> str:
    kind = (manifest.get("sources") or {}).get(component)
    return f"referenced{f' ({kind})' if kind else ''}: {name}"
