"""Assignment 3 (practical training): its checks, against the course library's own implementations
(written independently of the checks' references: scikit-learn, torch's schedulers, all outcomes of
the augmentation enumerated) and against plausible student bugs, each with its message."""
from __future__ import annotations

import math

import pytest
import torch

from course_lib import augment, imbalance, transfer
from course_lib.grading import (CheckFailure, check_balanced_accuracy, check_class_weights, check_finetune_setup,
                                check_random_crop_flip, check_sample_weights, check_warmup_cosine)
from course_lib.models.fashion_cnn import fashion_cnn_small


def _warmup_cosine(optimizer, warmup, total, t_max=None):
    def factor(epoch):
        if epoch < warmup:
            return (epoch + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / (t_max or total - warmup)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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
    check_warmup_cosine(_warmup_cosine)
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
    (check_warmup_cosine, lambda o, w, t: _warmup_cosine(o, w, t, t_max=t),  # cosine over all epochs
     "first at epoch 4: expected 0.0950484, got 0.0975528"),
    (check_warmup_cosine, lambda o, w, t: torch.optim.lr_scheduler.CosineAnnealingLR(o, t),  # no warm-up
     "first at epoch 0: expected 0.0333333, got 0.1"),
])
def test_checks_catch_plausible_bugs(check, wrong, message):
    with pytest.raises(CheckFailure, match=message):
        check(wrong)


def test_finetune_check_catches_forgotten_freeze_and_lost_weights():
    build = lambda: fashion_cnn_small(num_classes=5)  # noqa: E731
    with pytest.raises(CheckFailure, match=r"only the new classifier may be trainable; trainable: \['classifier"):
        check_finetune_setup(lambda m, k, freeze: transfer.replace_head(m, k), build)

    def fresh(model, k, freeze):  # builds a new network instead of reusing the pretrained one
        return _finetune(fashion_cnn_small(num_classes=k), k, freeze)

    with pytest.raises(CheckFailure, match="the pretrained feature weights were changed or dropped"):
        check_finetune_setup(fresh, build)
