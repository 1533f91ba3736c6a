"""Self-describing checkpoint folders; loading needs only the folder.

``config.json`` (everything needed to rebuild), ``model.safetensors`` (trainable
or randomly initialised non-LLM weights), ``adapter/`` (peft) and/or ``llm/``
(an LLM that is fully trained or was built from a config), ``tokenizer/``,
optionally ``train_state/``. Pretrained parts that stay frozen are referenced
by name or path, not copied. Written to a temporary folder and renamed when
complete, so a folder with ``config.json`` is never half-written. No pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import ModelConfig, describe_errors
from ..errors import CheckpointError, ConfigError
from ..runtime.digest import file_sha256
from .avsr import AVSRModel
from .components import BY_NAME, BY_PREFIX, COMPONENTS, HEADS
from .fsdp import full

FORMAT = "clipwhisper-checkpoint"
VERSION = 1
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def _saves_encoder(model: AVSRModel, name: str, portable: bool = False) -> bool:
    """Whether the folder holds the encoder's weights: built from dimensions, trained, or a portable export."""
    module = model.components().get(name)
    if module is None:
        return False
    settings = getattr(model.config, BY_NAME[name].attribute)
    built_from_dims = settings.dims if name == "whisper" else settings.vision_cfg
    return portable or bool(built_from_dims) or not model.encoder_is_frozen(module)


def saved_config(model: AVSRModel, portable: bool = False) -> ModelConfig:
    """The config to rebuild ``model`` from its folder: encoders saved here are rebuilt without weights,
    and ``portable`` writes out CLIP's architecture so that not even its name's config is needed."""
    config = model.config.model_copy(deep=True)
    if _saves_encoder(model, "whisper", portable):
        config.audio_encoder.dims = dict(model.audio_encoder.dims)
    clip = config.video_encoder
    if _saves_encoder(model, "clip", portable):
        clip.pretrained = None
        clip.mean, clip.std = model.video_encoder.mean.flatten().tolist(), model.video_encoder.std.flatten().tolist()
    if portable and model.video_encoder is not None and not clip.vision_cfg:
        import open_clip

        architecture = open_clip.get_model_config(clip.name)
        clip.vision_cfg, clip.embed_dim = architecture["vision_cfg"], architecture["embed_dim"]
    return config


def _whole(named) -> dict[str, torch.Tensor]:
    """Whole tensors on the CPU (gathered from the ranks' shards under FSDP)."""
    return {key: full(value).detach().cpu().contiguous() for key, value in named}


@dataclass
class Contents:
    """A checkpoint's tensors in memory: gathered on every rank under FSDP, written by rank 0."""
    weights: dict[str, torch.Tensor]  # connectors, fusion, and encoders saved here
    adapter: dict[str, torch.Tensor] | None  # the peft model's trainable tensors
    llm: dict[str, torch.Tensor] | None  # the whole LLM, when it is saved (trained in full or built from a config)
    config: ModelConfig  # what rebuilds the model from the folder


def gather(model: AVSRModel, portable: bool = False) -> Contents:
    """What ``save_checkpoint`` writes (``portable``: every part, nothing referenced). Under FSDP a collective:
    every rank must call it."""
    present = model.components()
    weights = {}
    for component in COMPONENTS:
        saved = component.head or (component.encoder and _saves_encoder(model, component.name, portable))
        if saved and component.name in present:
            weights.update(_whole((f"{component.prefix}.{key}", value)
                                  for key, value in present[component.name].state_dict().items()))
    base, has_adapter = _llm_parts(model)
    config = saved_config(model, portable)
    trainable = {name for name, param in model.llm.named_parameters() if param.requires_grad}
    adapter = _whole((k, v) for k, v in model.llm.state_dict().items() if k in trainable) if has_adapter else None
    full_llm = portable or config.llm.finetune == "full" or config.llm.config is not None
    return Contents(weights, adapter, _whole(_base_weights(base).items()) if full_llm else None, config)


