"""Imbalanced split, class weights, balanced sampling and balanced accuracy against sklearn/torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score
from sklearn.utils.class_weight import compute_class_weight

from course_lib.imbalance import (balanced_accuracy, balanced_sampler, class_weights, imbalanced_indices,
                                  long_tail_counts, oversample_indices, per_class_recall)

LABELS = torch.tensor([0] * 50 + [1] * 30 + [2] * 15 + [3] * 5)


def test_long_tail_counts():
    counts = long_tail_counts(1000, 10, ratio=100)
    assert counts[0] == 1000 and counts[-1] == 10
    assert all(a >= b for a, b in zip(counts, counts[1:]))


def test_imbalanced_indices_are_deterministic_and_have_the_counts():
    labels = torch.arange(10).repeat(50)
    counts = [50, 30, 20, 10, 5, 5, 4, 3, 2, 1]
    a, b = imbalanced_indices(labels, counts, seed=1), imbalanced_indices(labels, counts, seed=1)
    assert torch.equal(a, b)
    assert torch.bincount(labels[a], minlength=10).tolist() == counts
    assert len(a.unique()) == len(a), "an example was picked twice"
    assert not torch.equal(a, imbalanced_indices(labels, counts, seed=2))


def test_inverse_weights_equal_sklearn_balanced():
    expected = compute_class_weight("balanced", classes=np.arange(4), y=LABELS.numpy())
    np.testing.assert_allclose(class_weights(LABELS).numpy(), expected, rtol=1e-6)


def test_effective_number_limits():
    # beta -> 0: every class counts as one example (equal weights); beta -> 1: inverse frequency
    torch.testing.assert_close(class_weights(LABELS, method="effective", beta=1e-9), torch.ones(4))
    inverse = class_weights(LABELS)
    near_one = class_weights(LABELS, method="effective", beta=1 - 1e-7)
    torch.testing.assert_close(near_one, inverse * 4 / inverse.sum(), rtol=1e-4, atol=1e-5)


def test_balanced_sampler_draws_classes_equally_often():
    sample = balanced_sampler(LABELS, num_samples=40_000)
    drawn = LABELS[sample(torch.Generator().manual_seed(0))]
    freq = torch.bincount(drawn, minlength=4).double() / len(drawn)
    torch.testing.assert_close(freq, torch.full((4,), 0.25, dtype=torch.float64), atol=0.01, rtol=0)


def test_oversample_reaches_the_largest_class_and_keeps_every_example():
    idx = oversample_indices(LABELS, seed=0)
    assert torch.bincount(LABELS[idx]).tolist() == [50, 50, 50, 50]
    assert set(idx.tolist()) == set(range(len(LABELS)))


def test_balanced_accuracy_matches_sklearn():
    generator = torch.Generator().manual_seed(0)
    predictions = torch.where(torch.rand(len(LABELS), generator=generator) < 0.7, LABELS,
                              torch.randint(0, 4, (len(LABELS),), generator=generator))
    assert balanced_accuracy(predictions, LABELS) == pytest.approx(
        balanced_accuracy_score(LABELS.numpy(), predictions.numpy()))
    constant = torch.zeros_like(LABELS)  # always the majority class: 50 % accuracy, 25 % balanced
    assert balanced_accuracy(constant, LABELS) == pytest.approx(0.25)
    assert per_class_recall(constant, LABELS, 4).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="class 3"):
        class_weights(torch.tensor([0, 1, 2, 4]), num_classes=5)
    with pytest.raises(ValueError, match="class 1 has 1"):
        imbalanced_indices(torch.tensor([0, 0, 1]), [1, 2])
