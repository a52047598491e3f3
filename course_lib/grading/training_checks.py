"""Checks for assignment 3's practical-training parts: augmentation, class balance, the learning-rate
schedule, fine-tuning set-up and balanced accuracy.

References are independent of the student's code: the augmentation's every possible outcome built
with ``F.pad``, slicing and ``torch.flip``; ``sklearn.utils.class_weight.compute_class_weight``
("balanced") and ``sklearn.metrics.balanced_accuracy_score``; torch's own ``LinearLR`` +
``CosineAnnealingLR`` chained by ``SequentialLR``. Every check raises
:class:`~course_lib.grading.compare.CheckFailure` naming the case, its inputs, expected vs got.
"""
from __future__ import annotations

import math

import numpy as np
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.grading.architecture_checks import build_from_file
from course_lib.grading.compare import call_student, each_case, fail, passed, sandbox_ready
from course_lib.train import predict


# --------------------------------------------------------------------------- augmentation
def crop_flip_candidates(image: torch.Tensor, padding: int) -> torch.Tensor:
    """Every result of "pad with zeros, crop back to the original size at a random offset, maybe
    flip horizontally" for one image ``(C, H, W)``: ``(2 (2p+1)^2, C, H, W)``."""
    C, H, W = image.shape
    padded = F.pad(image, (padding, padding, padding, padding))
    crops = [padded[:, i:i + H, j:j + W] for i in range(2 * padding + 1) for j in range(2 * padding + 1)]
    crops = torch.stack(crops)
    return torch.cat([crops, crops.flip(-1)])


#: ``(batch, channels, height, width, padding, seed)``
AUGMENT_CASES = ((600, 1, 8, 8, 2, 0), (400, 3, 6, 10, 1, 1))


@sandbox_ready
def check_random_crop_flip(random_crop_flip: Callable, cases: Sequence[tuple] = AUGMENT_CASES) -> None:
    """``random_crop_flip(images, padding, generator)``: each image padded with ``padding`` zeros,
    cropped back at an offset drawn uniformly from ``(2p+1)^2``, and flipped left-right with
    probability 1/2 — independently per image, reproducibly for a seeded generator.

    Every output image must be one of its input's possible results; over the batch the flip rate
    must be 1/2 and every offset must occur (binomial bounds at about 5 standard deviations).
    """
    check = "check_random_crop_flip"
    for N, C, H, W, p, seed in each_case(check, cases):
        case, params = f"{N} images {C}x{H}x{W}", f"images ({N}, {C}, {H}, {W}), padding={p}, generator seed {seed}"
        images = torch.rand(N, C, H, W, generator=torch.Generator().manual_seed(seed + 100)) + 0.1  # no zero pixels
        got = call_student(check, case, params, (), random_crop_flip, images.clone(), p,
                           torch.Generator().manual_seed(seed))
        if not isinstance(got, torch.Tensor) or got.shape != images.shape or got.dtype != images.dtype:
            what = f"{tuple(got.shape)} {got.dtype}" if isinstance(got, torch.Tensor) else type(got).__name__
            raise fail(check, case, params, f"expected a tensor {tuple(images.shape)} {images.dtype}, got {what}")
        again = call_student(check, case, params, (), random_crop_flip, images.clone(), p,
                             torch.Generator().manual_seed(seed))
        if not torch.equal(got, again):
            raise fail(check, case, params, "two calls with generators seeded alike gave different results: "
                       "draw every random number from the generator argument")
        offsets = (2 * p + 1) ** 2
        chosen = []
        for n in range(N):
            candidates = crop_flip_candidates(images[n], p)
            match = (candidates - got[n]).abs().flatten(1).amax(1) < 1e-6
            if not bool(match.any()):
                raise fail(check, case, params, f"image {n} is not a zero-padded crop of its input (padding {p}), "
                           "flipped or not: check the padding value (zeros), the crop size and the flip axis (width)")
            chosen.append(int(match.nonzero()[0]))
        chosen = torch.tensor(chosen)
        flips = int((chosen >= offsets).sum())
        low, high = N / 2 - 5 * math.sqrt(N) / 2, N / 2 + 5 * math.sqrt(N) / 2
        if not low <= flips <= high:
            raise fail(check, case, params, f"{flips} of {N} images flipped: expected about {N // 2} "
                       f"(between {low:.0f} and {high:.0f}) for a flip probability of 1/2")
        per_offset = torch.bincount(chosen % offsets, minlength=offsets)
        if int(per_offset.min()) == 0:
            missing = int((per_offset == 0).sum())
            raise fail(check, case, params, f"{missing} of the {offsets} crop offsets never occurred in {N} images: "
                       f"offsets must be drawn uniformly from 0..{2 * p} along each axis")


