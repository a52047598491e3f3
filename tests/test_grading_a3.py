"""Assignment 3 (practical training): its checks, against the course library's own implementations
(written independently of the checks' references: scikit-learn, torch's schedulers, all outcomes of
the augmentation enumerated) and against plausible student bugs, each with its message; and what
its release must keep (its bank of submissions is graded in ``test_banks.py``).

The solution's and the release's papermill runs are in ``test_grading_pipeline.py`` (they cover
every assignment).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent / "banks"))

from grading_support import grade_id, read_notebook  # noqa: E402

import a3_training as bank  # noqa: E402
from course_lib import augment, imbalance, transfer  # noqa: E402
from course_lib.grading import (CheckFailure, check_balanced_accuracy, check_class_weights,  # noqa: E402
                                check_finetune_setup, check_model_balanced_accuracy, check_random_crop_flip,
                                check_sample_weights, check_warmup_cosine)
from course_lib.grading.training_checks import SCHEDULE_CASES  # noqa: E402
from course_lib.models.fashion_cnn import fashion_cnn_small  # noqa: E402

pytestmark = pytest.mark.usefixtures("library_answers_allowed")  # the checks, fed the library's answers

#: The hidden schedules of the notebook's test cell: a one-epoch warm-up, a long warm-up, 20 epochs.
HIDDEN_SCHEDULES = ((0.05, 1, 6), (0.01, 4, 9), (3e-4, 2, 20))


def _factor(epoch, warmup, total, t_max=None):
    """The assignment's formula: (e + 1) / W during the warm-up, then 1/2 (1 + cos(pi (e - W) / (T - W)))."""
    if epoch < warmup:
        return (epoch + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / (t_max or total - warmup)))


def _torch_factor(epoch, warmup, total):
    """The factor read off torch's own schedulers, each phase on its own (not chained as the check's
    reference is): ``LinearLR`` from 1/W to 1 in W - 1 steps, then ``CosineAnnealingLR`` over T - W."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler
    if epoch < warmup:
        scheduler, steps = sched.LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup - 1), epoch
    else:
        scheduler, steps = sched.CosineAnnealingLR(optimizer, T_max=total - warmup), epoch - warmup
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    return optimizer.param_groups[0]["lr"]


def _finetune(model, num_classes, freeze):
    transfer.replace_head(model, num_classes)
    if freeze:
        transfer.set_trainable(model.features, False)
    return model


def test_checks_pass_the_course_library():
    check_random_crop_flip(lambda x, p, g: augment.random_crop_flip(x, p, generator=g))
    check_class_weights(imbalance.class_weights)
    check_sample_weights(imbalance.balanced_sample_weights)
    check_balanced_accuracy(imbalance.balanced_accuracy)
    check_warmup_cosine(_factor)
    check_warmup_cosine(_torch_factor, cases=SCHEDULE_CASES + HIDDEN_SCHEDULES)
    check_finetune_setup(_finetune, lambda: fashion_cnn_small(num_classes=5))


@pytest.mark.parametrize("check, wrong, message", [
    (check_sample_weights, lambda labels: imbalance.class_counts(labels).double()[labels],  # not inverted
     r"draws the classes with probabilities \[0.8535, 0.1366, 0.0085, 0.0014\], expected 0.2500 each"),
    (check_class_weights, lambda labels, k: 1.0 / imbalance.class_counts(labels, k).float(),  # not scaled by N / K
     r"expected N / \(K \* n_c\) = \[0.385, 0.9625, 3.85, 9.625\]"),
    (check_random_crop_flip, lambda x, p, g: augment.random_crop_flip(x, p, generator=None),
     "draw every random number from the generator argument"),
    (check_random_crop_flip, lambda x, p, g: augment.random_crop_flip(x, p, flip=False, generator=g),
     "0 of 600 images flipped"),
    (check_random_crop_flip, lambda x, p, g: augment.random_crop_flip(x, p, generator=g).flip(-2),
     "is not a zero-padded crop of its input"),
    (check_balanced_accuracy, lambda p, l, k: float((p == l).double().mean()), r"\(that is the plain accuracy\)"),
    (check_warmup_cosine, lambda e, w, t: _factor(e, w, t, t_max=t),  # cosine over all epochs
     r"6 of 10 epochs differ; first at epoch 4: expected 0.0950484, got 0.0975528 "
     r"\(factor 0.950484 expected, 0.975528 returned\)"),
    (check_warmup_cosine, lambda e, w, t: 0.5 * (1 + math.cos(math.pi * e / t)),  # no warm-up: CosineAnnealingLR's
     "first at epoch 0: expected 0.0333333, got 0.1"),
    (check_warmup_cosine, lambda e, w, t: e / w if e < w else _factor(e, w, t),  # off by one: e / W
     r"3 of 10 epochs differ; first at epoch 0: expected 0.0333333, got 0 \(factor 0.333333 expected, 0 returned\)"),
    (check_warmup_cosine, lambda e, w, t: (e + 1) / w if e <= w else _factor(e, w, t),  # off by one: e <= W
     "1 of 10 epochs differ; first at epoch 3: expected 0.1, got 0.133333"),
    (check_warmup_cosine, lambda e, w, t: _factor(e + 1, w, t),  # off by one: 1-based epochs
     "first at epoch 0: expected 0.0333333, got 0.0666667"),
    (check_warmup_cosine, lambda e, w, t: torch.tensor([_factor(i, w, t) for i in range(t)]),  # every epoch at once
     r"the factor at epoch 0 is a torch.float32 Tensor of shape \(10,\): expected one real number"),
    (check_warmup_cosine, lambda e, w, t: None,  # computed, never returned
     r"the factor at epoch 0 is None \(a missing return\?\)"),
    (check_warmup_cosine, lambda e, w, t: e < w,  # a bool is not a number here
     "the factor at epoch 0 is a bool: expected one real number"),
])
def test_checks_catch_plausible_bugs(check, wrong, message):
    with pytest.raises(CheckFailure, match=message):
        check(wrong)


@pytest.mark.parametrize("wrap", [torch.tensor, lambda v: torch.tensor([v], dtype=torch.float64), np.float32,
                                  np.array, float])
def test_schedule_check_takes_any_one_real_number(wrap):
    check_warmup_cosine(lambda e, w, t: wrap(_factor(e, w, t)))


def test_given_scheduler_is_lambdalr_over_the_factor():
    """Part 5's scheduler (a locked cell of the notebook) over the solution's factor, stepped once per
    epoch, gives torch's own rates: the factor is all a student writes."""
    namespace = {"math": math, "torch": torch}
    for cell in read_notebook(bank.BANK.solution)["cells"]:
        if grade_id(cell) in ("schedule", "schedule_scheduler"):
            exec(compile(cell["source"], grade_id(cell), "exec"), namespace)
    for base, warmup, total in SCHEDULE_CASES + HIDDEN_SCHEDULES:
        optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=base)
        scheduler = namespace["warmup_cosine"](optimizer, warmup, total)
        rates = []
        for _ in range(total):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        expected = [base * _torch_factor(e, warmup, total) for e in range(total)]
        assert rates == pytest.approx(expected, rel=1e-9), (base, warmup, total)


