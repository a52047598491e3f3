"""A student's code behind the sandbox's proxies must pass or fail every check exactly as when called directly.

Each case defines student code (a correct answer or a plausible wrong one) and a check call. The code
runs twice: in this interpreter (the check gets the real functions and classes) and in a sandboxed
worker (the check gets :class:`~course_lib.grading.sandbox_grade.RemoteFunction` /
``RemoteClass`` proxies and remote modules). Both runs must end the same way: both pass, or both
raise the same exception with the same message. All cases share one worker, so the file stays fast.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch

import course_lib.grading as grading
from course_lib.grading.sandbox import Limits
from course_lib.grading.sandbox_grade import Session, proxies

# --------------------------------------------------------------------------------------------- student code
# Every answer is a function or class of its own name; ``_bad`` ones are plausible mistakes.
STUDENT = {
    "costs": """
def conv_mult_adds(M, N, K, D):
    return K * K * M * N * D * D
def separable_mult_adds(M, N, K, D):
    return K * K * M * D * D + M * N * D * D
def separable_num_params(M, N, K):
    return K * K * M + M * N
def separable_mult_adds_bad(M, N, K, D):
    return K * K * M * D * D + M * N * D
def separable_num_params_float(M, N, K):
    return float(K * K * M + M * N)
""",
    "attention": """
import torch
def spatial_softmax(scores):
    n, c, h, w = scores.shape
    return torch.softmax(scores.reshape(n, c, h * w), dim=-1).reshape(n, c, h, w)
def spatial_softmax_bad(scores):
    return torch.softmax(scores, dim=-1)
def attention_pool(features, scores):
    return (features * spatial_softmax(scores)).sum(dim=(2, 3))
def attention_pool_bad(features, scores):
    return (features * torch.sigmoid(scores)).sum(dim=(2, 3))
""",
    "iou": """
import torch
def mean_iou(pred, target, num_classes):
    ious = []
    for k in range(num_classes):
        inter = ((pred == k) & (target == k)).sum().item()
        union = ((pred == k) | (target == k)).sum().item()
        if union:
            ious.append(inter / union)
    return sum(ious) / len(ious)
def mean_iou_all_classes(pred, target, num_classes):
    ious = []
    for k in range(num_classes):
        inter = ((pred == k) & (target == k)).sum().item()
        union = ((pred == k) | (target == k)).sum().item()
        ious.append(inter / union if union else 0.0)
    return torch.tensor(sum(ious) / num_classes)
""",
}

CASES = [
    ("check_conv_costs", ("conv_mult_adds", "separable_mult_adds", "separable_num_params")),
    ("check_conv_costs", ("conv_mult_adds", "separable_mult_adds_bad", "separable_num_params")),
    ("check_conv_costs", ("conv_mult_adds", "separable_mult_adds", "separable_num_params_float")),
    ("check_spatial_softmax", ("spatial_softmax",)),
    ("check_spatial_softmax", ("spatial_softmax_bad",)),
    ("check_attention_pool", ("attention_pool",)),
    ("check_attention_pool", ("attention_pool_bad",)),
    ("check_mean_iou", ("mean_iou",)),
    ("check_mean_iou", ("mean_iou_all_classes",)),
]


def _code() -> str:
    return "\n".join(textwrap.dedent(c) for c in STUDENT.values())


def _outcome(check: str, args: tuple) -> tuple[str, str]:
    """``("passed", printed)`` or ``(exception type, message)`` of ``check(*args)``."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            getattr(grading, check)(*args)
    except Exception as err:  # noqa: BLE001 - compared between the two runs
        return type(err).__name__, str(err)
    return "passed", out.getvalue()


@pytest.fixture(scope="module")
def sides():
    local: dict = {"__name__": "__main__"}
    exec(compile(_code(), "<student>", "exec"), local)
    session = Session(Path(tempfile.mkdtemp()), [_code()], Limits(call_timeout=60), slot=3, budget=900)
    session.ensure()
    remote = proxies(session)
    yield local, remote
    session.stop()


@pytest.mark.parametrize("check,names", CASES, ids=[f"{c}-{n[-1]}" for c, n in CASES])
def test_remote_outcome_equals_direct(sides, check, names):
    local, remote = sides
    direct = _outcome(check, tuple(local[n] for n in names))
    sandboxed = _outcome(check, tuple(remote[n] for n in names))
    assert sandboxed == direct
    # every case list above mixes passes and failures: make sure each outcome really was exercised
    assert direct[0] in ("passed", "CheckFailure")


def test_cases_cover_passes_and_failures(sides):
    local, _ = sides
    outcomes = {_outcome(check, tuple(local[n] for n in names))[0] for check, names in CASES}
    assert outcomes == {"passed", "CheckFailure"}
