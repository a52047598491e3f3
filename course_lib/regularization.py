"""L1, L2 and elastic-net penalties added to the loss.

.. math::
    L_{\\text{total}} = L + \\lambda_1 \\sum_i |w_i| + \\frac{\\lambda_2}{2} \\sum_i w_i^2

L1 (lasso) pushes weights to exactly zero (sparse networks); L2 (ridge, "weight decay") shrinks
them proportionally, since :math:`\\partial/\\partial w\\,(\\lambda_2 w^2/2) = \\lambda_2 w`: one SGD step
on the L2 term is :math:`w \\leftarrow (1 - \\eta\\lambda_2)\\,w`, exactly what
``torch.optim.SGD(weight_decay=λ2)`` does. Both together are the elastic net (Zou & Hastie, 2005).
With Adam the two are *not* the same, which is why AdamW decouples the decay (Loshchilov & Hutter, 2019).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def decayed_parameters(model: nn.Module) -> list[torch.Tensor]:
    """The weights that are usually penalised: those of ``Linear`` and ``Conv`` layers, not biases or norms."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]


def l1_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """:math:`\\sum_i |w_i|` over all given tensors."""
    return sum(p.abs().sum() for p in params)


def l2_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """:math:`\\frac12 \\sum_i w_i^2` (the ½ makes its gradient :math:`w`, as in ``weight_decay``)."""
    return sum(p.pow(2).sum() for p in params) / 2


def elastic_net_penalty(params: Iterable[torch.Tensor], l1: float = 0.0, l2: float = 0.0) -> torch.Tensor:
    """:math:`\\lambda_1 \\sum|w| + \\frac{\\lambda_2}{2}\\sum w^2`; ``l1=0`` is ridge, ``l2=0`` is lasso."""
    if l1 < 0 or l2 < 0:
        raise ValueError(f"penalty strengths must be >= 0, got l1={l1}, l2={l2}")
    params = list(params)
    return l1 * l1_penalty(params) + l2 * l2_penalty(params)


class PenalizedLoss(nn.Module):
    """``loss_fn(logits, y) + elastic_net_penalty(weights of model)``, usable as ``fit(loss_fn=...)``."""

    def __init__(self, model: nn.Module, l1: float = 0.0, l2: float = 0.0, loss_fn: nn.Module | None = None):
        super().__init__()
        self.params = decayed_parameters(model)
        self.l1, self.l2 = l1, l2
        self.loss_fn = loss_fn or nn.CrossEntropyLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(logits, target) + elastic_net_penalty(self.params, self.l1, self.l2)
