"""Frames as the loader carries them (YUV 4:2:0 at the source's size) and their RGB on the model's device."""

import numpy as np
import pytest
import torch
from conftest import make_media

from clipwhisper.data.dataset import collate
from clipwhisper.data.frames import carried_side, resized, to_rgb
from clipwhisper.data.media import load_frames, load_video, local
from clipwhisper.data.video_in_process import read_frames


def test_carried_side():
    assert carried_side(96, 96, 224) == 96  # a mouth crop keeps its size
    assert carried_side(1920, 1080, 224) == 224  # a larger source is scaled down to CLIP's
    assert carried_side(61, 47, 112) == 46  # even, for the chroma planes
    assert carried_side(160, 90, 64) == 64


def test_rgb_is_libswscales_within_3_levels(tmp_path):
    """At the source's size, ``to_rgb`` is libswscale's own yuv420p -> rgb24 conversion within rounding."""
    clip = make_media(tmp_path / "c.mp4", audio=False, size="96x96", pix_fmt="yuv420p", seconds=0.4)
    swscale = read_frames(local(clip), lambda first: [("fps", "25.0"), ("format", "rgb24")])
    mine = to_rgb(torch.from_numpy(load_frames(clip, 224)), 96).numpy()
    assert mine.shape == swscale.shape == (10, 96, 96, 3)
    difference = np.abs(mine.astype(int) - swscale)
    assert difference.max() <= 3 and difference.mean() < 1


def test_scaled_up_to_clips_size_bilinearly(tmp_path):
    clip = make_media(tmp_path / "c.mp4", audio=False, size="48x48", pix_fmt="yuv420p", seconds=0.2)
    native = torch.from_numpy(load_video(clip, 48)).permute(0, 3, 1, 2).float()
    scaled = torch.from_numpy(load_video(clip, 112))
    expected = torch.nn.functional.interpolate(native, size=(112, 112), mode="bilinear", align_corners=False)
    assert scaled.shape == (5, 112, 112, 3)
    assert (scaled.permute(0, 3, 1, 2).float() - expected).abs().max() <= 1  # the native RGB was rounded once


def test_the_encoder_sees_what_load_video_gives(tmp_path):
    """Whatever carries the frames (the loader's planes made RGB on the device, or ``load_video``'s RGB, as
    transcribe reads them), CLIP gets the same pixels."""
    from clipwhisper.config import VideoEncoderConfig
    from clipwhisper.model.video_encoder import ClipVideoEncoder

    tiny = {"embed_dim": 32,
            "vision_cfg": {"image_size": 48, "patch_size": 12, "width": 32, "head_width": 16, "layers": 1}}
    encoder = ClipVideoEncoder.build(VideoEncoderConfig(name=None, **tiny)).eval()
    clip = make_media(tmp_path / "c.mp4", audio=False, size="40x40", pix_fmt="yuv420p", seconds=0.4)
    planes, rgb = torch.from_numpy(load_frames(clip, 48)), torch.from_numpy(load_video(clip, 48))
    lengths = torch.tensor([len(planes)])
    with torch.no_grad():
        from_planes, mask = encoder(planes[None], lengths)
        from_rgb, _ = encoder(rgb[None], lengths)
    assert planes.shape[1:] == (60, 40) and mask.all()
    assert torch.equal(from_planes, from_rgb)


@pytest.mark.parametrize("side", [88, 96])
def test_a_batch_of_sources_of_two_sizes_is_carried_at_the_largest(side):
    flat = np.full((3, 144, 96), 90, np.uint8)  # 96-px frames of one colour
    other = np.full((2, side * 3 // 2, side), 90, np.uint8)
    batch = collate([{"id": "a", "text": "", "video": flat}, {"id": "b", "text": "", "video": other}])
    values, lengths = batch.media["video"]
    assert values.shape == (2, 3, 144, 96) and lengths.tolist() == [3, 2]
    assert (values[1, :2] == 90).all()  # one colour stays that colour, scaled
    assert torch.equal(resized(torch.from_numpy(other), 96), values[1, :2])


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a GPU"))])
def test_the_compiled_clip_input_gives_the_eager_pixels_within_a_level(device):
    """On a GPU the frames become CLIP's input through compiled kernels (on the CPU too, here, to test them in CI),
    which round floats in another order than the eager ops before rounding to a level: a rare value lands one
    level away, none further; a second frame count at an image size already compiled compiles nothing new."""
    from torch._dynamo.utils import counters

    from clipwhisper.model.video_encoder import clip_input, compiled_clip_input

    mean, std = (torch.tensor(values, device=device).view(1, 3, 1, 1) for values in ([0.5, 0.4, 0.3], [0.2, 0.3, 0.25]))
    levels, compiled_graphs = [], []
    for count, size in [(512, 112), (96, 112), (64, 224), (1, 112)]:
        frames = torch.randint(0, 256, (count, 144, 96), dtype=torch.uint8, device=device)
        eager, compiled = (prepare(frames, size, mean, std, torch.float32)
                           for prepare in (clip_input, compiled_clip_input()))
        compiled_graphs.append(counters["stats"]["unique_graphs"])
        assert compiled.shape == (count, 3, size, size)
        levels.append(((compiled - eager) * std * 255).abs().flatten())
    levels = torch.cat(levels)
    assert levels.max() < 1.01 and (levels > 0.5).float().mean() < 1e-4
    assert compiled_graphs[1] == compiled_graphs[0]  # 96 frames at 112 px reuse the compilation for 512
