"""The model's parts, named once: what tables and logs call each, the ``AVSRModel`` attribute that holds it,
the prefix of its tensors in a checkpoint's ``model.safetensors``, its ``ModelConfig`` field and its stream."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Component:
    name: str  # in parameter tables, update logs and `inspect`
    attribute: str  # on AVSRModel, and the field of ModelConfig that configures it
    prefix: str | None  # of its tensors in model.safetensors; None: the LLM, saved in its own folder
    stream: str | None = None  # the medium it reads, for the encoders and connectors
    encoder: bool = False

    @property
    def head(self) -> bool:
        """Trained from scratch on every run, always saved: connectors and fusion."""
        return not self.encoder and self.prefix is not None


COMPONENTS = (
    Component("whisper", "audio_encoder", "whisper", "audio", encoder=True),
    Component("clip", "video_encoder", "clip", "video", encoder=True),
    Component("audio connector", "audio_connector", "audio_connector", "audio"),
    Component("video connector", "video_connector", "video_connector", "video"),
    Component("fusion", "fusion", "fusion"),
    Component("llm", "llm", None),
)
BY_NAME = {component.name: component for component in COMPONENTS}
BY_PREFIX = {component.prefix: component for component in COMPONENTS if component.prefix}
ENCODERS = tuple(component for component in COMPONENTS if component.encoder)
HEADS = tuple(component for component in COMPONENTS if component.head)
