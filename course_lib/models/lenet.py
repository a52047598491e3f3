"""LeNet-5 (LeCun, Bottou, Bengio, Haffner, 1998): the first convolutional network that worked.

C1 conv 5×5 → S2 subsampling → C3 conv 5×5 → S4 subsampling → C5 conv 5×5 → F6 → output, on
1×32×32 digits. Two simplifications, as in every modern re-implementation: C3 sees all six S2 maps
(the paper's connection table left out some, 1 516 instead of 2 416 weights) and the output is a
plain linear layer instead of the paper's RBF units. Total: 61 706 parameters ("about 60 000").
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class LeNet5(nn.Module):
    """LeNet-5 with tanh and average pooling ("subsampling"), as in the paper.

    Args:
        num_classes: outputs of the last layer (10 digits).
        in_channels: image channels (1).
        small: take 28×28 inputs (MNIST, Fashion-MNIST) by padding C1 by 2, which makes them
            32×32 as the paper did by centring the digits in a larger frame.
        activation: a callable returning the non-linearity (``nn.Tanh``; ``nn.ReLU`` is the modern one).
        pooling: a callable ``pooling(kernel_size)`` (``nn.AvgPool2d``; ``nn.MaxPool2d`` is the modern one).

    Shapes: input ``(N, in_channels, 32, 32)`` (``28, 28`` if ``small``), output ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, small: bool = False,
                 activation: Callable[[], nn.Module] = nn.Tanh,
                 pooling: Callable[[int], nn.Module] = nn.AvgPool2d):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2 if small else 0), activation(),  # C1: 6×28×28
            pooling(2),                                                              # S2: 6×14×14
            nn.Conv2d(6, 16, 5), activation(),                                       # C3: 16×10×10
            pooling(2),                                                              # S4: 16×5×5
            nn.Conv2d(16, 120, 5), activation(),                                     # C5: 120×1×1
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(120, 84), activation(),                                        # F6
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def lenet5(num_classes: int = 10, in_channels: int = 1, small: bool = False, **kwargs) -> LeNet5:
    """LeNet-5 on 1×32×32 (``small=True``: on 1×28×28). Keyword arguments go to :class:`LeNet5`."""
    return LeNet5(num_classes=num_classes, in_channels=in_channels, small=small, **kwargs)
