"""Frozen encoders on a GPU: inputs padded to a few shapes and replayed as CUDA graphs (model/graphs.py).

The padding runs here on the CPU (with the GPU's multiple forced); the graphs need a GPU, where the second
test checks that replayed graphs give what the encoders compute without them."""

import pytest
import torch

from clipwhisper.config import AudioEncoderConfig, VideoEncoderConfig
from clipwhisper.model import graphs
from clipwhisper.model.audio_encoder import WhisperAudioEncoder
from clipwhisper.model.graphs import GRANULE
from clipwhisper.model.video_encoder import ClipVideoEncoder

WHISPER = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 64, "n_audio_head": 4, "n_audio_layer": 2}
CLIP = {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32}


def encoders() -> tuple[WhisperAudioEncoder, ClipVideoEncoder]:
    torch.manual_seed(0)
    whisper = WhisperAudioEncoder.build(AudioEncoderConfig(name=None, dims=WHISPER)).eval().requires_grad_(False)
    clip = ClipVideoEncoder.build(VideoEncoderConfig(name=None, pretrained=None, embed_dim=48, vision_cfg=CLIP,
                                                     chunk_frames=40)).eval().requires_grad_(False)
    return whisper, clip


def inputs(device) -> dict[str, torch.Tensor]:
    audio_lengths = torch.tensor([16000, 9000, 23_999])
    audio = torch.randn(3, 24000) * 0.1 * (torch.arange(24000)[None, :] < audio_lengths[:, None])
    video_lengths = torch.tensor([25, 11, 37])  # 73 frames: a full chunk of 40 and one of 33
    video = torch.randint(0, 256, (3, 37, 32, 32, 3), dtype=torch.uint8)
    return {"audio": audio.to(device), "audio_lengths": audio_lengths, "video": video.to(device),
            "video_lengths": video_lengths}


def encode(whisper, clip, batch) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        audio, audio_mask = whisper(batch["audio"], batch["audio_lengths"])
        video, video_mask = clip(batch["video"], batch["video_lengths"])
    assert audio_mask.sum(1).tolist() == [50, 29, 75] and video_mask.sum(1).tolist() == [25, 11, 37]
    return audio * audio_mask[..., None], video * video_mask[..., None]


def test_padding_to_the_gpu_multiple_changes_no_feature():
    whisper, clip = encoders()
    batch = inputs(torch.device("cpu"))
    plain = encode(whisper, clip, batch)
    for module in (whisper, clip):
        module.graphs.multiple = lambda tensor: GRANULE  # as on a GPU
    padded = encode(whisper, clip, batch)
    assert plain[0].shape == padded[0].shape and plain[1].shape == padded[1].shape
    for ours, theirs in zip(padded, plain):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_replayed_graphs_equal_the_encoders_without_them(monkeypatch):
    whisper, clip = (encoder.cuda() for encoder in encoders())
    batch = inputs(torch.device("cuda"))
    encode(whisper.train(), clip.train(), batch)
    assert not clip.graphs.graphs and not whisper.graphs.graphs  # train mode computes otherwise: no graph
    whisper.eval(), clip.eval()
    first, again = encode(whisper, clip, batch), encode(whisper, clip, batch)  # captured, then replayed
    assert len(clip.graphs.graphs) == len(whisper.graphs.graphs) == 1  # CLIP's chunks of 40 and 33: both 64
    monkeypatch.setattr(graphs, "MAX_GRAPHS", 1)  # full: a new shape runs without a graph
    shorter = {**batch, "video": batch["video"][:, :30], "video_lengths": torch.tensor([25, 11, 30])}
    with torch.no_grad():
        clip(shorter["video"], shorter["video_lengths"])
    assert len(clip.graphs.graphs) == 1
    for module in (whisper, clip):
        module.graphs.enabled = False
    plain = encode(whisper, clip, batch)
    for ours in (first, again):
        for graphed, eager in zip(ours, plain):
            torch.testing.assert_close(graphed, eager, atol=1e-4, rtol=1e-4)


def test_fsdp_turns_the_graphs_off():
    """FSDP frees the gathered weights after each step and gathers them anew: a graph would read freed memory."""
    import torch.distributed as dist
    from test_causal import tiny_llm

    from clipwhisper.training.fsdp import shard_model

    class Model(torch.nn.Module):
        def generate(self):
            pass

    model = Model()
    model.llm, (model.audio_encoder, model.video_encoder) = tiny_llm(), encoders()
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    try:
        shard_model(model, torch.device("cpu"))
    finally:
        dist.destroy_process_group()
    assert not model.audio_encoder.graphs.enabled and not model.video_encoder.graphs.enabled


def test_pad_to_multiple_appends_zeros_along_one_dimension_and_leaves_a_multiple_alone():
    from clipwhisper.model.padding import pad_to_multiple

    x = torch.ones(2, 5, 3)
    padded = pad_to_multiple(x, 1, 4)
    assert padded.shape == (2, 8, 3) and padded[:, :5].eq(1).all() and padded[:, 5:].eq(0).all()
    assert pad_to_multiple(x, 1, 5) is x and pad_to_multiple(x, 0, 1) is x
