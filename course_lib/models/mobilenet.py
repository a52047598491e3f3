"""MobileNet v1 (Howard et al., 2017): depthwise separable convolutions.

A standard convolution with a ``D_K×D_K`` kernel, ``M`` input and ``N`` output channels on a
``D_F×D_F`` map costs ``D_K·D_K·M·N·D_F·D_F`` mult-adds. MobileNet splits it into a depthwise
convolution (one ``D_K×D_K`` filter per input channel, ``groups=M``: ``D_K·D_K·M·D_F·D_F``) and a
pointwise 1×1 convolution that mixes channels (``M·N·D_F·D_F``). The ratio of the costs is
``1/N + 1/D_K²``: 8–9 times cheaper for 3×3 kernels. MobileNet-224 (α = 1): 4.2 M parameters,
569 M mult-adds, 70.6 % top-1 on ImageNet.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from course_lib.models.layers import ConvNormAct, scale_channels

# Table 1 of the paper after the 3×3/2 stem conv with 32 maps: (output channels, stride) of the
# depthwise separable blocks.
MOBILENET_V1_CONFIG: list[tuple[int, int]] = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
]


class DepthwiseSeparableConv(nn.Sequential):
    """``depthwise 3×3 (groups=in_channels) → BN → ReLU → pointwise 1×1 → BN → ReLU`` (Figure 3).

    Shapes: ``(N, in_channels, H, W)`` → ``(N, out_channels, H/stride, W/stride)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3,
                 norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d):
        super().__init__(
            ConvNormAct(in_channels, in_channels, kernel_size, stride, groups=in_channels, norm_layer=norm_layer),
            ConvNormAct(in_channels, out_channels, 1, norm_layer=norm_layer),
        )


class MobileNetV1(nn.Module):
    """MobileNet v1: conv 3×3/2 → 13 depthwise separable blocks → global avg pool → linear.

    Args:
        num_classes, in_channels: 1000 and 3 for ImageNet.
        width: the width multiplier α of section 3.3 (1, 0.75, 0.5, 0.25): every layer has α·C maps,
            which cuts cost and parameters by about α².
        small: for 28×28 inputs: the stem has stride 1 (28 → 28 → 14 → 7 → 4 → 2).
        norm_layer: normalisation after each convolution.

    The resolution multiplier ρ of the paper is simply a smaller input (e.g. 160×160).
    Shapes: input ``(N, in_channels, 224, 224)`` (``28, 28`` if ``small``), output ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0, small: bool = False,
                 norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d, dropout: float = 0.0):
        super().__init__()
        channels = scale_channels(32, width)
        layers: list[nn.Module] = [ConvNormAct(in_channels, channels, 3, 1 if small else 2, norm_layer=norm_layer)]
        for out_channels, stride in MOBILENET_V1_CONFIG:
            out_channels = scale_channels(out_channels, width)
            layers.append(DepthwiseSeparableConv(channels, out_channels, stride, norm_layer=norm_layer))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.fc(self.dropout(torch.flatten(x, 1)))


def mobilenet_v1(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0, small: bool = False,
                 **kwargs) -> MobileNetV1:
    """MobileNet v1 with width multiplier α = ``width``. Keyword arguments go to :class:`MobileNetV1`."""
    return MobileNetV1(num_classes=num_classes, in_channels=in_channels, width=width, small=small, **kwargs)


def separable_cost_ratio(out_channels: int, kernel_size: int) -> float:
    """``(D_K²·M·D_F² + M·N·D_F²) / (D_K²·M·N·D_F²) = 1/N + 1/D_K²`` (section 3.1 of the paper)."""
    return 1.0 / out_channels + 1.0 / kernel_size ** 2
