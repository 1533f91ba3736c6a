"""Settings, validated before any work starts.

Precedence, lowest first: the defaults below < a YAML file (``--config``) <
environment variables ``CLIPWHISPER_<SECTION>__<KEY>`` < command-line flags.
Unknown keys are rejected by name and every problem is reported at once.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, SettingsConfigDict

from .bounded_yaml import load_bounded
from .errors import ConfigError
from .modality import Modality

ENV_PREFIX = "CLIPWHISPER_"
PACKAGED_CONFIGS = Path(__file__).parent / "configs"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def _typed(value: Any) -> Any:
    """A text value read as ``--set`` reads one (a YAML number, boolean or list), other text kept as it is. Read
    with the bounds of a config file: the text may come from a stranger's config or checkpoint, and a few hundred
    bytes of nested anchors would otherwise build a list of 10**9 values."""
    if isinstance(value, dict):
        return {key: _typed(inner) for key, inner in value.items()}
    if not isinstance(value, str):
        return value
    try:
        read = load_bounded(value, "a value")
    except ConfigError:  # not YAML, or unbounded YAML: the text itself
        return value
    return read if isinstance(read, (bool, int, float, list)) else value


# A mapping whose keys are the library's own (open_clip's vision_cfg, a transformers config), so no schema types
# its values: the environment gives each as text (CLIPWHISPER_MODEL__LLM__CONFIG__NUM_HIDDEN_LAYERS=2), which
# transformers or open_clip would take as the string "2".
FreeMapping = Annotated[dict[str, Any], BeforeValidator(_typed)]


class AudioEncoderConfig(Strict):
    """openai-whisper's encoder: a model name, a local ``.pt`` path, or random init from ``dims``."""

    name: str | None = "medium.en"
    dims: dict[str, int] | None = Field(
        default=None, description="n_mels, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer"
    )
    pad_to_30s: bool = False
    trainable: bool = False


class VideoEncoderConfig(Strict):
    """open_clip's visual tower: a model name with a pretrained tag or file, or random init from ``vision_cfg``."""

    name: str | None = "ViT-B-16"
    pretrained: str | None = "openai"
    vision_cfg: FreeMapping | None = None
    embed_dim: int | None = None
    image_size: int | None = Field(default=None, ge=8, description="force_image_size; None keeps the model's")
    mean: list[float] | None = Field(default=None, description="pixel normalisation; None: the pretrained tag's")
    std: list[float] | None = None
    chunk_frames: int = Field(default=512, ge=1)
    trainable: bool = False


class ConnectorConfig(Strict):
    stack: int = Field(default=4, ge=1, description="consecutive encoder frames stacked into one LLM token")
    kind: Literal["mlp", "linear"] = "mlp"
    hidden_size: int | None = Field(default=None, ge=1)
    ctc_weight: float = Field(default=0.0, ge=0.0, description="weight of a CTC loss on this connector's tokens "
                              "against the transcript, added to the LLM's cross-entropy (model/ctc.py says why)")
    ctc_units: Literal["tokens", "characters"] = Field(
        default="tokens", description="what CTC scores: the connector's tokens against the transcript's LLM "
        "tokens, or each encoder frame against its characters (a-z, 0-9, apostrophe; as LipNet reads lips)")


class FusionConfig(Strict):
    kind: Literal["concat", "sum"] = "concat"
    gate: Literal["fixed", "learned"] = "learned"
    fusion_scale: float = Field(default=0.5, ge=0.0, le=1.0, description="audio weight for a fixed sum")
    audio_drop: float = Field(default=0.0, ge=0.0, le=1.0)
    video_drop: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_stream_survives(self):
        if self.audio_drop + self.video_drop > 1.0:
            raise ValueError("audio_drop + video_drop must not exceed 1 (one stream is always kept)")
        return self


class LoraConfig(Strict):
    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]


class LLMConfig(Strict):
    """A causal LLM by hub id or local folder, or random init from ``config`` (a transformers config dict)."""

    name: str | None = "meta-llama/Llama-3.2-1B"
    config: FreeMapping | None = None
    tokenizer: str | None = Field(default=None, description="tokenizer folder; default: the LLM's own")
    finetune: Literal["lora", "frozen", "full"] = "lora"
    lora: LoraConfig = LoraConfig()
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _has_source(self):
        if self.name is None and self.config is None:
            raise ValueError("set llm.name (hub id or folder) or llm.config (build from a config)")
        return self


class ModelConfig(Strict):
    modality: Modality = "both"
    prompt: str = "Transcribe the speech."
    audio_encoder: AudioEncoderConfig = AudioEncoderConfig()
    video_encoder: VideoEncoderConfig = VideoEncoderConfig()
    audio_connector: ConnectorConfig = ConnectorConfig(stack=4)
    video_connector: ConnectorConfig = ConnectorConfig(stack=2)
    fusion: FusionConfig = FusionConfig()
    llm: LLMConfig = LLMConfig()


