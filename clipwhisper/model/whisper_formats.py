"""Whisper weights in the formats users have, as openai-whisper ``(dims, state_dict)``.

- a CTranslate2 / faster-whisper model folder (``model.bin`` + ``config.json``): its binary
  layout (format version 6) is read with numpy; the names map one to one onto openai-whisper's,
  with self-attention q/k/v and cross-attention k/v fused and the keys' (absent) biases stored as zeros;
- a Hugging Face transformers Whisper folder or hub id (``WhisperModel``): encoder only.

Nothing here runs code from the files it reads: ``model.bin`` is parsed as numbers, and
transformers is called with ``trust_remote_code=False``.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError

CT2_VERSION = 6
# CTranslate2's DataType enum; int8/int16 hold flags and head counts, or quantised weights (with a scale)
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


def is_ctranslate2_folder(path: Path) -> bool:
    return path.is_dir() and (path / "model.bin").is_file()


def is_transformers_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and not (path / "model.bin").is_file()


def source_kind(name: str) -> str:
    """What an ``audio_encoder.name`` refers to, in words (recorded in checkpoints, shown by ``inspect``)."""
    import whisper

    path = Path(name).expanduser()
    if path.suffix == ".pt":
        return "openai-whisper file"
    if is_ctranslate2_folder(path):
        return "CTranslate2 folder"
    if is_transformers_folder(path):
        return "transformers folder"
    return "openai-whisper name" if name in whisper.available_models() else "hub id"


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise CheckpointError(self.path, "truncated CTranslate2 model file")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        size = self.take("<H")
        raw = self.data[self.pos:self.pos + size]
        self.pos += size
        return raw[:-1].decode("utf-8", errors="replace")

    def array(self, dtype, shape: list[int], nbytes: int) -> np.ndarray:
        raw = self.data[self.pos:self.pos + nbytes]
        if len(raw) != nbytes:
            raise CheckpointError(self.path, "truncated CTranslate2 model file")
        self.pos += nbytes
        if dtype == "bfloat16":  # numpy has no bfloat16: widen the 16 bits to float32's upper half
            return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
        return np.frombuffer(raw, dtype).reshape(shape)


def read_ctranslate2_variables(folder: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 ``model.bin`` by name, aliases resolved."""
    path = Path(folder) / "model.bin"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror}") from None
    reader = _Reader(data, path)
    version = reader.take("<I")
    if version != CT2_VERSION:
        raise CheckpointError(path, f"CTranslate2 model format version {version}; this reader knows {CT2_VERSION}")
    spec = reader.string()
    if spec != "WhisperSpec":
        raise CheckpointError(path, f"a CTranslate2 {spec or 'unnamed'} model, not Whisper")
    reader.take("<I")  # the spec's revision
    variables = {}
    for _ in range(reader.take("<I")):
        name = reader.string()
        shape = [reader.take("<I") for _ in range(reader.take("<B"))]
        dtype_id, nbytes = reader.take("<B"), reader.take("<I")
        if dtype_id not in CT2_DTYPES:
            raise CheckpointError(path, f"variable {name} has unknown data type {dtype_id}")
        variables[name] = reader.array(CT2_DTYPES[dtype_id], shape, nbytes)
    for _ in range(reader.take("<I")):
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
    if any(name.endswith("weight_scale") for name in variables):
        raise CheckpointError(path, "int8-quantised weights: convert the model with --quantization float16 "
                                    "(or float32) to load it here")
    return variables


def _ct2_attention(v: dict, src: str, dst: str, fused: str) -> dict[str, np.ndarray]:
    """openai-whisper's query/key/value/out from CTranslate2's fused projections."""
    out = {}
    if fused == "qkv":
        q, k, v_ = np.split(v[f"{src}/linear_0/weight"], 3)
        qb, _, vb = np.split(v[f"{src}/linear_0/bias"], 3)
        out_name = f"{src}/linear_1"
    else:  # cross-attention: the query alone, then keys and values fused
        q, qb = v[f"{src}/linear_0/weight"], v[f"{src}/linear_0/bias"]
        k, v_ = np.split(v[f"{src}/linear_1/weight"], 2)
        _, vb = np.split(v[f"{src}/linear_1/bias"], 2)
        out_name = f"{src}/linear_2"
    out.update({f"{dst}.query.weight": q, f"{dst}.query.bias": qb, f"{dst}.key.weight": k,
                f"{dst}.value.weight": v_, f"{dst}.value.bias": vb,
                f"{dst}.out.weight": v[f"{out_name}/weight"], f"{dst}.out.bias": v[f"{out_name}/bias"]})
    return out


