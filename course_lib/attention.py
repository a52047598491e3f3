"""Attention in convolutional networks: weight *where* (spatial) and *what* (channels) to look at.

The lecture's recipe (SPbU, "Механизм внимания в свёрточных сетях"): not every part of a feature
map matters, so a small layer computes *attention weights*, a softmax turns them into a
distribution, and the feature map is multiplied by them.

* :func:`spatial_softmax` and :class:`AttentionPool2d` — a 1×1 convolution scores every position,
  a softmax over the ``H·W`` positions gives weights that sum to 1, and the weighted sum of the
  feature vectors replaces global average pooling (which is the case of equal weights ``1/HW``).
* :class:`SqueezeExcitation` — channel attention (Hu et al., 2018, "Squeeze-and-Excitation
  Networks"), the same module and parameter names as ``torchvision.ops.SqueezeExcitation``.
* :class:`ChannelAttention`, :class:`SpatialAttention`, :class:`CBAM` — the Convolutional Block
  Attention Module (Woo et al., 2018): a channel gate followed by a spatial gate.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


def spatial_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over all spatial positions of each map: weights that sum to 1 over ``(H, W)``.

    .. math::  a_{n,c,i,j} = \\frac{\\exp s_{n,c,i,j}}{\\sum_{i',j'} \\exp s_{n,c,i',j'}}

    Args:
        scores: ``(N, C, H, W)`` attention scores (logits), usually ``C = 1``.

    Returns:
        ``(N, C, H, W)`` non-negative weights, each ``(n, c)`` map summing to 1.
    """
    if scores.dim() != 4:
        raise ValueError(f"scores must be (N, C, H, W), got shape {tuple(scores.shape)}")
    N, C, H, W = scores.shape
    weights = scores.reshape(N, C, H * W).softmax(dim=-1)  # (N, C, H*W)
    return weights.reshape(N, C, H, W)


class AttentionPool2d(nn.Module):
    """Attention pooling: a softmax-weighted average of the feature vectors over positions.

    .. math::

        s_{ij} = w^\\top x_{:,ij} + b, \\qquad a = \\operatorname{softmax}_{(i,j)}(s), \\qquad
        z = \\sum_{i,j} a_{ij}\\, x_{:,ij}

    Global average pooling is the special case ``a_ij = 1/(HW)``; here the network learns where
    to look. Costs ``C + 1`` parameters.

    Args:
        in_channels: ``C``, the channels of the feature map.

    Shape:
        input ``(N, C, H, W)`` → output ``(N, C)``.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.score = nn.Conv2d(in_channels, 1, kernel_size=1)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights ``a``, shape ``(N, 1, H, W)``, summing to 1 over ``(H, W)``."""
        return spatial_softmax(self.score(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.weights(x)  # (N, 1, H, W)
        return (a * x).sum(dim=(2, 3))  # (N, C)


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation: rescale every channel by a gate computed from all channels.

    .. math::

        z = \\operatorname{GAP}(x) \\in \\mathbb{R}^C, \\qquad
        s = \\sigma\\big(W_2\\, \\delta(W_1 z + b_1) + b_2\\big), \\qquad y_{c,i,j} = s_c\\, x_{c,i,j}

    Hu et al., 2018, eq. 2–4 (``delta`` = ReLU, ``sigma`` = sigmoid). The two fully connected
    layers are 1×1 convolutions named ``fc1``/``fc2``, exactly as in
    ``torchvision.ops.SqueezeExcitation``, so its weights load into this module and back.

    Args:
        input_channels: ``C``.
        squeeze_channels: the bottleneck width (the paper uses ``C / r`` with ``r = 16``).
        activation: the ``delta`` module class.
        scale_activation: the ``sigma`` module class.

    Shape:
        input ``(N, C, H, W)`` → output ``(N, C, H, W)``.
    """

    def __init__(self, input_channels: int, squeeze_channels: int,
                 activation: Callable[..., nn.Module] = nn.ReLU,
                 scale_activation: Callable[..., nn.Module] = nn.Sigmoid) -> None:
        super().__init__()
        if input_channels < 1 or squeeze_channels < 1:
            raise ValueError(f"need input_channels, squeeze_channels >= 1, got "
                             f"{input_channels}, {squeeze_channels}")
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """The channel gates ``s``, shape ``(N, C, 1, 1)``, each in (0, 1) for a sigmoid."""
        z = self.avgpool(x)  # squeeze: (N, C, 1, 1)
        return self.scale_activation(self.fc2(self.activation(self.fc1(z))))  # excitation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(x) * x


class ChannelAttention(nn.Module):
    """CBAM's channel gate: SE with both average- and max-pooled descriptors through one MLP.

    .. math::  M_c(x) = \\sigma\\big(\\mathrm{MLP}(\\operatorname{AvgPool}(x)) +
               \\mathrm{MLP}(\\operatorname{MaxPool}(x))\\big)

    Woo et al., 2018, eq. 2. The MLP is ``C → C/reduction → C`` with a ReLU.

    Shape:
        input ``(N, C, H, W)`` → gate ``(N, C, 1, 1)``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if reduction < 1 or channels < reduction:
            raise ValueError(f"need 1 <= reduction <= channels, got reduction={reduction}, channels={channels}")
        hidden = channels // reduction
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        max_ = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + max_)


class SpatialAttention(nn.Module):
    """CBAM's spatial gate: a convolution over the channel-wise mean and max maps.

    .. math::  M_s(x) = \\sigma\\big(f^{k\\times k}([\\operatorname{mean}_c x;\\ \\max_c x])\\big)

    Woo et al., 2018, eq. 3 (``k = 7``). A sigmoid, not a softmax: several regions may all pass.

    Shape:
        input ``(N, C, H, W)`` → gate ``(N, 1, H, W)``.
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive (to keep H, W), got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        descriptors = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # (N, 2, H, W)
        return torch.sigmoid(self.conv(descriptors))


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel gate, then spatial gate.

    .. math::  x' = M_c(x) \\odot x, \\qquad y = M_s(x') \\odot x'

    Woo et al., 2018, eq. 1.

    Args:
        channels: ``C``.
        reduction: the channel MLP's bottleneck ratio.
        kernel_size: the spatial gate's kernel.

    Shape:
        input ``(N, C, H, W)`` → output ``(N, C, H, W)``.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel(x) * x
        return self.spatial(x) * x
