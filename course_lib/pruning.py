"""Pruning: compress a trained network by removing the weights it needs least.

* **Magnitude pruning** removes the weights of smallest ``|w|``.
* **Optimal Brain Damage** (LeCun, Denker & Solla, 1990) uses a second-order Taylor expansion of
  the loss around the trained minimum, where the gradient vanishes:
  :math:`\\delta L \\approx \\tfrac12 \\sum_k h_{kk}\\, \\delta w_k^2`, so removing weight ``k``
  (:math:`\\delta w_k = -w_k`) costs its **saliency** :math:`s_k = \\tfrac12 h_{kk} w_k^2`.
  Optimal Brain Surgeon (Hassibi & Stork, 1993) uses the full Hessian instead of its diagonal.

The Hessian's diagonal is estimated with Hutchinson's trick,
:math:`\\operatorname{diag}(H) = \\mathbb E_v[v \\odot Hv]` for random ``±1`` vectors ``v``,
using Hessian-vector products from autograd (no Hessian is ever stored).
"""
from __future__ import annotations

import torch
from torch import nn


def hessian_diagonal(loss_fn, params: list[torch.Tensor], samples: int = 20,
                     generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Hutchinson estimate of ``diag(∂²L/∂θ²)`` for each tensor in ``params``.

    Args:
        loss_fn: a function of no arguments returning the scalar loss (recomputed each sample).
        params: tensors with ``requires_grad=True``.
        samples: number of random ``±1`` probe vectors.
    """
    estimate = [torch.zeros_like(p) for p in params]
    for _ in range(samples):
        grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
        probes = [torch.randint(0, 2, p.shape, generator=generator).to(p) * 2 - 1 for p in params]
        hvps = torch.autograd.grad(grads, params, grad_outputs=probes)
        for e, v, hv in zip(estimate, probes, hvps):
            e += v * hv / samples
    return estimate


def obd_saliency(weight: torch.Tensor, hessian_diag: torch.Tensor) -> torch.Tensor:
    """Optimal Brain Damage saliency ``s_k = ½ h_kk w_k²``: the loss increase from removing ``w_k``."""
    return 0.5 * hessian_diag * weight.detach() ** 2


def prune_mask(scores: torch.Tensor, amount: float) -> torch.Tensor:
    """A 0/1 mask that removes the fraction ``amount`` of entries with the lowest ``scores``."""
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    k = round(amount * scores.numel())
    mask = torch.ones_like(scores)
    if k:
        mask.view(-1)[scores.flatten().argsort()[:k]] = 0  # argsort: ties go to the earlier index
    return mask


def apply_mask_(layer: nn.Module, mask: torch.Tensor) -> None:
    """Zero the pruned weights of ``layer`` in place (they stay zero until trained again)."""
    with torch.no_grad():
        layer.weight.mul_(mask)
