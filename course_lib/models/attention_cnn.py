"""A small CNN for 28×28 images, with or without attention, for the comparisons of chapter 5.

Three stages of [3×3 conv → BatchNorm → ReLU → (attention block)], max-pooling between them
(28 → 14 → 7), then a *pooling head* and one linear layer. ``attention`` chooses:

* ``"none"`` — global average pooling (GAP): the head of Zhou et al. (2016), which makes CAM exact;
* ``"pool"`` — :class:`~course_lib.attention.AttentionPool2d`: a learned softmax over the 7×7
  positions replaces the uniform average (the lecture's "attention weights × feature map");
* ``"se"`` — a :class:`~course_lib.attention.SqueezeExcitation` block in every stage (Hu et al., 2018);
* ``"cbam"`` — a :class:`~course_lib.attention.CBAM` block in every stage (Woo et al., 2018).
"""
from __future__ import annotations

from torch import nn

from course_lib.attention import CBAM, AttentionPool2d, SqueezeExcitation

ATTENTION_KINDS = ("none", "pool", "se", "cbam")


class AttentionCNN(nn.Module):
    """``(N, in_channels, 28, 28)`` → ``(N, num_classes)`` logits.

    Args:
        widths: channels of the three stages.
        attention: one of :data:`ATTENTION_KINDS`.
        reduction: the SE/CBAM bottleneck ratio ``r`` (the papers use 16; small widths need less).

    Attributes:
        features: the convolutional stages, output ``(N, widths[-1], 7, 7)``.
        pool: ``(N, C, 7, 7)`` → ``(N, C)``, average or attention pooling.
        fc: the linear classifier ``(N, C)`` → ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths=(16, 32, 64),
                 attention: str = "none", reduction: int = 4) -> None:
        super().__init__()
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {attention!r}")
        layers, channels = [], in_channels
        for stage, width in enumerate(widths):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if attention == "se":
                layers.append(SqueezeExcitation(width, max(1, width // reduction)))
            elif attention == "cbam":
                layers.append(CBAM(width, reduction=reduction))
            if stage < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = AttentionPool2d(channels) if attention == "pool" else nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)))
