"""Inception-ResNet (Szegedy, Ioffe, Vanhoucke & Alemi, 2017): Inception modules with residual connections.

Inception-v4 made the Inception network deeper and more uniform; Inception-ResNet replaces the
concatenating module by a *residual* one. The branches' concatenation goes through a linear
``1×1`` convolution back to the input's width and is added to the input, **scaled down**:

.. math:: y = \\mathrm{ReLU}\\bigl(x + s\\cdot W_{1\\times1}[\\,b_1(x), b_2(x), b_3(x)\\,]\\bigr),
          \\qquad s \\in [0.1, 0.3] .

The paper: "if the number of filters exceeded 1000, the residual variants started to exhibit
instabilities and the network just died early in the training"; scaling the residuals by 0.1–0.3
before the addition stabilised it. Residual connections made training markedly faster, while the
final accuracy was about that of a same-cost Inception network (Inception-ResNet-v2 vs
Inception-v4: 19.9 % vs 20.0 % top-1, 4.9 % vs 5.0 % top-5, single crop, Table 2).

:class:`InceptionResNetA` is the block of the 35×35 grid: Figure 16 (v2: 384 channels, branches
``1×1:32 | 1×1:32 → 3×3:32 | 1×1:32 → 3×3:48 → 3×3:64``) and Figure 10 (v1: 256 channels, the
last branch ``32 → 32 → 32``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import torch
from torch import nn

from course_lib.models.layers import ConvNormAct

V2_BRANCHES = ((32,), (32, 32), (32, 48, 64))   # Figure 16
V1_BRANCHES = ((32,), (32, 32), (32, 32, 32))   # Figure 10


class InceptionResNetA(nn.Module):
    """A residual Inception block: ``(N, channels, H, W)`` → ``(N, channels, H, W)``.

    Args:
        channels: the grid's width (384 in Inception-ResNet-v2, 256 in v1).
        branches: the output channels of each branch's convolutions; the first of each is ``1×1``,
            the others ``3×3``.
        scale: the residual scaling ``s`` (the paper: 0.1 to 0.3).
    """

    def __init__(self, channels: int = 384, branches: Sequence[Sequence[int]] = V2_BRANCHES, scale: float = 0.17,
                 norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d):
        super().__init__()
        self.scale = scale
        self.branches = nn.ModuleList()
        for widths in branches:
            layers, c_in = [], channels
            for k, c_out in enumerate(widths):
                layers.append(ConvNormAct(c_in, c_out, 1 if k == 0 else 3, norm_layer=norm_layer))
                c_in = c_out
            self.branches.append(nn.Sequential(*layers))
        concatenated = sum(widths[-1] for widths in branches)
        self.project = nn.Conv2d(concatenated, channels, 1)  # linear: no norm, no activation (the "1x1 Conv (Linear)")
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.project(torch.cat([branch(x) for branch in self.branches], dim=1))
        return self.relu(x + self.scale * residual)
