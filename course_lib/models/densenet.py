"""DenseNet (Huang, Liu, van der Maaten, Weinberger, 2017, "Densely connected convolutional networks").

Inside a dense block every layer receives the concatenation of the maps of *all* layers before it,
so a block of ``L`` layers has ``L(L+1)/2`` connections: O(L²). Each layer adds only ``k`` maps
(the growth rate, 32 in DenseNet-121), so the layers are very narrow and the network has fewer
parameters than a ResNet of similar accuracy (DenseNet-121: 8.0 M against ResNet-50's 25.6 M).
Between blocks a transition layer (1×1 conv halving the channels, 2×2 average pool) shrinks the maps.
"""
from __future__ import annotations

import torch
from torch import nn

from course_lib.models.layers import scale_channels


class DenseLayer(nn.Module):
    """``BN → ReLU → conv 1×1 (bn_size·k) → BN → ReLU → conv 3×3 (k)``: returns only the ``k`` new maps.

    Shapes: ``(N, in_channels, H, W)`` → ``(N, growth_rate, H, W)``.
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int = 4, dropout: float = 0.0):
        super().__init__()
        self.bottleneck = nn.Sequential(  # the 1×1 "bottleneck" keeps the 3×3 conv cheap (DenseNet-B)
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False))
        self.conv = nn.Sequential(
            nn.BatchNorm2d(bn_size * growth_rate), nn.ReLU(inplace=True),
            nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.conv(self.bottleneck(x)))


class DenseBlock(nn.Module):
    """``num_layers`` dense layers; layer ``i`` sees the input and the outputs of layers ``1..i-1``.

    Shapes: ``(N, C, H, W)`` → ``(N, C + num_layers·growth_rate, H, W)``.
    """

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, dropout) for i in range(num_layers))
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class Transition(nn.Sequential):
    """``BN → ReLU → conv 1×1 → avg pool 2×2``: between dense blocks, shrinks channels and size.

    Shapes: ``(N, in_channels, H, W)`` → ``(N, out_channels, H/2, W/2)``.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                         nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.AvgPool2d(2, stride=2))


class DenseNet(nn.Module):
    """DenseNet-BC: stem → [dense block → transition] × … → dense block → BN → ReLU → avg pool → linear.

    Args:
        growth_rate: ``k``, maps added by each layer (32).
        block_config: layers per dense block, ``(6, 12, 24, 16)`` for DenseNet-121.
        num_init_features: channels of the stem (``2k``).
        bn_size: the 1×1 bottleneck has ``bn_size·k`` channels.
        compression: transitions keep this fraction of the channels (θ = 0.5).
        num_classes, in_channels: 1000 and 3 for ImageNet.
        small: for 28×28 inputs: a 3×3 stride-1 stem without max pool (28 → 14 → 7 → 3).

    Shapes: input ``(N, in_channels, 224, 224)`` (``28, 28`` if ``small``), output ``(N, num_classes)``.
    """

    def __init__(self, growth_rate: int = 32, block_config: tuple[int, ...] = (6, 12, 24, 16),
                 num_init_features: int = 64, bn_size: int = 4, compression: float = 0.5,
                 num_classes: int = 1000, in_channels: int = 3, small: bool = False, dropout: float = 0.0):
        super().__init__()
        if not 0 < compression <= 1:
            raise ValueError(f"compression={compression} must be in (0, 1]")
        if small:
            stem = [nn.Conv2d(in_channels, num_init_features, 3, padding=1, bias=False)]
        else:  # 7×7/2 conv → BN → ReLU → 3×3/2 max pool: 224 → 56
            stem = [nn.Conv2d(in_channels, num_init_features, 7, 2, padding=3, bias=False),
                    nn.BatchNorm2d(num_init_features), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1)]
        layers: list[nn.Module] = stem
        channels = num_init_features
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size, dropout)
            layers.append(block)
            channels = block.out_channels
            if i < len(block_config) - 1:
                layers.append(Transition(channels, int(channels * compression)))
                channels = int(channels * compression)
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def densenet121(num_classes: int = 1000, in_channels: int = 3, small: bool = False, width: float = 1.0,
                **kwargs) -> DenseNet:
    """DenseNet-121: k = 32, blocks (6, 12, 24, 16); ``width`` scales k and the stem."""
    k = scale_channels(32, width)
    return DenseNet(k, (6, 12, 24, 16), 2 * k, num_classes=num_classes, in_channels=in_channels,
                    small=small, **kwargs)
