"""AlexNet (Krizhevsky, Sutskever, Hinton, 2012): the ImageNet winner that started deep learning.

Five convolutions and three fully connected layers, ReLU instead of tanh, dropout before the
fully connected layers, local response normalisation, overlapping max pooling, and the network
split over two GPUs: conv2, conv4 and conv5 only see the maps on their own GPU, which is a grouped
convolution with ``groups=2``. That gives the paper's "60 million parameters" (60 965 224).
torchvision's ``alexnet`` is the one-GPU variant of Krizhevsky (2014, "One weird trick"):
64-192-384-256-256 maps, no grouping, no LRN (61 100 840 parameters).
"""
from __future__ import annotations

import torch
from torch import nn

from course_lib.models.layers import scale_channels

# channels of conv1..conv5, their groups, and whether conv1/conv2 are followed by LRN
ALEXNET_CONFIGS = {
    "paper": dict(channels=(96, 256, 384, 384, 256), groups=(1, 2, 1, 2, 2), lrn=True),
    "torchvision": dict(channels=(64, 192, 384, 256, 256), groups=(1, 1, 1, 1, 1), lrn=False),
}


class AlexNet(nn.Module):
    """AlexNet.

    Args:
        channels: output channels of the five convolutions.
        groups: groups of the five convolutions (2 = the paper's two-GPU split).
        lrn: local response normalisation after conv1 and conv2 (``k=2, n=5, α=1e-4, β=0.75``).
        num_classes, in_channels: 1000 and 3 for ImageNet.
        small: for 28×28 inputs: conv1 is 5×5 stride 1 instead of 11×11 stride 4, and the pools
            are 2×2 (28 → 14 → 7 → 3), so the classifier sees ``C×3×3`` instead of ``C×6×6``.
        width: multiplies every channel count and the 4096 hidden units (for cheap variants).
        dropout: dropout probability before each hidden fully connected layer (0.5).

    Shapes: input ``(N, in_channels, 224, 224)`` (``28, 28`` if ``small``), output ``(N, num_classes)``.
    """

    def __init__(self, channels=(96, 256, 384, 384, 256), groups=(1, 2, 1, 2, 2), lrn: bool = True,
                 num_classes: int = 1000, in_channels: int = 3, small: bool = False,
                 width: float = 1.0, dropout: float = 0.5):
        super().__init__()
        c1, c2, c3, c4, c5 = (scale_channels(c, width) for c in channels)
        g1, g2, g3, g4, g5 = groups
        hidden = scale_channels(4096, width)

        def pool():  # overlapping 3×3 stride-2 pooling in the paper; 2×2 on small inputs
            return nn.MaxPool2d(2) if small else nn.MaxPool2d(3, stride=2)

        def norm():
            return [nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)] if lrn else []

        conv1 = nn.Conv2d(in_channels, c1, 5, padding=2, groups=g1) if small else \
            nn.Conv2d(in_channels, c1, 11, stride=4, padding=2, groups=g1)   # 224 → 55
        self.features = nn.Sequential(
            conv1, nn.ReLU(inplace=True), *norm(), pool(),                     # 27 (small: 14)
            nn.Conv2d(c1, c2, 5, padding=2, groups=g2), nn.ReLU(inplace=True), *norm(), pool(),  # 13 (7)
            nn.Conv2d(c2, c3, 3, padding=1, groups=g3), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1, groups=g4), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1, groups=g5), nn.ReLU(inplace=True), pool(),  # 6 (3)
        )
        side = 3 if small else 6
        self.avgpool = nn.AdaptiveAvgPool2d(side)  # lets other input sizes through
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(c5 * side * side, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def alexnet(variant: str = "paper", num_classes: int = 1000, in_channels: int = 3, small: bool = False,
            width: float = 1.0, **kwargs) -> AlexNet:
    """AlexNet as in the 2012 paper (``variant="paper"``) or as in torchvision (``"torchvision"``)."""
    if variant not in ALEXNET_CONFIGS:
        raise ValueError(f"variant={variant!r} is not one of {sorted(ALEXNET_CONFIGS)}")
    return AlexNet(**ALEXNET_CONFIGS[variant], num_classes=num_classes, in_channels=in_channels,
                   small=small, width=width, **kwargs)
