"""A ViT's patch embedding, a convolution whose stride is its kernel, computed as one matmul.

The same sum over each patch's pixels as ``nn.Conv2d``, with the same parameters (a checkpoint's keys do not
change), faster than cuDNN's convolution on an H200: a 224-px greedy ``both`` decode 69.3-69.7 -> 72.5-72.6
utt/s (``benchmarks/patch_embedding_ab.py``, docs/performance.md); level on the CPU."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class PatchEmbedding(nn.Conv2d):
    @classmethod
    def replacing(cls, conv: nn.Module) -> nn.Module:
        """``conv`` as a ``PatchEmbedding`` sharing its parameters, or ``conv`` itself where it is not a patch
        embedding (overlapping or padded windows, groups: a ResNet tower's stem)."""
        if not (type(conv) is nn.Conv2d and conv.stride == conv.kernel_size and conv.padding == (0, 0)
                and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"):
            return conv
        patch = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, bias=False, device="meta")
        patch.weight, patch.bias = conv.weight, conv.bias
        return patch

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        count, channels, height, width = images.shape
        (ph, pw), out = self.kernel_size, self.out_channels
        rows, cols = height // ph, width // pw  # a convolution leaves out the pixels past the last whole patch
        patches = (images[:, :, : rows * ph, : cols * pw].reshape(count, channels, rows, ph, cols, pw)
                   .permute(0, 2, 4, 1, 3, 5).reshape(count, rows * cols, channels * ph * pw))
        embedded = F.linear(patches, self.weight.reshape(out, -1), self.bias)
        # (N, out, rows, cols) as a view whose channels are innermost: the tower's next reshape to
        # (N, patches, width) then needs no copy
        return embedded.transpose(1, 2).reshape(count, out, rows, cols)