class DataConfig(Strict):
    path: Path | None = Field(default=None, description="folder with <split>.tsv and <split>.wrd")
    train_split: str = "train"
    valid_split: str = "valid"
    fps: float = Field(default=25.0, gt=0)
    max_duration_s: float | None = Field(default=None, gt=0, description="leave longer training utterances out")
    num_workers: int = Field(default=0, ge=0)
    media_cache_gb: float = Field(default=2.0, ge=0, description="keep decoded media in memory if the split fits")
    noise: Path | None = Field(default=None, description="noise wav mixed into training audio; relative to path")
    noise_prob: float = Field(default=0.5, ge=0.0, le=1.0)
    noise_snr_db: tuple[float, float] = (-5.0, 20.0)
    noise_from_epoch: int = Field(default=0, ge=0, description="clean audio before this epoch: a model learning "
                                  "from scratch first learns to read clean speech")

    def noise_file(self) -> Path | None:
        """The noise file training mixes in, or None when it mixes none."""
        if self.noise is None or self.noise_prob == 0:
            return None
        if self.noise.is_absolute() or self.path is None:
            return self.noise
        return self.path / self.noise


class TrainConfig(Strict):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    output_path: Path = Path("runs/clipwhisper")
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_epochs: int = Field(default=10, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    audio_first_epochs: int = Field(default=0, ge=0, description="a both model's first epochs on the audio alone, "
                                    "its lip encoder not run: the audio branch learns the task at a fraction of "
                                    "the cost (docs/demo.md)")
    learning_rate: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_steps: int = Field(default=100, ge=0)
    grad_clip: float | None = Field(default=1.0, gt=0)
    save_steps: int | None = Field(default=None, ge=1)
    eval_steps: int | None = Field(default=None, ge=1, description="default: evaluate at each epoch's end")
    keep_last: int = Field(default=3, ge=1)
    log_every: int = Field(default=10, ge=1)
    progress_every_s: float = Field(default=30.0, gt=0, description="off a terminal: a progress line this often")
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default=[], description="experiment trackers (pip install 'clipwhisper[tracking]')")
    log_param_updates: bool = False
    max_bad_steps: int = Field(default=5, ge=1, description="stop after this many non-finite losses in a row")
    on_bad_sample: Literal["skip", "fail"] = "skip"
    resume: str | None = Field(default=None, description="'auto' or a checkpoint folder")
    feature_cache: Path | None = None
    strategy: Literal["ddp", "fsdp"] = Field(default="ddp", description="under torchrun: replicate or shard")
    compile: bool | None = Field(default=None, description="torch.compile the LLM's layers; default: on a GPU")
    cuda_graphs: bool = Field(default=True, description="replay CUDA graphs of frozen encoders and a LoRA LLM")

    @model_validator(mode="after")
    def _audio_first_for_both(self):
        if self.audio_first_epochs and self.model.modality != "both":
            raise ValueError(f"audio_first_epochs trains a both model on its audio first; this model is "
                             f"{self.model.modality}")
        if self.audio_first_epochs >= self.max_epochs:
            raise ValueError(f"audio_first_epochs ({self.audio_first_epochs}) leaves no epoch of max_epochs "
                             f"({self.max_epochs}) for audio+video")
        return self

    @model_validator(mode="after")
    def _fsdp_without_fp16(self):
        if self.strategy == "fsdp" and self.precision == "fp16":
            raise ValueError("strategy fsdp trains in bf16 or fp32; fp16 needs a loss scaler FSDP does not share")
        return self


