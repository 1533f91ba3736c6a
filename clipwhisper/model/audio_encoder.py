"""openai-whisper's audio encoder, at the clip's own length.

Whisper's encoder asserts a 30-s input; we run its layers ourselves with the
positional embedding sliced to the real length, which is several times
cheaper for short clips, and with attention masked to each clip's own frames,
so a clip's features do not depend on what it is batched with beyond float
rounding (the batch's log-mel is one STFT, within 1 ulp of a lone clip's):
decoding at any batch size gives the same text, cached features equal fresh ones
within 1e-5.
``pad_to_30s`` keeps the original behaviour: 30-s input, padding attended.
"""

from __future__ import annotations

import pickle  # for its error class only: the file is read by torch.load(weights_only=True)
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import AudioEncoderConfig
from ..data.media import MAX_AUDIO_SAMPLES
from ..errors import CheckpointError, ConfigError, first_line
from .graphs import ShapeGraphs
from .padding import pad_to_multiple
from .transfer import to_device
from .whisper_formats import is_ctranslate2_folder, is_transformers_folder, read_ctranslate2, read_transformers

N_FFT, HOP_LENGTH, SAMPLE_RATE = 400, 160, 16_000
MAX_SAMPLES = MAX_AUDIO_SAMPLES
FRAME = 2 * HOP_LENGTH  # samples per encoder output frame
DIM_KEYS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer")


def _encoder_from_dims(dims: dict[str, int]) -> nn.Module:
    from whisper.model import AudioEncoder

    return AudioEncoder(dims["n_mels"], dims["n_audio_ctx"], dims["n_audio_state"], dims["n_audio_head"],
                        dims["n_audio_layer"])


def _load_pt(path: Path) -> tuple[nn.Module, dict[str, int]]:
    """An openai-whisper ``{"dims", "model_state_dict"}`` file; only the encoder is built."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        dims = {key: int(checkpoint["dims"][key]) for key in DIM_KEYS}
        prefix = "encoder."
        state = {k[len(prefix):]: v for k, v in checkpoint["model_state_dict"].items() if k.startswith(prefix)}
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as exc:
        raise CheckpointError(path, f"not an openai-whisper checkpoint: {first_line(exc)}") from None
    return _from_state(dims, state)


def _masked_block(block: nn.Module, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
    """openai-whisper's ``ResidualAttentionBlock`` with a key mask; ``attend`` is ``(B, 1, 1, T)``."""
    attn, (batch, steps, width) = block.attn, x.shape
    h = block.attn_ln(x)
    q, k, v = (proj(h).view(batch, steps, attn.n_head, -1).transpose(1, 2) for proj in (attn.query, attn.key,
                                                                                        attn.value))
    mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
    x = x + attn.out(mixed.transpose(1, 2).reshape(batch, steps, width))
    return x + block.mlp(block.mlp_ln(x))


WHAT_WORKS = ("an openai-whisper name (tiny.en, base, small, medium.en, large-v3, ...), a .pt file, "
              "a CTranslate2/faster-whisper folder, or a transformers Whisper folder or hub id")


def _load_named(name: str) -> tuple[nn.Module, dict[str, int]]:
    import whisper

    try:
        model = whisper.load_model(name, device="cpu")  # downloads to whisper's cache on first use
    except (OSError, RuntimeError) as exc:  # urllib's URLError is an OSError
        raise _unloadable(name, f"openai-whisper could not load it ({first_line(exc)})") from None
    return model.encoder, {key: getattr(model.dims, key) for key in DIM_KEYS}


def _unloadable(name: str, why: str) -> ConfigError:
    return ConfigError("model.audio_encoder.name", [f"{name!r}: {why}; what works: {WHAT_WORKS}"])


def _from_state(dims: dict[str, int], state: dict[str, torch.Tensor]) -> tuple[nn.Module, dict[str, int]]:
    encoder = _encoder_from_dims(dims)
    encoder.load_state_dict(state)
    return encoder, {key: dims[key] for key in DIM_KEYS}


def _load_transformers(name: str) -> tuple[nn.Module, dict[str, int]]:
    try:
        return _from_state(*read_transformers(name))
    except (OSError, ValueError, KeyError) as exc:  # not found offline, not a Whisper, unknown layout
        raise _unloadable(name, f"transformers could not load it as Whisper ({first_line(exc)})") from None


def load_source(name: str) -> tuple[nn.Module, dict[str, int]]:
    """The encoder named by ``audio_encoder.name``, whichever of the formats it is in."""
    import whisper

    path = Path(name).expanduser()
    if path.suffix == ".pt":
        if not path.is_file():
            raise _unloadable(name, "no such file")
        return _load_pt(path)
    if path.is_dir():
        if is_ctranslate2_folder(path):
            dims, state = read_ctranslate2(path)
            prefix = "encoder."
            return _from_state(dims, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        if is_transformers_folder(path):
            return _load_transformers(str(path))
        raise _unloadable(name, "a folder with neither model.bin (CTranslate2) nor config.json (transformers)")
    if name in whisper.available_models():
        return _load_named(name)
    if path.exists():
        raise _unloadable(name, "not a .pt file or a model folder")
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):  # owner/model: a hub id
        return _load_transformers(name)
    raise _unloadable(name, "no such file or folder, and not a known model name")