def _base_weights(base: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The LLM's own weights under their own names: peft wraps each adapted layer (``q_proj.base_layer``)
    and adds its adapter's tensors (``lora_``) to the base model's state dict."""
    return {key.replace(".base_layer", ""): value for key, value in base.state_dict().items() if "lora_" not in key}


def _llm_parts(model: AVSRModel) -> tuple[torch.nn.Module, bool]:
    """The base LLM and whether it has a peft adapter."""
    llm = model.llm
    if hasattr(llm, "get_base_model"):  # a PeftModel (older peft leaves peft_config on a merged model too)
        return llm.get_base_model(), True
    return llm, False


def save_checkpoint(model: AVSRModel, folder: Path, info: dict | None = None, write_state=None,
                    contents: Contents | None = None, portable: bool = False) -> Path:
    """Write ``folder`` atomically: into a temporary folder, renamed when complete. ``write_state(path)``
    adds ``train_state/`` before the rename. A failed write (a full disk) removes the temporary folder
    and leaves every earlier checkpoint as it was. ``contents``: what ``gather`` returned, if it ran;
    ``portable``: every pretrained part copied in, nothing referenced by name or path."""
    folder = Path(folder)
    contents = contents or gather(model, portable)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _write_folder(model, contents, tmp, info, write_state)
        _replace(tmp, folder)
    except (OSError, SafetensorError) as exc:  # safetensors reports a failed write as its own error
        shutil.rmtree(tmp, ignore_errors=True)
        reason = getattr(exc, "strerror", None) or exc
        raise CheckpointError(folder, f"could not write the checkpoint ({reason}); earlier checkpoints are intact") \
            from None
    return folder


def _write_folder(model: AVSRModel, contents: Contents, tmp: Path, info: dict | None, write_state) -> None:
    from .llm import quiet_transformers

    quiet_transformers()
    base, _ = _llm_parts(model)
    if contents.adapter is not None:
        model.llm.save_pretrained(str(tmp / "adapter"), state_dict=contents.adapter)
    if contents.llm is not None:
        base.save_pretrained(str(tmp / "llm"), state_dict=contents.llm, safe_serialization=True)
    model.tokenizer.save_pretrained(str(tmp / "tokenizer"))
    save_file(contents.weights, str(tmp / WEIGHTS_FILE))
    if write_state is not None:
        write_state(tmp / "train_state")
    manifest = {"format": FORMAT, "version": VERSION, "model": contents.config.model_dump(mode="json"),
                "llm_weights": "llm" if contents.llm is not None else None,
                "adapter": "adapter" if contents.adapter is not None else None,
                "sources": referenced_sources(contents), "sha256": digests(tmp), **(info or {})}
    _write_json(tmp / CONFIG_FILE, manifest)  # written last: its presence marks a complete folder


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every weights file in the folder and of the training state, by relative path."""
    files = sorted([*folder.rglob("*.safetensors"), *folder.glob("train_state/state.json")])
    return {path.relative_to(folder).as_posix(): file_sha256(path) for path in files}


def fingerprint(folder: Path) -> str:
    """What a checkpoint computes, in one SHA-256: its model settings and its weights files' digests (the
    recorded ones, or computed for a checkpoint written before digests were recorded). The settings as written,
    not as validated now: a later version's new defaults leave the fingerprints of decodes already made alone."""
    manifest = read_checkpoint_config(folder)
    weights = read_header(folder).sha256
    identity = {"model": manifest["model"], "weights": weights if weights is not None else digests(folder)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _inside(folder: Path, name) -> bool:
    """Whether ``name`` (from config.json) is a relative path that stays inside ``folder`` (a NUL byte names no
    file: the OS refuses it, and resolve() would raise)."""
    return isinstance(name, str) and "\x00" not in name and \
        (folder / name).resolve().is_relative_to(folder.resolve())


def verify_digests(folder: Path, recorded: dict[str, str] | None) -> None:
    """Every weights file ``config.json`` lists has the SHA-256 recorded there: a changed or damaged file is a
    one-line error naming it, never a silently different model. Checkpoints written before digests were
    recorded have none to check."""
    for name, expected in (recorded or {}).items():
        path = folder / name
        if not _inside(folder, name):
            raise CheckpointError(folder / CONFIG_FILE, f"sha256 names {name!r}, outside the checkpoint")
        if not path.is_file():
            raise CheckpointError(path, f"missing, though {CONFIG_FILE} records its SHA-256")
        if file_sha256(path) != expected:
            raise CheckpointError(path, f"its SHA-256 differs from the one in {CONFIG_FILE}: the file was changed "
                                        "or damaged after it was written")


def referenced_sources(contents: Contents) -> dict[str, str]:
    """What kind of thing each pretrained part referenced by name is (a CTranslate2 folder, a GGUF file...)."""
    from .llm import source_kind as llm_source
    from .whisper_formats import source_kind as whisper_source

    config, sources = contents.config, {}
    if config.modality != "video" and not config.audio_encoder.dims and config.audio_encoder.name:
        sources["whisper"] = whisper_source(config.audio_encoder.name)
    if contents.llm is None and config.llm.name:
        sources["llm base"] = llm_source(config.llm.name)
    return sources


def _write_json(path: Path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
        out.flush()
        os.fsync(out.fileno())


def _replace(tmp: Path, folder: Path) -> None:
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def read_checkpoint_config(folder: Path) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(folder, "not a checkpoint folder (does not exist)")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(folder, f"no {CONFIG_FILE}: not a checkpoint, or an incomplete one")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"corrupt JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(path, f"not a {FORMAT} config")
    if manifest.get("version") != VERSION:
        raise CheckpointError(path, f"checkpoint format version {manifest.get('version')!r}; this clipwhisper "
                                    f"reads version {VERSION}")
    for part in ("llm_weights", "adapter"):
        value = manifest.get(part)
        if value is None:
            continue
        if not _inside(folder, value):
            raise CheckpointError(path, f"{part} must name a folder inside the checkpoint, not {value!r}")
        if not (folder / value).is_dir():
            raise CheckpointError(folder, f"missing {value}/ named in {CONFIG_FILE}")
    model = manifest.get("model")
    llm = model.get("llm") if isinstance(model, dict) else None
    if isinstance(llm, dict) and (llm.get("config") is not None or llm.get("finetune") == "full") \
            and not manifest.get("llm_weights"):
        raise CheckpointError(path, "no llm_weights: this LLM's weights (built from a config, or fully trained) "
                                    "are in the checkpoint, and without them it would be random")
    for required in (WEIGHTS_FILE, "tokenizer"):
        if not (folder / required).exists():
            raise CheckpointError(folder, f"missing {required}")
    return manifest


def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(path, f"corrupt safetensors file: {exc}") from None


class CheckpointHeader(BaseModel):
    """A checkpoint's ``config.json``: what rebuilds the model, where its LLM parts are, the weights files'
    digests, and what training recorded (step, epoch, valid WER... kept as extra fields)."""

    model_config = ConfigDict(extra="allow")
    format: str
    version: int
    model: ModelConfig
    llm_weights: str | None = None
    adapter: str | None = None
    sources: dict[str, str] = {}
    sha256: dict[str, str] | None = None  # None: written before digests were recorded


def read_header(folder: Path) -> CheckpointHeader:
    """``config.json`` read, checked against the folder and validated, once; a one-line CheckpointError naming
    the file otherwise."""
    manifest = read_checkpoint_config(folder)
    try:
        return CheckpointHeader.model_validate(manifest)
    except ValidationError as exc:
        raise CheckpointError(Path(folder) / CONFIG_FILE, f"invalid settings: {'; '.join(describe_errors(exc))}") \
            from None


def load_checkpoint(folder: Path, device: str | torch.device = "cpu") -> AVSRModel:
    from .llm import apply_finetuning, build_base_llm, load_tokenizer

    folder = Path(folder)
    header = read_header(folder)
    config = header.model
    verify_digests(folder, header.sha256)
    tensors = load_weights_file(folder / WEIGHTS_FILE)
    try:  # a part the checkpoint's settings describe that cannot be built: the checkpoint's fault, exit 1
        tokenizer = load_tokenizer(folder / "tokenizer")
        llm_weights = folder / header.llm_weights if header.llm_weights else None
        llm = build_base_llm(config.llm, tokenizer, weights=llm_weights)
        adapter = folder / header.adapter if header.adapter else None
        llm = apply_finetuning(llm, config.llm, adapter=adapter)
        model = AVSRModel.build(config, tokenizer, llm)
    except ConfigError as exc:
        raise CheckpointError(folder / CONFIG_FILE, str(exc)) from None
    _load_components(model, tensors, folder / WEIGHTS_FILE)
    return model.to(device).eval()


def _load_components(model: AVSRModel, tensors: dict[str, torch.Tensor], path: Path) -> None:
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        prefix, _, name = key.partition(".")
        grouped.setdefault(BY_PREFIX[prefix].name if prefix in BY_PREFIX else prefix, {})[name] = value
    components = model.components()
    for name, state in grouped.items():
        if name not in components:
            raise CheckpointError(path, f"weights for {name!r}, which this model's config does not have")
        try:
            result = components[name].load_state_dict(state, strict=False)
        except RuntimeError as exc:
            first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
            raise CheckpointError(path, f"{name} weights do not match the config: {first}") from None
        # a checkpoint from before connectors owned their CTC head: the head stays the copy of the loaded
        # LLM's table that build() made, which is what CTC scored through when that checkpoint was saved
        missing = [key for key in result.missing_keys if key != "ctc_head"]
        if missing or result.unexpected_keys:
            raise CheckpointError(path, f"{name} weights do not match the config: missing "
                                        f"{', '.join(missing) or 'nothing'}, unexpected "
                                        f"{', '.join(result.unexpected_keys) or 'nothing'}")
    for name in (head.name for head in HEADS):
        if name in components and name not in grouped and any(True for _ in components[name].parameters()):
            raise CheckpointError(path, f"no weights for {name}")
