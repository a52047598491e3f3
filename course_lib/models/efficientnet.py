"""EfficientNet (Tan & Le, 2019): MBConv blocks with squeeze-excitation, scaled by one coefficient φ.

Compound scaling: depth ``d = α^φ``, width ``w = β^φ``, resolution ``r = γ^φ`` with
``α = 1.2, β = 1.1, γ = 1.15`` found by a grid search at φ = 1 under ``α·β²·γ² ≈ 2``; the cost of a
convolutional network grows as ``d·w²·r²``, so each step of φ doubles the FLOPS.
The baseline B0 (5.3 M parameters, 0.39 G mult-adds, 77.1 % top-1) was found by architecture search
and is a stack of MBConv blocks (the inverted residual of MobileNet v2 with squeeze-excitation,
``course_lib.attention.SqueezeExcitation``):
``1×1 expand ×6 → depthwise k×k → SE → 1×1 project`` with a residual when the shape is kept.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import nn

from course_lib.attention import SqueezeExcitation  # channel attention, chapter 5
from course_lib.models.layers import ConvNormAct, make_divisible, scale_depth

# Table 1 of the paper (B0): (expand ratio, kernel, stride, input channels, output channels, layers)
EFFICIENTNET_B0_STAGES: list[tuple[int, int, int, int, int, int]] = [
    (1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1),
]
# The released models' multipliers (width, depth, resolution, dropout): rounded versions of the
# compound rule rather than exact powers of α, β, γ.
EFFICIENTNET_CONFIGS: dict[str, tuple[float, float, int, float]] = {
    "b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3), "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5),
}


def compound_scaling(phi: float, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15,
                     base_resolution: int = 224) -> tuple[float, float, int]:
    """Depth, width and resolution for the compound coefficient φ (equation 3 of the paper).

    Returns:
        ``(α^φ, β^φ, round(base_resolution · γ^φ))``: depth and width multipliers and the image side.
    """
    return alpha ** phi, beta ** phi, round(base_resolution * gamma ** phi)


class MBConv(nn.Module):
    """Mobile inverted bottleneck: ``1×1 expand → depthwise k×k → SE → 1×1 project (+ x)``.

    The projection has no activation (a linear bottleneck, MobileNet v2). The residual is added
    when ``stride == 1`` and the channels agree; during training the residual branch is dropped at
    random for whole examples with probability ``stochastic_depth`` (Huang et al., 2016).

    Shapes: ``(N, in_channels, H, W)`` → ``(N, out_channels, H/stride, W/stride)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int,
                 stochastic_depth: float = 0.0, se_ratio: float = 0.25,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride={stride} must be 1 or 2")
        hidden = in_channels * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(in_channels, hidden, 1, norm_layer=norm_layer, activation=nn.SiLU))
        layers += [
            ConvNormAct(hidden, hidden, kernel_size, stride, groups=hidden, norm_layer=norm_layer, activation=nn.SiLU),
            SqueezeExcitation(hidden, max(1, int(in_channels * se_ratio)), activation=nn.SiLU),  # squeeze relative to the input
            ConvNormAct(hidden, out_channels, 1, norm_layer=norm_layer, activation=None),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.stochastic_depth = stochastic_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if not self.use_residual:
            return out
        if self.training and self.stochastic_depth > 0:
            keep = 1.0 - self.stochastic_depth
            mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
            out = out * mask / keep  # (N, 1, 1, 1) mask: whole examples skip the block
        return out + x


class EfficientNet(nn.Module):
    """EfficientNet: stem conv 3×3/2 → MBConv stages (``EFFICIENTNET_B0_STAGES`` scaled) → conv 1×1 → pool → linear.

    Args:
        width: width multiplier (channels rounded to multiples of 8).
        depth: depth multiplier (layers per stage rounded up).
        num_classes, in_channels: 1000 and 3 for ImageNet.
        small: for 28×28 inputs: the stem has stride 1 (28 → 28 → 14 → 7 → 4 → 2).
        dropout: before the classifier (0.2 for B0).
        stochastic_depth: survival drop probability of the last block; it grows linearly from 0.
        norm_layer: normalisation (BatchNorm with ε = 1e-3 as in the reference code).

    Shapes: input ``(N, in_channels, R, R)`` with ``R = 224`` for B0 (``28`` if ``small``), output ``(N, num_classes)``.
    """

    def __init__(self, width: float = 1.0, depth: float = 1.0, num_classes: int = 1000, in_channels: int = 3,
                 small: bool = False, dropout: float = 0.2, stochastic_depth: float = 0.2,
                 norm_layer: Callable[[int], nn.Module] = partial(nn.BatchNorm2d, eps=1e-3)):
        super().__init__()
        channels = make_divisible(32 * width)
        layers: list[nn.Module] = [ConvNormAct(in_channels, channels, 3, 1 if small else 2,
                                               norm_layer=norm_layer, activation=nn.SiLU)]
        total = sum(scale_depth(stage[-1], depth) for stage in EFFICIENTNET_B0_STAGES)
        index = 0
        for expand, kernel, stride, _, out_channels, num_layers in EFFICIENTNET_B0_STAGES:
            out_channels = make_divisible(out_channels * width)
            stage = []
            for j in range(scale_depth(num_layers, depth)):
                stage.append(MBConv(channels, out_channels, kernel, stride if j == 0 else 1, expand,
                                    stochastic_depth * index / total, norm_layer=norm_layer))
                channels = out_channels
                index += 1
            layers.append(nn.Sequential(*stage))
        head = 4 * channels  # 1280 for B0
        layers.append(ConvNormAct(channels, head, 1, norm_layer=norm_layer, activation=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(head, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def efficientnet(variant: str = "b0", num_classes: int = 1000, in_channels: int = 3, small: bool = False,
                 **kwargs) -> EfficientNet:
    """EfficientNet-B0 … B7 with the multipliers of ``EFFICIENTNET_CONFIGS`` (input side in the table)."""
    if variant not in EFFICIENTNET_CONFIGS:
        raise ValueError(f"variant={variant!r} is not one of {sorted(EFFICIENTNET_CONFIGS)}")
    width, depth, _, dropout = EFFICIENTNET_CONFIGS[variant]
    kwargs.setdefault("dropout", dropout)
    return EfficientNet(width, depth, num_classes, in_channels, small, **kwargs)


def efficientnet_b0(num_classes: int = 1000, in_channels: int = 3, small: bool = False, **kwargs) -> EfficientNet:
    """EfficientNet-B0: 5.3 M parameters at 224×224."""
    return efficientnet("b0", num_classes, in_channels, small, **kwargs)