def test_finetune_check_catches_forgotten_freeze_and_lost_weights():
    build = lambda: fashion_cnn_small(num_classes=5)  # noqa: E731
    with pytest.raises(CheckFailure, match=r"only the new classifier may be trainable; trainable: \['classifier"):
        check_finetune_setup(lambda m, k, freeze: transfer.replace_head(m, k), build)

    def fresh(model, k, freeze):  # builds a new network instead of reusing the pretrained one
        return _finetune(fashion_cnn_small(num_classes=k), k, freeze)

    with pytest.raises(CheckFailure, match="the pretrained feature weights were changed or dropped"):
        check_finetune_setup(fresh, build)


def _one_hot_model(tmp_path, predictions, num_classes):
    """Images that make an identity linear layer predict ``predictions``, and its weights on disk."""
    build = lambda: nn.Sequential(nn.Flatten(), nn.Linear(num_classes, num_classes))  # noqa: E731
    model = build()
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(num_classes))
        model[1].bias.zero_()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    images = torch.eye(num_classes)[torch.tensor(predictions)].reshape(-1, 1, 1, num_classes)
    return build, images


def test_model_balanced_accuracy_is_the_mean_recall_not_the_accuracy(tmp_path, capsys):
    # recalls 4/4, 1/2, 1/2: balanced accuracy 2/3, plain accuracy 6/8 = 0.75 (worked out by hand)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    build, images = _one_hot_model(tmp_path, [0, 0, 0, 0, 1, 0, 2, 0], 3)
    check_model_balanced_accuracy(build, tmp_path / "m.pt", images, labels, min_score=0.66)
    assert "balanced accuracy 66.67% (required 66%); recall per class: 0: 1.00, 1: 0.50, 2: 0.50" in capsys.readouterr().out
    with pytest.raises(CheckFailure, match=r"balanced accuracy 66.67% is below the required 70%; "
                                           r"recall per class: 0: 1.00, 1: 0.50, 2: 0.50"):
        check_model_balanced_accuracy(build, tmp_path / "m.pt", images, labels, min_score=0.70)


def test_model_balanced_accuracy_never_unpickles(tmp_path):
    build = lambda: nn.Sequential(nn.Flatten(), nn.Linear(3, 3))  # noqa: E731
    torch.save(build(), tmp_path / "whole.pt")  # a whole model, as torch.save(model, ...) writes it
    with pytest.raises(CheckFailure, match=r"not a plain state_dict: it cannot be read with torch.load\(weights_only=True\)"):
        check_model_balanced_accuracy(build, tmp_path / "whole.pt", torch.rand(4, 1, 1, 3), torch.arange(4) % 3, 0.5)
    with pytest.raises(CheckFailure, match="no weights file missing.pt next to the notebook"):
        check_model_balanced_accuracy(build, tmp_path / "missing.pt", torch.rand(4, 1, 1, 3), torch.arange(4) % 3, 0.5)


# ------------------------------------------------------------------ this bank's reference and release (graded: test_banks.py)
def test_release_keeps_the_threshold_and_gives_the_scheduler():
    assert "min_score=0.90" in bank.BANK.solution.read_text(encoding="utf-8"), "the threshold must stay 90%"
    assert "fashion_cnn_clothes_0_4" in bank.BANK.release.read_text(encoding="utf-8"), \
        "the release must say which pretrained weights it uses"
    given = next(c for c in read_notebook(bank.BANK.release)["cells"] if grade_id(c) == "schedule_scheduler")
    assert given["metadata"]["nbgrader"]["locked"] and "LambdaLR(" in given["source"], \
        "the release must give part 5's scheduler, LambdaLR over the student's factor, in a locked cell"
