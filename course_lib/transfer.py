"""Transfer learning: reuse a network trained on one task for another (seed 002, "Transfer Learning").

Copy the architecture and the weights of a pretrained network, replace the output layer (the new
task has other classes) and train on the new data. How much to retrain depends on the data:

=================  ===========================================  =========================================
                   similar task                                 very different task
=================  ===========================================  =========================================
little data        linear classifier on the last features       trouble: classifier on features of
                   (freeze everything else)                     several (earlier) layers
a lot of data      fine-tune the last few layers                freeze the first layers, train the rest
=================  ===========================================  =========================================
"""
from __future__ import annotations

import torch
from torch import nn


def set_trainable(module: nn.Module, trainable: bool) -> nn.Module:
    """Freeze (``False``) or unfreeze (``True``) every parameter of ``module``; returns it."""
    for param in module.parameters():
        param.requires_grad_(trainable)
    return module


def freeze_batchnorm_stats(module: nn.Module) -> nn.Module:
    """Keep BatchNorm's running statistics fixed (eval mode) even while the rest trains.

    Frozen features must not drift: in train mode BatchNorm would still update its running
    mean and variance from the new data, although its weights are frozen. It must be called
    after every ``model.train()``; :class:`FrozenBatchNormModel` does that.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return module


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimiser should get (``requires_grad`` ones)."""
    return [p for p in model.parameters() if p.requires_grad]


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` numbers of parameters."""
    return sum(p.numel() for p in trainable_parameters(model)), sum(p.numel() for p in model.parameters())


def replace_head(model: nn.Module, num_classes: int, attribute: str = "classifier") -> nn.Module:
    """Put a fresh ``nn.Linear(in_features, num_classes)`` in place of the last linear layer of
    ``model.<attribute>`` (``classifier`` for the course's models, ``fc`` for torchvision's ResNets)."""
    head = getattr(model, attribute)
    if isinstance(head, nn.Linear):
        setattr(model, attribute, nn.Linear(head.in_features, num_classes).to(head.weight.device))
        return model
    linears = [name for name, m in head.named_children() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"model.{attribute} has no nn.Linear child to replace")
    old = getattr(head, linears[-1])
    setattr(head, linears[-1], nn.Linear(old.in_features, num_classes).to(old.weight.device))
    return model


class FrozenBatchNormModel(nn.Module):
    """Wraps ``model`` so that the BatchNorm layers of ``model.<frozen>`` stay in eval mode in ``train()``."""

    def __init__(self, model: nn.Module, frozen: str = "features"):
        super().__init__()
        if not hasattr(model, frozen):
            raise ValueError(f"model has no attribute {frozen!r} to freeze")
        self.model, self.frozen = model, frozen

    def train(self, mode: bool = True):
        super().train(mode)
        freeze_batchnorm_stats(getattr(self.model, self.frozen))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
