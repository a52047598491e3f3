"""GoogLeNet / Inception v1 (Szegedy et al., 2015, "Going deeper with convolutions").

The Inception module runs 1×1, 3×3 and 5×5 convolutions and a 3×3 max pool side by side and
concatenates their maps. The 1×1 convolutions in front of the 3×3 and 5×5 ones ("network in
network", Lin et al., 2013) shrink the channels first, which is what makes the module affordable.
Two auxiliary classifiers on intermediate layers add their losses, weighted by 0.3, to push the
gradient into the middle of the 22-layer network; at test time they are dropped.

Parameters: about 6.8 M without the auxiliary classifiers (the paper's Table 1). torchvision's
``googlenet`` differs in two ways, both selectable here: BatchNorm after every convolution, and a
3×3 kernel where the paper has 5×5 (kept for its pretrained weights).
"""
from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from course_lib.models.layers import ConvNormAct, scale_channels

# Table 1 of the paper: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj; "M" = max pool 3/2
GOOGLENET_CONFIG: list[tuple[str, tuple[int, ...]] | str] = [
    ("3a", (64, 96, 128, 16, 32, 32)), ("3b", (128, 128, 192, 32, 96, 64)), "M",
    ("4a", (192, 96, 208, 16, 48, 64)), ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)), ("4d", (112, 144, 288, 32, 64, 64)),
    ("4e", (256, 160, 320, 32, 128, 128)), "M",
    ("5a", (256, 160, 320, 32, 128, 128)), ("5b", (384, 192, 384, 48, 128, 128)),
]
AUX_AFTER = ("4a", "4d")  # the auxiliary classifiers sit on the outputs of these modules


class Inception(nn.Module):
    """The Inception module: four parallel branches concatenated along the channels.

    ``[1×1 | 1×1 → 3×3 | 1×1 → 5×5 | 3×3 max pool → 1×1]``, each conv followed by ReLU.

    Args:
        in_channels: input channels.
        ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj: the columns of the paper's Table 1.
        branch5_kernel: 5 as in the paper (torchvision uses 3).
        norm_layer: ``None`` (paper) or e.g. ``nn.BatchNorm2d`` (torchvision).

    Shapes: ``(N, in_channels, H, W)`` → ``(N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)``.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, branch5_kernel: int = 5,
                 norm_layer: Callable[[int], nn.Module] | None = None):
        super().__init__()
        conv = partial(ConvNormAct, norm_layer=norm_layer)
        self.branch1 = conv(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(conv(in_channels, ch3x3red, 1), conv(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(conv(in_channels, ch5x5red, 1), conv(ch5x5red, ch5x5, branch5_kernel))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     conv(in_channels, pool_proj, 1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], dim=1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: 5×5/3 average pool (to 4×4) → 1×1 conv 128 → FC 1024 → dropout 0.7 → FC.

    Shapes: ``(N, in_channels, 14, 14)`` → ``(N, num_classes)`` (any size: the pool is adaptive).
    """

    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0,
                 norm_layer: Callable[[int], nn.Module] | None = None, dropout: float = 0.7):
        super().__init__()
        channels, hidden = scale_channels(128, width), scale_channels(1024, width)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.conv = ConvNormAct(in_channels, channels, 1, norm_layer=norm_layer)
        self.fc1 = nn.Linear(channels * 4 * 4, hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)  # (N, 128·4·4)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


class GoogLeNetOutputs(NamedTuple):
    """What GoogLeNet returns while training with auxiliary classifiers."""
    logits: torch.Tensor
    aux1: torch.Tensor  # on the output of 4a
    aux2: torch.Tensor  # on the output of 4d


class GoogLeNet(nn.Module):
    """GoogLeNet: stem → nine Inception modules → global average pool → dropout 0.4 → linear.

    Args:
        num_classes, in_channels: 1000 and 3 for ImageNet.
        aux_logits: build the two auxiliary classifiers; in training mode ``forward`` then returns
            :class:`GoogLeNetOutputs`, in eval mode only the logits.
        small: for 28×28 inputs: the stem's 7×7 stride-2 conv and first pool become one 3×3 stride-1
            conv, so the Inception modules see 14×14, 7×7 and 3×3 maps instead of 28, 14 and 7.
        width: multiplies every channel count.
        branch5_kernel: 5 (paper) or 3 (torchvision).
        norm_layer: ``None`` (paper, convolutions with bias) or e.g. ``nn.BatchNorm2d`` (torchvision).

    Shapes: input ``(N, in_channels, 224, 224)`` (``28, 28`` if ``small``), output ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = True,
                 small: bool = False, width: float = 1.0, branch5_kernel: int = 5,
                 norm_layer: Callable[[int], nn.Module] | None = None, dropout: float = 0.4):
        super().__init__()
        ch = partial(scale_channels, width=width)
        conv = partial(ConvNormAct, norm_layer=norm_layer)

        def pool():
            return nn.MaxPool2d(3, stride=2, ceil_mode=True)

        if small:
            stem = [conv(in_channels, ch(64), 3), conv(ch(64), ch(64), 1), conv(ch(64), ch(192), 3), pool()]
        else:  # conv 7×7/2 → pool → conv 1×1 → conv 3×3 → pool: 224 → 112 → 56 → 28
            stem = [conv(in_channels, ch(64), 7, 2), pool(), conv(ch(64), ch(64), 1),
                    conv(ch(64), ch(192), 3), pool()]
        self.stem = nn.Sequential(*stem)
        self.blocks = nn.ModuleDict()
        self.aux = nn.ModuleDict()
        channels = ch(192)
        for k, item in enumerate(GOOGLENET_CONFIG):
            if item == "M":
                self.blocks[f"pool{k}"] = pool()
                continue
            name, columns = item
            module = Inception(channels, *map(ch, columns), branch5_kernel=branch5_kernel, norm_layer=norm_layer)
            self.blocks[name] = module
            channels = module.out_channels
            if aux_logits and name in AUX_AFTER:
                self.aux[name] = InceptionAux(channels, num_classes, width, norm_layer)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        x = self.stem(x)
        aux = []
        for name, block in self.blocks.items():
            x = block(x)
            if name in self.aux and self.training:
                aux.append(self.aux[name](x))
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        return GoogLeNetOutputs(logits, *aux) if aux else logits


def googlenet_loss(outputs: torch.Tensor | GoogLeNetOutputs, target: torch.Tensor,
                   aux_weight: float = 0.3) -> torch.Tensor:
    """The training loss of GoogLeNet: ``CE(logits) + aux_weight · (CE(aux1) + CE(aux2))``.

    The auxiliary classifiers are "just extra terms in the objective" (section 5 of the paper).
    Plain logits (eval mode, or no auxiliary heads) give the plain cross-entropy.
    """
    if isinstance(outputs, torch.Tensor):
        return F.cross_entropy(outputs, target)
    loss = F.cross_entropy(outputs.logits, target)
    return loss + aux_weight * (F.cross_entropy(outputs.aux1, target) + F.cross_entropy(outputs.aux2, target))


def googlenet(num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = True, small: bool = False,
              width: float = 1.0, **kwargs) -> GoogLeNet:
    """GoogLeNet as in the paper (5×5 branches, no BatchNorm). Keyword arguments go to :class:`GoogLeNet`."""
    return GoogLeNet(num_classes=num_classes, in_channels=in_channels, aux_logits=aux_logits,
                     small=small, width=width, **kwargs)
