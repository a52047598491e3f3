"""ResNet (He, Zhang, Ren, Sun, 2016, "Deep residual learning for image recognition").

A residual block computes ``y = relu(F(x) + shortcut(x))``: the layers learn the residual ``F``
and the identity is free. On the backward pass ``∂y/∂x = ∂F/∂x + 1``, so the gradient reaches early
layers through the shortcuts however deep the network is. ``residual=False`` removes the shortcuts
and gives the paper's "plain" networks, the control of its Figure 4.

ResNet-18/34 stack :class:`BasicBlock` (two 3×3 convs), ResNet-50 :class:`Bottleneck`
(1×1 reduce → 3×3 → 1×1 expand ×4). When the shape changes, the shortcut is a projection
(1×1 conv with stride + BN, the paper's option B). Parameters: 11.7 M, 21.8 M, 25.6 M.

Layers are named as in torchvision (``conv1``, ``bn1``, ``layer1``..., a block's shortcut ``downsample``),
so torchvision's state_dict of the same architecture loads with ``strict=True``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from course_lib.models.layers import scale_channels

NormLayer = Callable[[int], nn.Module]


class BasicBlock(nn.Module):
    """``relu(bn(conv3×3(relu(bn(conv3×3(x))))) + shortcut(x))``.

    Args:
        in_channels, channels: input and output channels.
        stride: of the first convolution (2 halves the size).
        norm_layer: normalisation after each convolution.
        residual: add the shortcut ``downsample`` (identity or projection; ``None``: a plain block).

    Shapes: ``(N, in_channels, H, W)`` → ``(N, channels, H/stride, W/stride)``.
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 norm_layer: NormLayer = nn.BatchNorm2d, residual: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding=1, bias=False)
        self.bn1 = norm_layer(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = norm_layer(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, channels, stride, norm_layer) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            out = out + self.downsample(x)
        return self.relu(out)


class Bottleneck(nn.Module):
    """``relu(bn(conv1×1_expand(relu(bn(conv3×3(relu(bn(conv1×1_reduce(x)))))))) + shortcut(x))``.

    The 3×3 convolution works on ``channels`` maps, the block outputs ``4·channels``
    (torchvision's "ResNet v1.5": the stride sits on the 3×3 convolution).

    Shapes: ``(N, in_channels, H, W)`` → ``(N, 4·channels, H/stride, W/stride)``.
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 norm_layer: NormLayer = nn.BatchNorm2d, residual: bool = True):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = norm_layer(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, padding=1, bias=False)
        self.bn2 = norm_layer(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = norm_layer(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, out_channels, stride, norm_layer) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            out = out + self.downsample(x)
        return self.relu(out)


def _downsample(in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer) -> nn.Module:
    """Identity when the shape is kept, else a projection: 1×1 conv with stride, then norm."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), norm_layer(out_channels))


class ResNet(nn.Module):
    """ResNet: stem (``conv1, bn1, relu, maxpool``) → stages ``layer1, layer2, ...`` of blocks (the first block of
    stages 2.. halves the size) → avg pool → linear ``fc``.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. ``[2, 2, 2, 2]`` for ResNet-18.
        num_classes, in_channels: 1000 and 3 for ImageNet.
        widths: channels of each stage (the block's ``channels``), ``(64, 128, 256, 512)``.
        small: for 28×28 inputs: a 3×3 stride-1 stem and no max pool (as the paper's CIFAR ResNets)
            instead of 7×7 stride 2 + max pool.
        norm_layer: normalisation layer (``nn.BatchNorm2d``).
        residual: ``False`` builds the plain network of the same depth.
        zero_init_residual: start each block's last BN at γ = 0, so every block starts as the identity.

    Shapes: input ``(N, in_channels, 224, 224)`` (``28, 28`` if ``small``), output ``(N, num_classes)``.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int], num_classes: int = 1000,
                 in_channels: int = 3, widths: tuple[int, ...] = (64, 128, 256, 512), small: bool = False,
                 norm_layer: NormLayer = nn.BatchNorm2d, residual: bool = True, zero_init_residual: bool = False):
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError(f"layers={layers} and widths={widths} must have one entry per stage")
        stem_out = widths[0]
        if small:  # 28 → 28
            self.conv1 = nn.Conv2d(in_channels, stem_out, 3, padding=1, bias=False)
        else:  # 224 → 112 → 56
            self.conv1 = nn.Conv2d(in_channels, stem_out, 7, 2, padding=3, bias=False)
        self.bn1 = norm_layer(stem_out)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(3, stride=2, padding=1)
        channels = stem_out
        self.num_stages = len(layers)
        for k, (blocks, width) in enumerate(zip(layers, widths)):
            stage = []
            for j in range(blocks):
                stride = 2 if k > 0 and j == 0 else 1
                stage.append(block(channels, width, stride, norm_layer, residual))
                channels = width * block.expansion
            setattr(self, f"layer{k + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights(zero_init_residual)

    @property
    def stem(self) -> nn.Sequential:
        """The stem's layers in order (``stem[0]`` is the first convolution); a view, not a sub-module."""
        return nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool)

    @property
    def stages(self) -> list[nn.Sequential]:
        """``[layer1, layer2, ...]``: the stages of blocks."""
        return [getattr(self, f"layer{k + 1}") for k in range(self.num_stages)]

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():  # He initialisation, as in the paper and torchvision
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                last_bn = getattr(m, "bn3", None) if isinstance(m, Bottleneck) else getattr(m, "bn2", None)
                if isinstance(m, (BasicBlock, Bottleneck)) and isinstance(last_bn, nn.BatchNorm2d):
                    nn.init.zeros_(last_bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages:
            x = stage(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _resnet(block, layers, num_classes, in_channels, small, width, **kwargs) -> ResNet:
    widths = tuple(scale_channels(c, width) for c in (64, 128, 256, 512))
    return ResNet(block, layers, num_classes, in_channels, widths, small, **kwargs)


def resnet18(num_classes: int = 1000, in_channels: int = 3, small: bool = False, width: float = 1.0,
             **kwargs) -> ResNet:
    """ResNet-18: BasicBlock × [2, 2, 2, 2]. Keyword arguments go to :class:`ResNet`."""
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, small, width, **kwargs)


def resnet34(num_classes: int = 1000, in_channels: int = 3, small: bool = False, width: float = 1.0,
             **kwargs) -> ResNet:
    """ResNet-34: BasicBlock × [3, 4, 6, 3]."""
    return _resnet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, small, width, **kwargs)


def resnet50(num_classes: int = 1000, in_channels: int = 3, small: bool = False, width: float = 1.0,
             **kwargs) -> ResNet:
    """ResNet-50: Bottleneck × [3, 4, 6, 3]."""
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, small, width, **kwargs)
