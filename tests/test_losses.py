"""course_lib.losses against PyTorch's own implementations."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.losses import label_smoothing_cross_entropy, smooth_labels


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3, 1.0])
def test_label_smoothing_equals_torch(epsilon):
    torch.manual_seed(0)
    logits = (3 * torch.randn(16, 7, dtype=torch.float64)).requires_grad_(True)
    target = torch.randint(0, 7, (16,))
    ours = label_smoothing_cross_entropy(logits, target, epsilon)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    theirs = nn.CrossEntropyLoss(label_smoothing=epsilon)(logits, target)
    (grad_theirs,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(grad_ours, grad_theirs)


def test_smooth_labels_values():
    q = smooth_labels(torch.tensor([2, 0]), num_classes=4, epsilon=0.2)
    expected = torch.tensor([[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]])
    torch.testing.assert_close(q, expected)


def test_smoothing_bounds_the_optimal_logit_gap():
    # with ε > 0 the loss is minimal at a finite gap: log((1-ε+ε/K)/(ε/K)); with ε = 0 it keeps falling
    K, eps = 5, 0.1
    gaps = torch.linspace(0, 20, 2001, dtype=torch.float64)
    logits = torch.zeros(len(gaps), K, dtype=torch.float64)
    logits[:, 0] = gaps
    target = torch.zeros(len(gaps), dtype=torch.long)
    losses = torch.stack([label_smoothing_cross_entropy(z[None], t[None], eps) for z, t in zip(logits, target)])
    best = gaps[losses.argmin()].item()
    assert best == pytest.approx(torch.log(torch.tensor((1 - eps + eps / K) / (eps / K))).item(), abs=0.02)
    plain = [label_smoothing_cross_entropy(z[None], t[None], 0.0).item() for z, t in zip(logits[::200], target[::200])]
    assert plain == sorted(plain, reverse=True)


def test_bad_epsilon():
    with pytest.raises(ValueError, match="epsilon=1.5"):
        smooth_labels(torch.tensor([0]), 3, 1.5)