class WhisperAudioEncoder(nn.Module):
    def __init__(self, encoder: nn.Module, dims: dict[str, int], pad_to_30s: bool = False):
        super().__init__()
        self.encoder = encoder
        self.dims = dims
        self.pad_to_30s = pad_to_30s
        from whisper.audio import mel_filters

        self.register_buffer("mel_filters", mel_filters("cpu", dims["n_mels"]), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.graphs = ShapeGraphs(self._masked_blocks, self)

    @classmethod
    def build(cls, config: AudioEncoderConfig) -> WhisperAudioEncoder:
        if config.dims:
            encoder, dims = _encoder_from_dims(config.dims), dict(config.dims)
        elif config.name:
            encoder, dims = load_source(config.name)
        else:
            raise ConfigError("model.audio_encoder", [f"set name ({WHAT_WORKS}) or dims"])
        return cls(encoder, dims, config.pad_to_30s)

    @property
    def output_size(self) -> int:
        return self.dims["n_audio_state"]

    @property
    def max_samples(self) -> int:
        return self.dims["n_audio_ctx"] * FRAME

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """Whisper's log-mel for a batch ``(B, N)``, normalised per utterance (not over the batch)."""
        return self._scaled_mel(torch.stft(audio.float(), N_FFT, HOP_LENGTH, window=self.window,
                                           return_complex=True))

    def _scaled_mel(self, stft: torch.Tensor, own: torch.Tensor | None = None) -> torch.Tensor:
        """Whisper's log-mel of STFT frames (the last dropped), each row normalised by its peak over its ``own``
        frames ``(B, T)`` (all if None), zeros past them."""
        log_spec = torch.clamp(self.mel_filters @ stft[..., :-1].abs() ** 2, min=1e-10).log10()
        counted = log_spec if own is None else log_spec.masked_fill(~own[:, None, :], -torch.inf)
        scaled = (torch.maximum(log_spec, counted.amax(dim=(-2, -1), keepdim=True) - 8.0) + 4.0) / 4.0
        return scaled if own is None else scaled * own[:, None, :]

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``audio (B, N)`` float32 at 16 kHz with sample ``lengths`` -> features ``(B, T, D)`` at 50 Hz, mask."""
        lengths = lengths.cpu()  # sizes are decided on the host: no device sync
        frames = to_device(torch.div(lengths + FRAME - 1, FRAME, rounding_mode="floor"), audio.device)
        if self.pad_to_30s:
            mel = self.log_mel(F.pad(audio, (0, self.max_samples - audio.shape[1])))
            x = self._stem(mel[..., : self.max_samples // HOP_LENGTH], None)
            for block in self.encoder.blocks:
                x = block(x)
            return self.encoder.ln_post(x), torch.arange(x.shape[1], device=x.device)[None, :] < frames[:, None]
        mel = self._own_length_mels(audio, lengths)
        x = self._stem(mel, torch.arange(mel.shape[-1], device=mel.device)[None, :] < 2 * frames[:, None])
        steps = x.shape[1]
        x = pad_to_multiple(x, 1, self.graphs.multiple(x))  # a few shapes, for the CUDA graphs on a GPU
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < frames[:, None]
        return self.graphs(x, mask)[:, :steps], mask[:, :steps]

    def _masked_blocks(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.encoder.blocks:
            x = _masked_block(block, x, mask[:, None, None, :])
        return self.encoder.ln_post(x)

    def _own_length_mels(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Each clip's log-mel as if it were alone: padded with zeros to a whole encoder frame, reflected at its
        own ends as ``torch.stft(center=True)`` reflects a lone clip, normalised by its own peak, zeros after it.
        One STFT for the batch (a loop over the clips launched ~10 kernels per clip: the launches bounded an
        audio-only decode on a GPU)."""
        sizes = torch.clamp(torch.div(lengths + FRAME - 1, FRAME, rounding_mode="floor"), min=1) * FRAME
        width, edge, device = int(sizes.max()), N_FFT // 2, audio.device
        ends, last = to_device(lengths[:, None], device), to_device(sizes[:, None] - 1, device)
        clips = F.pad(audio[:, :width], (0, max(0, width - audio.shape[1])))
        clips = clips * (torch.arange(width, device=device)[None, :] < ends)
        source = torch.arange(-edge, width + edge, device=device)[None, :]  # positions before and past each clip
        reflected = torch.where(source < 0, -source, torch.where(source > last, 2 * last - source, source))
        padded = clips.gather(1, reflected.clamp(0, width - 1))
        stft = torch.stft(padded.float(), N_FFT, HOP_LENGTH, window=self.window, center=False, return_complex=True)
        own = torch.arange(width // HOP_LENGTH, device=device)[None, :] < torch.div(last + 1, HOP_LENGTH,
                                                                                      rounding_mode="floor")
        return self._scaled_mel(stft, own)

    def _stem(self, mel: torch.Tensor, mel_mask: torch.Tensor | None) -> torch.Tensor:
        """Whisper's two convolutions and positions; past ``mel_mask`` the second sees zeros, as when alone."""
        dtype = next(self.encoder.parameters()).dtype
        x = F.gelu(self.encoder.conv1(mel.to(dtype)))
        if mel_mask is not None:
            x = x * mel_mask[:, None, :]
        x = F.gelu(self.encoder.conv2(x)).permute(0, 2, 1)
        return (x + self.encoder.positional_embedding[: x.shape[1]]).to(x.dtype)