class DecodeConfig(Strict):
    model_path: Path | None = None
    test_tsv: Path | None = None
    test_wrd: Path | None = None
    modality: list[Literal["audio", "video", "both", "all"]] | None = Field(
        default=None, description="audio, video, both, several of them (audio,both) or all the checkpoint serves, "
        "decoded in one pass: a batch's media read and each encoder run once for every cell; default: the "
        "checkpoint's")
    output_dir: Path = Path("decode")
    device: str = "auto"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    batch_size: int | None = Field(default=None, ge=1, description="utterances per batch; none: 64 on a GPU, 8 on "
                                   "the CPU")
    beam_size: int = Field(default=1, ge=1)
    max_new_tokens: int = Field(default=64, ge=1)
    snr_db: list[float | Literal["clean"]] = ["clean"]
    noise: Path | None = None
    normalizer: Literal["whisper", "basic", "none"] = "whisper"
    cuda_graphs: bool = Field(default=True, description="replay CUDA graphs of the encoders and compile "
                              "generation's per-token step with a static KV cache")
    num_workers: int | None = Field(default=None, ge=0, description="media-decoding processes (default: none "
                                    "on the CPU, up to 8 beside a GPU)")
    verbose: bool = False
    overwrite: bool = Field(default=False, description="start over in an output_dir holding another decode's results")

    @field_validator("modality", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        """``audio,both`` on the command line or in the environment; a YAML list as it is."""
        return [name.strip() for name in value.split(",")] if isinstance(value, str) else value


def read_yaml(path: Path) -> dict[str, Any]:
    """Safe-load a YAML mapping, naming the file and line of any syntax error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read config file: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text (byte {exc.start})"]) from exc
    except ValueError as exc:  # a path no file can have: "embedded null byte"
        raise ConfigError(repr(str(path)), [f"not a usable path ({exc})"]) from None
    data = load_bounded(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"expected a mapping at the top level, got {type(data).__name__}"])
    odd = [key for key in data if not isinstance(key, str)]
    if odd:
        raise ConfigError(str(path), [f"keys must be names, got {odd[0]!r}"])
    return data


def _settings_class(cls: type[Strict], yaml_values: dict[str, Any]) -> type[BaseSettings]:
    """``cls`` as pydantic-settings: init kwargs (flags) > environment > YAML > defaults."""

    class Resolved(BaseSettings, cls):
        model_config = SettingsConfigDict(
            env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", protected_namespaces=()
        )

        @classmethod
        def settings_customise_sources(cls_, settings_cls, init_settings, env_settings, **_unused):
            return (init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=yaml_values))

    Resolved.__name__ = cls.__name__
    return Resolved


def describe_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}'")
        else:
            problems.append(f"{key}: {err['msg']}")
    return problems


def resolve(cls: type[Strict], config_file: Path | None = None, overrides: dict[str, Any] | None = None,
            recipe: dict[str, Any] | None = None):
    """Merge every source into a validated ``cls``; raise ``ConfigError`` listing all problems. ``recipe`` (nested)
    is laid over the config file, under the environment: what a command such as the demo chooses, which the
    environment may still change."""
    yaml_values = _laid_over(read_yaml(config_file) if config_file else {}, recipe or {})
    source = f"config ({config_file})" if config_file else "config"
    try:
        settings = _settings_class(cls, yaml_values)(**(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(source, describe_errors(exc)) from None
    return cls.model_validate(settings.model_dump())


def _laid_over(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        both_maps = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _laid_over(merged[key], value) if both_maps else value
    return merged


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"model.fusion.kind": "sum"}`` -> ``{"model": {"fusion": {"kind": "sum"}}}``; ``None`` values dropped."""
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def to_yaml(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def packaged_config(name: str) -> Path:
    """A config shipped with the package, by stem (``tiny``) or file name."""
    path = PACKAGED_CONFIGS / (name if name.endswith(".yaml") else f"{name}.yaml")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml")))
        raise ConfigError(name, [f"no packaged config of that name (known: {known})"])
    return path


def _model_of(annotation) -> type[BaseModel] | None:
    """The settings class a field holds (through ``X | None``), or None for a plain value or a mapping."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((arg for arg in get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)), None)


def _check_key(cls: type[BaseModel], dotted: str) -> None:
    """Raise ``ConfigError`` unless ``dotted`` names a setting of ``cls``, suggesting the nearest one."""
    model: type[BaseModel] | None = cls
    for depth, part in enumerate(dotted.split(".")):
        if model is None:  # inside a mapping (e.g. vision_cfg): its keys are free
            return
        if part not in model.model_fields:
            prefix = ".".join(dotted.split(".")[:depth])
            known = [f"{prefix}.{name}" if prefix else name for name in model.model_fields]
            near = difflib.get_close_matches(dotted, known + _leaves(model, prefix), n=1, cutoff=0.5)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ConfigError("--set", [f"unknown key '{dotted}'{hint}"])
        model = _model_of(model.model_fields[part].annotation)


def _leaves(model: type[BaseModel], prefix: str) -> list[str]:
    """Every dotted key below ``model``, for suggestions."""
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        inner = _model_of(field.annotation)
        keys += _leaves(inner, key) if inner else [key]
    return keys


def parse_sets(cls: type[BaseModel], items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as a flat ``{dotted key: value}``; values read as YAML scalars or lists
    (``4``, ``1e-3``, ``true``, ``[-5, 5]``, ``sum``), keys checked against ``cls``."""
    flat: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError("--set", [f"expected KEY=VALUE, got '{item}'"])
        _check_key(cls, key)
        if key in flat:
            raise ConfigError("--set", [f"'{key}' set twice"])
        try:
            flat[key] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError("--set", [f"{key}: not a value ({exc.problem})"]) from None
        if flat[key] is None:
            raise ConfigError("--set", [f"{key}: no value"])
    return flat
