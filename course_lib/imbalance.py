"""Class imbalance: an imbalanced split, class weights, balanced sampling, balanced accuracy.

A model trained on imbalanced data is biased towards the frequent classes. The lecture's three
remedies (seed 002, "Баланс классов"):

1. weight the loss inversely to the class frequency, :math:`w_c = N / (C\\,n_c)`
   (scikit-learn's ``"balanced"``), or by the *effective number* of examples
   :math:`E_c = (1-\\beta^{n_c})/(1-\\beta)` (Cui et al., CVPR 2019);
2. balance every batch by sampling example :math:`i` with probability :math:`\\propto 1/n_{y_i}`
   (what ``torch.utils.data.WeightedRandomSampler`` does with these weights);
3. add examples of the rare classes by augmentation (oversampling; the augmentation makes the
   repeats differ).

Plain accuracy hides a useless model on imbalanced test data; the balanced accuracy
:math:`\\frac1C \\sum_c \\text{recall}_c` does not.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def long_tail_counts(max_count: int, num_classes: int = 10, ratio: float = 100.0) -> list[int]:
    """Exponentially decaying class sizes :math:`n_c = n_{max}\\,r^{-c/(C-1)}` (Cui et al., 2019).

    Class 0 keeps ``max_count`` examples, the last class ``max_count / ratio``.
    """
    if ratio < 1:
        raise ValueError(f"ratio must be >= 1, got {ratio}")
    return [max(1, round(max_count * ratio ** (-c / (num_classes - 1)))) for c in range(num_classes)]


def imbalanced_indices(labels: torch.Tensor, counts: Sequence[int], seed: int = 0) -> torch.Tensor:
    """Indices of a deterministic subset with ``counts[c]`` random examples of class ``c`` (sorted)."""
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for c, count in enumerate(counts):
        members = (labels == c).nonzero().squeeze(1)
        if count > len(members):
            raise ValueError(f"class {c} has {len(members)} examples, asked for {count}")
        picks.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.cat(picks).sort().values


def class_counts(labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """``(C,)`` number of examples of every class."""
    return torch.bincount(labels, minlength=num_classes or 0)


def class_weights(labels: torch.Tensor, num_classes: int | None = None, method: str = "inverse",
                  beta: float = 0.999) -> torch.Tensor:
    """Per-class loss weights ``(C,)`` for ``nn.CrossEntropyLoss(weight=...)``.

    * ``"inverse"``: :math:`w_c = N / (C\\,n_c)` (equal to scikit-learn's ``"balanced"``);
    * ``"effective"``: :math:`w_c \\propto (1-\\beta)/(1-\\beta^{n_c})`, normalised to sum to :math:`C`.
      :math:`\\beta \\to 0` gives equal weights, :math:`\\beta \\to 1` inverse frequency.
    """
    counts = class_counts(labels, num_classes).double()
    if (counts == 0).any():
        raise ValueError(f"class {int((counts == 0).nonzero()[0])} has no examples; its weight is undefined")
    C = len(counts)
    if method == "inverse":
        weights = counts.sum() / (C * counts)
    elif method == "effective":
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        weights = (1 - beta) / (1 - beta ** counts)
        weights = weights * C / weights.sum()
    else:
        raise ValueError(f"method must be 'inverse' or 'effective', got {method!r}")
    return weights.float()


def balanced_sample_weights(labels: torch.Tensor) -> torch.Tensor:
    """``(N,)`` weight :math:`1/n_{y_i}` of every example: each class gets the same total weight."""
    counts = class_counts(labels).double()
    return (1.0 / counts)[labels]


def balanced_sampler(labels: torch.Tensor, num_samples: int | None = None):
    """A sampler for ``fit(sampler=...)``: each call draws an epoch of indices, classes equally likely.

    Draws with replacement with probabilities :func:`balanced_sample_weights`, like
    ``WeightedRandomSampler(weights, num_samples, replacement=True)``.

    Returns:
        ``sample(generator) -> (num_samples,)`` indices (default ``num_samples = len(labels)``).
    """
    weights = balanced_sample_weights(labels)
    num_samples = len(labels) if num_samples is None else num_samples

    def sample(generator: torch.Generator | None = None) -> torch.Tensor:
        on = weights if generator is None else weights.to(generator.device)  # draw where the generator is
        return torch.multinomial(on, num_samples, replacement=True, generator=generator)

    return sample


def oversample_indices(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Indices that repeat every class's examples up to the size of the largest class (shuffled).

    Pair with augmentation so that the repeated images are not identical.
    """
    generator = torch.Generator().manual_seed(seed)
    counts = class_counts(labels)
    target = int(counts.max())
    picks = []
    for c in range(len(counts)):
        members = (labels == c).nonzero().squeeze(1)
        if len(members) == 0:
            continue
        repeats = members.repeat(target // len(members) + 1)[:target]  # every example at least once
        picks.append(repeats)
    order = torch.cat(picks)
    return order[torch.randperm(len(order), generator=generator)]


def balanced_accuracy(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> float:
    """Mean per-class recall :math:`\\frac1C\\sum_c \\frac{|\\{i: \\hat y_i = y_i = c\\}|}{n_c}` over classes present."""
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and labels {tuple(labels.shape)} differ in shape")
    C = num_classes or int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=C).double()
    hits = torch.bincount(labels[predictions == labels], minlength=C).double()
    present = counts > 0
    return (hits[present] / counts[present]).mean().item()


def per_class_recall(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(C,)`` recall of every class (NaN for an absent class)."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    hits = torch.bincount(labels[predictions == labels], minlength=num_classes).double()
    return hits / counts
