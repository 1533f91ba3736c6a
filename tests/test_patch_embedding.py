"""CLIP's patch embedding as one matmul (``model/patch_embedding.py``) computes what open_clip's convolution
does, under the same parameter names."""

import copy

import torch
from torch import nn

from clipwhisper.config import TrainConfig, packaged_config, resolve
from clipwhisper.model.patch_embedding import PatchEmbedding
from clipwhisper.model.video_encoder import ClipVideoEncoder, _build_visual


def test_the_tower_computes_what_open_clip_s_does_under_the_same_names():
    torch.manual_seed(0)
    config = resolve(TrainConfig, packaged_config("tiny"), {}).model.video_encoder
    visual, norm = _build_visual(config)
    original = copy.deepcopy(visual)
    encoder = ClipVideoEncoder(visual, norm["mean"], norm["std"])
    assert type(encoder.visual.conv1) is PatchEmbedding and type(original.conv1) is nn.Conv2d
    assert encoder.visual.state_dict().keys() == original.state_dict().keys()
    images = torch.randn(5, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(encoder.visual(images), original(images), rtol=1e-5, atol=1e-5)


def test_pixels_past_the_last_whole_patch_are_left_out_as_by_a_convolution():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, kernel_size=(4, 5), stride=(4, 5), bias=True)
    patch = PatchEmbedding.replacing(conv)
    assert patch.weight is conv.weight and patch.bias is conv.bias
    images = torch.randn(2, 3, 18, 23)
    with torch.no_grad():
        torch.testing.assert_close(patch(images), conv(images), rtol=1e-5, atol=1e-5)


def test_a_convolution_that_is_no_patch_embedding_stays_as_it_is():
    for conv in (nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.Conv2d(4, 8, 2, stride=2, groups=2),
                 nn.Conv2d(3, 8, 4, stride=2)):
        assert PatchEmbedding.replacing(conv) is conv
