"""Loss functions written from their formulas (flat module: one function per loss)."""
from __future__ import annotations

import torch
from torch.nn import functional as F


def smooth_labels(target: torch.Tensor, num_classes: int, epsilon: float) -> torch.Tensor:
    """The label-smoothed target distribution of Inception-v3 (Szegedy et al., 2016, section 7).

    .. math::  q'(k) = (1 - \\varepsilon)\\,[k = y] + \\varepsilon\\, u(k), \\qquad u(k) = 1/K

    Args:
        target: class indices ``(N,)``.
        num_classes: ``K``.
        epsilon: ``ε`` in ``[0, 1]``; 0 gives the one-hot targets.

    Returns:
        ``(N, K)`` rows that sum to 1: ``1 - ε + ε/K`` at the true class, ``ε/K`` elsewhere.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon={epsilon} must be in [0, 1]")
    one_hot = F.one_hot(target, num_classes).to(torch.get_default_dtype())
    return (1.0 - epsilon) * one_hot + epsilon / num_classes


def label_smoothing_cross_entropy(logits: torch.Tensor, target: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Cross-entropy against the smoothed targets, averaged over the batch.

    .. math::  H(q', p) = -\\sum_k q'(k) \\log p(k) = (1-\\varepsilon) H(q, p) + \\varepsilon H(u, p)

    With ``ε = 0`` the best logits grow without bound (the model becomes over-confident); with
    ``ε > 0`` the optimum keeps a finite gap between the true class and the others.
    ``nn.CrossEntropyLoss(label_smoothing=ε)`` computes the same.

    Args:
        logits: ``(N, K)`` unnormalised scores.
        target: ``(N,)`` class indices.
        epsilon: the smoothing ``ε``.

    Returns:
        A scalar tensor.
    """
    N, K = logits.shape
    q = smooth_labels(target, K, epsilon).to(logits.dtype)  # (N, K)
    log_p = F.log_softmax(logits, dim=1)  # (N, K), stable: log p = z - logsumexp(z)
    return -(q * log_p).sum(dim=1).mean()