# --------------------------------------------------------------------------- class balance
#: ``(counts per class, seed)``: long-tailed label sets.
BALANCE_CASES = (((50, 20, 5, 2), 0), ((100, 10, 1), 1), ((7, 7, 7), 2))


def _labels(counts, seed):
    labels = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


@sandbox_ready
def check_class_weights(class_weights: Callable, cases=BALANCE_CASES) -> None:
    """``class_weights(labels, num_classes) -> (num_classes,) float tensor`` = ``N / (K n_c)``
    (scikit-learn's ``compute_class_weight("balanced")``), for the loss ``CrossEntropyLoss(weight=...)``."""
    from sklearn.utils.class_weight import compute_class_weight

    check = "check_class_weights"
    for counts, seed in each_case(check, cases):
        labels, K = _labels(counts, seed), len(counts)
        params = f"class counts {counts}, num_classes={K}"
        expected = torch.tensor(compute_class_weight("balanced", classes=np.arange(K), y=labels.numpy()),
                                dtype=torch.float32)
        got = call_student(check, str(counts), params, (), class_weights, labels.clone(), K)
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            what = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise fail(check, str(counts), params, f"expected a tensor of shape {tuple(expected.shape)}, got {what}")
        if not torch.allclose(got.double(), expected.double(), rtol=1e-5, atol=1e-6):
            raise fail(check, str(counts), params, f"expected N / (K * n_c) = {[round(v, 4) for v in expected.tolist()]}, "
                       f"got {[round(v, 4) for v in got.double().tolist()]}")


@sandbox_ready
def check_sample_weights(sample_weights: Callable, cases=BALANCE_CASES) -> None:
    """``sample_weights(labels) -> (N,)``: one weight per example for ``WeightedRandomSampler``, so
    that every class is drawn equally often: proportional to ``1 / n_{y_i}`` (any positive scale)."""
    check = "check_sample_weights"
    for counts, seed in each_case(check, cases):
        labels = _labels(counts, seed)
        params = f"class counts {counts}"
        got = call_student(check, str(counts), params, (), sample_weights, labels.clone())
        if not isinstance(got, torch.Tensor) or got.shape != labels.shape:
            what = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise fail(check, str(counts), params, f"expected one weight per example, shape {tuple(labels.shape)}, got {what}")
        got = got.double()
        if bool((got <= 0).any()) or not bool(torch.isfinite(got).all()):
            raise fail(check, str(counts), params, "weights must be positive and finite")
        mass = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, labels, got)
        share = mass / mass.sum()
        if not torch.allclose(share, torch.full_like(share, 1 / len(counts)), rtol=1e-6, atol=1e-9):
            raise fail(check, str(counts), params,
                       f"a sampler with these weights draws the classes with probabilities "
                       f"{[round(v, 4) for v in share.tolist()]}, expected {1 / len(counts):.4f} each "
                       "(weight each example by 1 / the size of its class)")
        ratio = got / got[0]
        expected = torch.tensor([counts[int(labels[0])] / counts[int(c)] for c in labels], dtype=torch.float64)
        if not torch.allclose(ratio, expected, rtol=1e-6):
            raise fail(check, str(counts), params, "examples of the same class must have the same weight, 1 / n_c")


