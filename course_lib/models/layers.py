"""Building blocks shared by the model families: conv → norm → activation, and channel rounding.

torchvision calls the first one ``Conv2dNormActivation``; GoogLeNet, Inception-v3, MobileNet and
EfficientNet are all stacks of it.
"""
from __future__ import annotations

import math
from typing import Callable

from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of ``divisor``, never going down by more than 10 %.

    MobileNet v2/v3 and EfficientNet scale widths by a real factor and then round with this rule
    (hardware likes multiples of 8); it is why ``width=1.1`` gives 40 → 48 and not 44.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:  # rounding down must not lose more than 10 %
        rounded += divisor
    return rounded


def scale_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1: the width multiplier of MobileNet (α) and friends."""
    if width <= 0:
        raise ValueError(f"width multiplier must be positive, got width={width}")
    return max(1, int(round(channels * width)))


def scale_depth(layers: int, depth: float) -> int:
    """``ceil(layers * depth)``: EfficientNet's depth multiplier applied to a stage of ``layers`` blocks."""
    if depth <= 0:
        raise ValueError(f"depth multiplier must be positive, got depth={depth}")
    return int(math.ceil(layers * depth))


class ConvNormAct(nn.Sequential):
    """``Conv2d → norm → activation`` with 'same' padding for odd kernels.

    The convolution has a bias only when there is no normalisation layer: a bias right before
    BatchNorm is cancelled by its mean subtraction.

    Args:
        in_channels, out_channels, kernel_size, stride, groups: as in ``nn.Conv2d``; ``kernel_size``
            may be a pair ``(kH, kW)`` for the asymmetric ``1×n``/``n×1`` convolutions.
        padding: default ``(k - 1) // 2`` per axis, which keeps the size at stride 1.
        norm_layer: a callable ``norm_layer(channels)`` or ``None`` for no normalisation.
        activation: a callable returning a module, or ``None``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int] = 3,
                 stride: int = 1, padding: int | tuple[int, int] | None = None, groups: int = 1,
                 norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d,
                 activation: Callable[..., nn.Module] | None = nn.ReLU):
        kH, kW = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if padding is None:
            padding = ((kH - 1) // 2, (kW - 1) // 2)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, (kH, kW), stride, padding,
                                             groups=groups, bias=norm_layer is None)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation is not None:
            layers.append(activation(inplace=True) if activation in (nn.ReLU, nn.SiLU) else activation())
        super().__init__(*layers)
        self.out_channels = out_channels
