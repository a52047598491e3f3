"""Super-resolution's sub-pixel upsampling: the pixel shuffle (Shi et al., 2016, ESPCN).

To enlarge an image :math:`r` times, ESPCN computes everything at the *low* resolution and lets the
last convolution output :math:`C r^2` channels; the pixel shuffle then rearranges each group of
:math:`r^2` channels into an :math:`r \\times r` block of pixels:

.. math:: y[n, c, h r + i, w r + j] = x[n, c r^2 + i r + j, h, w], \\qquad 0 \\le i, j < r .

The convolution and the shuffle together are equivalent to a transposed convolution with stride
:math:`r` (chapter 2), but cheaper, and they have no checkerboard artefacts of uneven overlap
(chapter 7). This is ``F.pixel_shuffle`` / ``nn.PixelShuffle``.
"""
from __future__ import annotations

import torch


def pixel_shuffle(input: torch.Tensor, upscale_factor: int) -> torch.Tensor:
    """``(N, C·r², H, W)`` → ``(N, C, H·r, W·r)``, as ``F.pixel_shuffle``."""
    N, channels, H, W = input.shape
    r = upscale_factor
    if channels % (r * r):
        raise ValueError(f"pixel_shuffle: {channels} channels are not a multiple of r² = {r * r}")
    C = channels // (r * r)
    x = input.reshape(N, C, r, r, H, W)                   # (N, C, i, j, H, W)
    x = x.permute(0, 1, 4, 2, 5, 3)                       # (N, C, H, i, W, j)
    return x.reshape(N, C, H * r, W * r)
