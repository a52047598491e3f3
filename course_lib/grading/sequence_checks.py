"""Checks for assignment 6's trained row-by-row classifier (:class:`course_lib.models.row_rnn.RowRNNClassifier`).

The student's ``model_config()`` names the network (a plain dict of options, checked before any
module is built); their ``submitted_weights()`` returns the state_dict they trained, read with
:func:`~course_lib.grading.weights.load_state_dict_file` (never unpickled), and the grader measures
its accuracy on the Fashion-MNIST test set with its own copy of the network.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from course_lib.data import load_fashion_mnist
from course_lib.grading.compare import call_student, fail, passed, sandbox_ready
from course_lib.models.row_rnn import RNN_TYPES, RowRNNClassifier
from course_lib.train import predict


#: What a student may choose for :class:`course_lib.models.row_rnn.RowRNNClassifier`.
CLASSIFIER_OPTIONS = {"mode": str, "hidden_size": int, "num_layers": int, "bidirectional": bool}
MAX_CLASSIFIER_PARAMETERS = 2_000_000


def build_classifier(config) -> nn.Module:
    """``RowRNNClassifier(**config)`` after checking ``config``; raises :class:`CheckFailure` on a bad one."""

    check, params = "check_sequence_classifier", f"model_config() = {config!r:.200}"
    if not isinstance(config, dict) or "mode" not in config:
        raise fail(check, "config", params, "expected a dict with at least 'mode' (and e.g. 'hidden_size')")
    for key, value in config.items():
        if key not in CLASSIFIER_OPTIONS:
            raise fail(check, "config", params, f"unknown option {key!r}; allowed: {sorted(CLASSIFIER_OPTIONS)}")
        if type(value) is not CLASSIFIER_OPTIONS[key]:
            raise fail(check, "config", params, f"{key} must be a {CLASSIFIER_OPTIONS[key].__name__}")
    if config["mode"] not in RNN_TYPES:
        raise fail(check, "config", params, f"mode must be one of {sorted(RNN_TYPES)}")
    if not 1 <= config.get("hidden_size", 128) <= 512 or not 1 <= config.get("num_layers", 1) <= 3:
        raise fail(check, "config", params, "hidden_size must be in 1..512 and num_layers in 1..3")
    model = RowRNNClassifier(**config)
    if sum(p.numel() for p in model.parameters()) > MAX_CLASSIFIER_PARAMETERS:
        raise fail(check, "config", params, f"more than {MAX_CLASSIFIER_PARAMETERS} parameters")
    return model


@sandbox_ready
def check_sequence_classifier(model_config: Callable, batch: int = 3) -> None:
    """``model_config()`` describes a valid :class:`~course_lib.models.row_rnn.RowRNNClassifier`
    that maps images ``(N, 1, 28, 28)`` to logits ``(N, 10)``."""
    check = "check_sequence_classifier"
    config = call_student(check, "config", "model_config()", (), model_config)
    model = build_classifier(config)
    images = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model.eval()(images)
    if tuple(logits.shape) != (batch, 10):
        raise fail(check, "forward", f"images ({batch}, 1, 28, 28)", f"expected logits ({batch}, 10), got "
                   f"{tuple(logits.shape)}")
    passed(check, 2)


@sandbox_ready
def check_classifier_accuracy(model_config: Callable, submitted_weights: Callable, threshold: float = 0.85,
                              images: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> None:
    """The submitted weights in ``RowRNNClassifier(**model_config())`` reach ``threshold`` test accuracy.

    ``submitted_weights()`` returns the state_dict the student saved, read by
    :func:`load_state_dict_file` (``weights_only=True`` or safetensors: never unpickled). The model
    is built and evaluated here, by the grader, never by the student's code. ``images, labels``
    default to the Fashion-MNIST test set. Returns nothing (the accuracy is printed): nbgrader would
    score a number left as a test cell's value as partial credit.
    """
    check = "check_classifier_accuracy"
    config = call_student(check, "config", "model_config()", (), model_config)
    model = build_classifier(config)
    state = call_student(check, "weights", "submitted_weights()", (), submitted_weights)
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise fail(check, "weights", "submitted_weights()", f"expected a state_dict, got {type(state).__name__}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise fail(check, "load", "submitted_weights()", "the saved weights do not fit the model that model_config() "
                   f"describes (save the state_dict of RowRNNClassifier(**model_config())): {err}") from None
    if images is None:

        images, labels = load_fashion_mnist("test", verbose=False)

    threads = torch.get_num_threads()
    # One thread: the 28 steps are small sequential products, and on a busy grading machine a second
    # thread mostly waits for the first (measured: ~1 s on one thread, 4-20 s on two under load).
    torch.set_num_threads(1)
    try:
        correct = int((predict(model, images, batch_size=1000).argmax(dim=1) == labels).sum())
    finally:
        torch.set_num_threads(threads)
    accuracy = correct / len(images)
    if accuracy < threshold:
        raise fail(check, "test accuracy", f"{len(images)} Fashion-MNIST test images, model_config() = {config!r}",
                   f"accuracy {accuracy:.2%} is below the required {threshold:.0%}")
    print(f"{check}: all 1 cases passed (test accuracy {accuracy:.2%} >= {threshold:.0%})")