@sandbox_ready
def check_balanced_accuracy(balanced_accuracy: Callable, seeds: Sequence[int] = (0, 1, 2)) -> None:
    """``balanced_accuracy(predictions, labels, num_classes)``: the mean of the per-class recalls,
    against ``sklearn.metrics.balanced_accuracy_score``."""
    from sklearn.metrics import balanced_accuracy_score

    check = "check_balanced_accuracy"
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        labels = _labels((60, 25, 10, 5), seed)
        predictions = torch.where(torch.rand(len(labels), generator=g) < 0.6, labels,
                                  torch.randint(0, 4, labels.shape, generator=g))
        params = f"100 labels with class counts (60, 25, 10, 5), seed {seed}"
        expected = balanced_accuracy_score(labels.numpy(), predictions.numpy())
        got = call_student(check, f"seed {seed}", params, (), balanced_accuracy, predictions.clone(), labels.clone(), 4)
        if not isinstance(got, (float, int)) and not (isinstance(got, torch.Tensor) and got.numel() == 1):
            raise fail(check, f"seed {seed}", params, f"expected a number, got {type(got).__name__}")
        if abs(float(got) - expected) > 1e-6:
            plain = float((predictions == labels).double().mean())
            hint = " (that is the plain accuracy)" if abs(float(got) - plain) < 1e-6 else ""
            raise fail(check, f"seed {seed}", params, f"expected {expected:.6f}, got {float(got):.6f}{hint}")
    passed(check, len(seeds))


# --------------------------------------------------------------------------- learning-rate schedule
#: ``(base_lr, warmup_epochs, total_epochs)``
SCHEDULE_CASES = ((0.1, 3, 10), (1e-3, 2, 5))


def reference_warmup_cosine(optimizer, warmup_epochs: int, total_epochs: int):
    """Linear warm-up to the base rate over ``warmup_epochs`` epochs (``base (e+1)/W``), then cosine
    annealing to 0 at ``total_epochs``: torch's ``LinearLR`` then ``CosineAnnealingLR``."""
    sched = torch.optim.lr_scheduler
    warmup = sched.LinearLR(optimizer, start_factor=1 / warmup_epochs, end_factor=1.0,
                            total_iters=max(warmup_epochs - 1, 1))
    cosine = sched.CosineAnnealingLR(optimizer, T_max=total_epochs - warmup_epochs)
    return sched.SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_epochs])


