"""U-Net (Ronneberger, Fischer & Brox, 2015): an encoder–decoder for segmentation with skip connections.

The encoder ("contracting path") halves the resolution and doubles the channels ``depth`` times;
the decoder ("expanding path") undoes it with *up-convolutions* — 2×2 transposed convolutions of
stride 2, whose output size is ``L_out = (L_in - 1)·stride - 2·padding + kernel_size`` = ``2·L_in``
— and concatenates, at every scale, the encoder's feature map of the same size (the skip
connection), which brings back the fine detail that pooling threw away. A final 1×1 convolution
gives one score per class for every pixel.

Differences from the paper, both common practice: 3×3 convolutions are *padded* (the paper's
are not, so its 572×572 input gives a 388×388 map), so the output has the input's size; and
BatchNorm (2015, the same year) follows each convolution unless ``batch_norm=False``. With
``base_channels=64, depth=4, batch_norm=False`` the layers and parameter count are the paper's.

For a side that is not divisible by ``2**depth`` pooling floors it, the up-convolution then
returns one row/column short, and that row/column is zero-padded back so that it matches the skip.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class DoubleConv(nn.Sequential):
    """(3×3 convolution → [BatchNorm] → ReLU) twice: one U-Net level."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool = True) -> None:
        layers = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=1, bias=not batch_norm))  # BN has the bias
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Up(nn.Module):
    """Up-convolution (×2, half the channels), concatenation with the skip, then :class:`DoubleConv`."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool = True) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels // 2 + out_channels, out_channels, batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (N, C/2, 2h, 2w)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]  # 0, or 1 after an odd side
        x = F.pad(x, (0, dw, 0, dh))
        return self.conv(torch.cat([skip, x], dim=1))  # (N, C_skip + C/2, H, W) -> (N, out, H, W)


class UNet(nn.Module):
    """U-Net: per-pixel class scores ``(N, num_classes, H, W)`` for images ``(N, in_channels, H, W)``.

    Args:
        in_channels: channels of the input image.
        num_classes: ``K``, scores per pixel (use ``F.cross_entropy`` on them).
        base_channels: channels of the first level; level ``i`` has ``base_channels · 2^i``
            (the paper: 64, up to 1024 at the bottom).
        depth: the number of 2× down-samplings (the paper: 4). ``H`` and ``W`` must be at least
            ``2**depth``.
        batch_norm: BatchNorm after every 3×3 convolution.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base_channels: int = 64, depth: int = 4,
                 batch_norm: bool = True) -> None:
        super().__init__()
        if depth < 1 or base_channels < 1 or num_classes < 1 or in_channels < 1:
            raise ValueError(f"need depth, base_channels, num_classes, in_channels >= 1, got depth={depth}, "
                             f"base_channels={base_channels}, num_classes={num_classes}, in_channels={in_channels}")
        self.depth = depth
        widths = [base_channels * 2**i for i in range(depth + 1)]  # e.g. 64, 128, 256, 512, 1024
        self.stem = DoubleConv(in_channels, widths[0], batch_norm)
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), DoubleConv(widths[i], widths[i + 1], batch_norm)) for i in range(depth))
        self.up = nn.ModuleList(Up(widths[i + 1], widths[i], batch_norm) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        if min(H, W) < 2**self.depth:
            raise ValueError(f"input {H}x{W} is smaller than 2**depth = {2**self.depth}: "
                             "the bottom level would be empty")
        skips = [self.stem(x)]
        for down in self.down:  # contracting path
            skips.append(down(skips[-1]))
        x = skips.pop()  # the bottleneck
        for up in self.up:  # expanding path, coarse to fine
            x = up(x, skips.pop())
        return self.head(x)
