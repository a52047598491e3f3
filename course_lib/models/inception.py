"""Inception v2/v3 (Szegedy et al., 2016, "Rethinking the Inception architecture"): factorised convolutions.

Two ways to keep a large receptive field for fewer weights:

* a ``5×5`` convolution becomes two stacked ``3×3`` ones: ``2·9 = 18`` weights per channel pair
  instead of ``25`` (28 % fewer), same 5×5 receptive field, one more non-linearity (Figure 5);
* an ``n×n`` convolution becomes ``1×n`` followed by ``n×1``: ``2n`` instead of ``n²`` weights
  (for ``n = 3`` a third fewer, for ``n = 7`` 71 % fewer) (Figures 6 and 7).

Without a non-linearity in between, ``1×n`` then ``n×1`` computes exactly an ``n×n`` convolution
whose kernel is the outer product ``v uᵀ`` of the two: a rank-one kernel.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from course_lib.models.layers import ConvNormAct


class FactorizedConv2d(nn.Sequential):
    """An ``n×n`` convolution factorised into ``1×n`` followed by ``n×1`` ('same' padding).

    Args:
        in_channels, out_channels: as in ``nn.Conv2d``.
        n: the size of the square kernel it replaces.
        mid_channels: channels between the two (default ``out_channels``).
        norm_layer, activation: after each of the two convolutions (``None`` for a purely linear,
            rank-one ``n×n`` convolution).

    Shapes: ``(N, in_channels, H, W)`` → ``(N, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, n: int, mid_channels: int | None = None,
                 norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d,
                 activation: Callable[..., nn.Module] | None = nn.ReLU):
        if n < 2 or n % 2 == 0:
            raise ValueError(f"n={n} must be an odd kernel size >= 3")
        mid_channels = out_channels if mid_channels is None else mid_channels
        super().__init__(
            ConvNormAct(in_channels, mid_channels, (1, n), norm_layer=norm_layer, activation=activation),
            ConvNormAct(mid_channels, out_channels, (n, 1), norm_layer=norm_layer, activation=activation),
        )


class InceptionFactorized(nn.Module):
    """The Inception module of v2/v3 (Figures 5 and 6 of the paper).

    ``[1×1 | 1×1 → k×k | 1×1 → k×k → k×k | avg pool 3×3 → 1×1]``: the 5×5 branch of v1 is two
    stacked ``k×k`` convolutions. With ``n=None`` each ``k×k`` is a plain 3×3 (Figure 5); with an
    ``n`` each is factorised into ``1×n → n×1`` (Figure 6, ``n = 7`` on the 17×17 grid).

    Shapes: ``(N, in_channels, H, W)`` → ``(N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)``.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, n: int | None = None,
                 norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d):
        super().__init__()

        def square(cin, cout):  # the k×k convolution, factorised or not
            if n is None:
                return ConvNormAct(cin, cout, 3, norm_layer=norm_layer)
            return FactorizedConv2d(cin, cout, n, norm_layer=norm_layer)

        self.branch1 = ConvNormAct(in_channels, ch1x1, 1, norm_layer=norm_layer)
        self.branch2 = nn.Sequential(ConvNormAct(in_channels, ch3x3red, 1, norm_layer=norm_layer),
                                     square(ch3x3red, ch3x3))
        self.branch3 = nn.Sequential(ConvNormAct(in_channels, ch5x5red, 1, norm_layer=norm_layer),
                                     square(ch5x5red, ch5x5), square(ch5x5, ch5x5))
        self.branch4 = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1),
                                     ConvNormAct(in_channels, pool_proj, 1, norm_layer=norm_layer))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], dim=1)