def _lrs(make, base_lr, warmup, total):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = make(optimizer, warmup, total)
    values = []
    for _ in range(total):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def _real_number(value) -> float | None:
    """``value`` as a float if it is one real number (int, float, a numpy scalar, a 0-d or 1-element
    tensor or array, never a bool), else ``None``."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not (value.is_complex() or value.dtype == torch.bool):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        return float(value)
    return None


@sandbox_ready
def check_warmup_cosine(factor: Callable, cases=SCHEDULE_CASES) -> None:
    """``factor(epoch, warmup_epochs, total_epochs) -> float``: the multiplier of the base learning
    rate at epoch ``e`` (0-based) — the ``lr_lambda`` of ``torch.optim.lr_scheduler.LambdaLR`` —

    .. math::  f(e) = \\frac{e + 1}{W} \\ (e < W), \\qquad
               f(e) = \\tfrac12 \\big(1 + \\cos(\\pi \\tfrac{e - W}{T - W})\\big) \\ (e \\ge W).

    The factor is called with plain ints for every epoch ``0 .. T-1``; ``base_lr * factor`` is
    compared with the rates of torch's ``LinearLR`` → ``CosineAnnealingLR`` chain
    (:func:`reference_warmup_cosine`) stepped once per epoch.
    """
    check = "check_warmup_cosine"
    for base, warmup, total in each_case(check, cases):
        case, params = f"warmup {warmup}, total {total}", f"base lr {base}, warmup_epochs={warmup}, total_epochs={total}"
        expected = _lrs(reference_warmup_cosine, base, warmup, total)
        got = []
        for e in range(total):
            value = call_student(check, case, params, (), factor, e, warmup, total)
            number = _real_number(value)
            if number is None:
                what = (f"a {value.dtype} {type(value).__name__} of shape {tuple(value.shape)}"
                        if isinstance(value, (torch.Tensor, np.ndarray))
                        else "None (a missing return?)" if value is None else f"a {type(value).__name__}")
                raise fail(check, case, params, f"the factor at epoch {e} is {what}: expected one real number "
                           "(a Python float)")
            got.append(base * number)
        bad = [e for e in range(total) if not math.isclose(got[e], expected[e], rel_tol=1e-6, abs_tol=1e-12)]
        if bad:
            e = bad[0]
            raise fail(check, case, params, f"learning rates base_lr * factor of {len(bad)} of {total} epochs differ; "
                       f"first at epoch {e}: expected {expected[e]:.6g}, got {got[e]:.6g} "
                       f"(factor {expected[e] / base:.6g} expected, {got[e] / base:.6g} returned)\n"
                       f"  expected {[f'{v:.4g}' for v in expected]}\n  got      {[f'{v:.4g}' for v in got]}")


# --------------------------------------------------------------------------- fine-tuning
@sandbox_ready
def check_finetune_setup(prepare_finetune: Callable, build_pretrained: Callable, num_classes: int = 5) -> None:
    """``prepare_finetune(model, num_classes, freeze)`` on a pretrained ``FashionCNN`` (``features`` +
    ``classifier``): a new last layer with ``num_classes`` outputs; with ``freeze=True`` only the new
    layer is trainable, with ``freeze=False`` everything is; the pretrained feature weights are kept."""
    check = "check_finetune_setup"
    for freeze in (True, False):
        case, params = f"freeze={freeze}", f"num_classes={num_classes}, freeze={freeze}"
        pretrained = build_pretrained()
        before = {k: v.clone() for k, v in pretrained.state_dict().items() if k.startswith("features.")}
        model = call_student(check, case, params, (), prepare_finetune, pretrained, num_classes, freeze)
        if not isinstance(model, nn.Module):
            raise fail(check, case, params, f"expected an nn.Module, got {type(model).__name__}")
        state = model.state_dict()
        changed = [k for k, v in before.items() if k not in state or not torch.equal(state[k], v)]
        if changed:
            raise fail(check, case, params, f"the pretrained feature weights were changed or dropped: {changed[:4]}")
        with torch.no_grad():
            out = model.eval()(torch.rand(2, 1, 28, 28))
        if tuple(out.shape) != (2, num_classes):
            raise fail(check, case, params, f"expected logits (2, {num_classes}), got {tuple(out.shape)}")
        trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
        if freeze:
            wrong = [n for n in trainable if not n.startswith("classifier.")]
            if wrong or not trainable:
                raise fail(check, case, params, f"only the new classifier may be trainable; trainable: {trainable}")
        elif len(trainable) != len(list(model.parameters())):
            frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
            raise fail(check, case, params, f"every parameter must be trainable; frozen: {frozen}")
    passed(check, 2)


# --------------------------------------------------------------------------- the fine-tuned model
@sandbox_ready
def check_model_balanced_accuracy(build_model: Callable, path, images: torch.Tensor, labels: torch.Tensor,
                                  min_score: float) -> None:
    """The saved weights (read with ``weights_only=True``, never unpickled) loaded into ``build_model()``
    must reach a balanced accuracy (``sklearn.metrics.balanced_accuracy_score``: the mean of the
    per-class recalls) of ``min_score`` on ``(images, labels)``. Returns nothing: nbgrader would take a
    number left as a test cell's value for its (partial) score."""
    from sklearn.metrics import balanced_accuracy_score


    check = "check_model_balanced_accuracy"
    model = build_from_file(build_model, path, check)
    predictions = predict(model, images, batch_size=1000).argmax(1)
    score = balanced_accuracy_score(labels.numpy(), predictions.numpy())
    recalls = ", ".join(f"{c}: {float((predictions[labels == c] == c).double().mean()):.2f}"
                        for c in labels.unique().tolist())
    if score < min_score:
        raise fail(check, "test images", f"path={str(path)!r}, {len(labels)} images",
                   f"balanced accuracy {score:.2%} is below the required {min_score:.0%}; recall per class: {recalls}")
    print(f"balanced accuracy {score:.2%} (required {min_score:.0%}); recall per class: {recalls}")
    passed(check, 1)
