"""VGG (Simonyan & Zisserman, 2014): only 3×3 convolutions, stacked.

Two 3×3 layers see a 5×5 window and three see 7×7, with fewer weights (``3·3²C² = 27C²`` against
``7²C² = 49C²``) and a non-linearity between each. VGG-16 (configuration "D") has 138 357 544
parameters, most of them in the first fully connected layer (``512·7·7·4096`` ≈ 103 M).
"""
from __future__ import annotations

import torch
from torch import nn

from course_lib.models.layers import scale_channels

# Table 1 of the paper: output channels of each 3×3 conv, "M" = 2×2 max pooling.
VGG_CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],                      # VGG-11
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],             # VGG-13
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],  # VGG-16
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],                                                             # VGG-19
}


def make_vgg_features(config: list[int | str], in_channels: int = 3, batch_norm: bool = False,
                      width: float = 1.0, ceil_mode: bool = False) -> nn.Sequential:
    """The convolutional part of a VGG from a configuration list (see ``VGG_CONFIGS``)."""
    layers: list[nn.Module] = []
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=ceil_mode))
            continue
        out_channels = scale_channels(item, width)
        layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        in_channels = out_channels
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG: ``features`` (3×3 convs and pools) → adaptive average pool → three fully connected layers.

    Args:
        config: a list as in ``VGG_CONFIGS``.
        batch_norm: BatchNorm after every convolution (the later ``vgg16_bn``).
        num_classes, in_channels: 1000 and 3 for ImageNet.
        small: for 28×28 inputs: the pools round up (28 → 14 → 7 → 4 → 2 → 1 instead of
            reaching 0) and the classifier sees ``C×1×1`` instead of ``C×7×7``.
        width: multiplies every channel count and the 4096 hidden units.
        dropout: dropout probability in the classifier.

    Shapes: input ``(N, in_channels, 224, 224)`` (``28, 28`` if ``small``), output ``(N, num_classes)``.
    """

    def __init__(self, config: list[int | str], batch_norm: bool = False, num_classes: int = 1000,
                 in_channels: int = 3, small: bool = False, width: float = 1.0, dropout: float = 0.5):
        super().__init__()
        self.features = make_vgg_features(config, in_channels, batch_norm, width, ceil_mode=small)
        last = scale_channels([c for c in config if c != "M"][-1], width)
        side = 1 if small else 7
        hidden = scale_channels(4096, width)
        self.avgpool = nn.AdaptiveAvgPool2d(side)
        self.classifier = nn.Sequential(
            nn.Linear(last * side * side, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():  # the initialisation of torchvision's VGG
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg(config: str = "D", batch_norm: bool = False, **kwargs) -> VGG:
    """A VGG by the paper's configuration letter: A (11 layers), B (13), D (16), E (19)."""
    if config not in VGG_CONFIGS:
        raise ValueError(f"config={config!r} is not one of {sorted(VGG_CONFIGS)}")
    return VGG(VGG_CONFIGS[config], batch_norm=batch_norm, **kwargs)


def vgg16(num_classes: int = 1000, in_channels: int = 3, small: bool = False, width: float = 1.0,
          batch_norm: bool = False, **kwargs) -> VGG:
    """VGG-16 (configuration D): 138 M parameters on ImageNet."""
    return vgg("D", batch_norm, num_classes=num_classes, in_channels=in_channels, small=small,
               width=width, **kwargs)