def _ct2_norm(v: dict, src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": v[f"{src}/gamma"], f"{dst}.bias": v[f"{src}/beta"]}


def _ct2_linear(v: dict, src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": v[f"{src}/weight"], f"{dst}.bias": v[f"{src}/bias"]}


def _ct2_block(v: dict, src: str, dst: str, cross: bool) -> dict[str, np.ndarray]:
    state = {**_ct2_attention(v, f"{src}/self_attention", f"{dst}.attn", "qkv"),
             **_ct2_norm(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln"),
             **_ct2_linear(v, f"{src}/ffn/linear_0", f"{dst}.mlp.0"),
             **_ct2_linear(v, f"{src}/ffn/linear_1", f"{dst}.mlp.2"),
             **_ct2_norm(v, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")}
    if cross:
        state.update(_ct2_attention(v, f"{src}/attention", f"{dst}.cross_attn", "kv"))
        state.update(_ct2_norm(v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln"))
    return state


def _count_layers(v: dict, prefix: str) -> int:
    return len({name.split("/")[1] for name in v if re.match(rf"{prefix}/layer_\d+/", name)})


def read_ctranslate2(folder: Path) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """A CTranslate2 Whisper folder as openai-whisper's ``dims`` and full ``model_state_dict`` (float32)."""
    v = read_ctranslate2_variables(folder)
    try:
        n_audio_layer, n_text_layer = _count_layers(v, "encoder"), _count_layers(v, "decoder")
        dims = {"n_mels": v["encoder/conv1/weight"].shape[1],
                "n_audio_ctx": v["encoder/position_encodings/encodings"].shape[0],
                "n_audio_state": v["encoder/conv1/weight"].shape[0], "n_audio_head": int(v["encoder/num_heads"]),
                "n_audio_layer": n_audio_layer, "n_vocab": v["decoder/embeddings/weight"].shape[0],
                "n_text_ctx": v["decoder/position_encodings/encodings"].shape[0],
                "n_text_state": v["decoder/embeddings/weight"].shape[1], "n_text_head": int(v["decoder/num_heads"]),
                "n_text_layer": n_text_layer}
        state = {**_ct2_linear(v, "encoder/conv1", "encoder.conv1"), **_ct2_linear(v, "encoder/conv2", "encoder.conv2"),
                 "encoder.positional_embedding": v["encoder/position_encodings/encodings"],
                 **_ct2_norm(v, "encoder/layer_norm", "encoder.ln_post"),
                 "decoder.token_embedding.weight": v["decoder/embeddings/weight"],
                 "decoder.positional_embedding": v["decoder/position_encodings/encodings"],
                 **_ct2_norm(v, "decoder/layer_norm", "decoder.ln")}
        for i in range(n_audio_layer):
            state.update(_ct2_block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False))
        for i in range(n_text_layer):
            state.update(_ct2_block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True))
    except KeyError as exc:
        raise CheckpointError(Path(folder) / "model.bin", f"not a Whisper model: no variable {exc}") from None
    tensors = {name: torch.from_numpy(np.array(array, np.float32)) for name, array in state.items()}
    return {key: int(n) for key, n in dims.items()}, tensors


HF_ENCODER_NAMES = {"self_attn.q_proj": "attn.query", "self_attn.k_proj": "attn.key", "self_attn.v_proj": "attn.value",
                    "self_attn.out_proj": "attn.out", "self_attn_layer_norm": "attn_ln", "fc1": "mlp.0",
                    "fc2": "mlp.2", "final_layer_norm": "mlp_ln"}


def read_transformers(source: str) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """A transformers Whisper folder or hub id (from the local cache when offline): encoder ``dims`` and
    openai-whisper's encoder ``state_dict`` (names without ``encoder.``), float32."""
    from transformers import WhisperModel

    from .llm import quiet_transformers

    quiet_transformers()
    model = WhisperModel.from_pretrained(source, dtype=torch.float32, trust_remote_code=False)
    config, encoder = model.config, model.get_encoder()
    dims = {"n_mels": config.num_mel_bins, "n_audio_ctx": config.max_source_positions,
            "n_audio_state": config.d_model, "n_audio_head": config.encoder_attention_heads,
            "n_audio_layer": config.encoder_layers}
    state = {}
    for name, tensor in encoder.state_dict().items():
        if name.startswith("layers."):
            _, index, rest = name.split(".", 2)
            module, _, leaf = rest.rpartition(".")
            name = f"blocks.{index}.{HF_ENCODER_NAMES[module]}.{leaf}"
        elif name == "embed_positions.weight":
            name = "positional_embedding"
        elif name.startswith("layer_norm."):
            name = name.replace("layer_norm.", "ln_post.")
        state[name] = tensor.float()
    return dims, state
