"""Compare a student's tensor with the reference and say precisely what differs.

The message follows ``torch.testing.assert_close``: first the type, then the shape, then the dtype,
then the values — how many elements differ, the greatest absolute and relative difference and where,
and the tolerance that was used. Two tensors are close where

.. math::  |got - expected| \\le atol + rtol \\cdot |expected| .

The tolerances live in one table, :data:`TOLERANCES`, keyed by dtype and device type; every check,
test and grader reads them from there.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar
from unittest import mock

import torch

from course_lib.grading import forbidden_ops
from course_lib.grading.forbidden_ops import ForbiddenCall

T = TypeVar("T")

#: ``(dtype, device type) -> (rtol, atol)``. CPU values are ``torch.testing.assert_close``'s
#: defaults; CUDA float32 is looser because matrix products there may run in TF32 (10-bit mantissa).
TOLERANCES: dict[tuple[torch.dtype, str], tuple[float, float]] = {
    (torch.float64, "cpu"): (1e-7, 1e-7),
    (torch.float32, "cpu"): (1.3e-6, 1e-5),
    (torch.float16, "cpu"): (1e-3, 1e-5),
    (torch.bfloat16, "cpu"): (1.6e-2, 1e-5),
    (torch.float64, "cuda"): (1e-7, 1e-7),
    (torch.float32, "cuda"): (1e-3, 1e-4),
    (torch.float16, "cuda"): (1e-3, 1e-5),
    (torch.bfloat16, "cuda"): (1.6e-2, 1e-5),
    (torch.float32, "mps"): (1e-4, 1e-4),
    (torch.float16, "mps"): (1e-3, 1e-5),
}


#: The PyTorch ops that assignment 1 asks students to write themselves: its checks compare with
#: them, so a solution must not call them (pass ``forbidden=FROM_SCRATCH`` to a check).
FROM_SCRATCH = (
    "torch.nn.functional.conv2d", "torch.conv2d", "torch.nn.functional.conv_transpose2d",
    "torch.nn.functional.unfold", "torch.nn.functional.fold",
    "torch.nn.functional.max_pool2d", "torch.nn.functional.max_pool2d_with_indices", "torch.max_pool2d",
    "torch.nn.functional.avg_pool2d",
    "torch.autograd.grad", "torch.autograd.backward", "torch.Tensor.backward",
)


class CheckFailure(AssertionError):
    """A check found a difference between the student's result and the reference."""


#: The names forbidden right now (a stack of :func:`forbidding` blocks); a sandboxed student
#: function (:mod:`course_lib.grading.autograder.session`) forwards them to the worker that runs it.
_ACTIVE: list[tuple[str, ...]] = []


def forbidden_now() -> tuple[str, ...]:
    """Every name that the enclosing :func:`forbidding` blocks switch off."""
    return tuple(name for names in _ACTIVE for name in names)


@contextlib.contextmanager
def forbidding(names=(), who: str = "your function", strict: bool = False):
    """Switch off, for the duration of a call of the student's code (``who`` in the messages):

    * each dotted torch name (``"torch.nn.functional.conv2d"``): replaced by a function that raises
      :class:`ForbiddenCall`, and the ATen ops behind it watched, however they are reached
      (:func:`course_lib.grading.forbidden_ops.guard`);
    * each dotted ``course_lib`` name: one of the library's answers to the part, which fails the call
      when it runs (the library's own tests allow them with
      :func:`~course_lib.grading.forbidden_ops.checking_the_library`, except where ``strict``: in the
      sandbox's worker).
    """
    names = tuple(names)
    _ACTIVE.append(names)
    answers = tuple(n for n in names if n.startswith("course_lib."))
    with contextlib.ExitStack() as stack:
        stack.callback(_ACTIVE.pop)
        for name in names:
            if name not in answers:
                stack.enter_context(mock.patch.object(*_owner(name), _forbidden(name)))
        stack.enter_context(forbidden_ops.guard(names, answers, who, strict))
        yield


def _owner(name: str) -> tuple[object, str]:
    owner_name, attr = name.rsplit(".", 1)
    try:
        owner = importlib.import_module(owner_name)
    except ModuleNotFoundError:  # a class, e.g. torch.Tensor
        module, cls = owner_name.rsplit(".", 1)
        owner = getattr(importlib.import_module(module), cls)
    return owner, attr


def _forbidden(name: str):
    def forbidden(*args, **kwargs):
        raise ForbiddenCall(f"{name} is what this part asks you to write yourself; do not call it")
    return forbidden


def tolerance(dtype: torch.dtype, device: torch.device | str) -> tuple[float, float]:
    """``(rtol, atol)`` for comparing tensors of ``dtype`` computed on ``device``.

    Raises:
        ValueError: no tolerance is defined for this dtype and device type.
    """
    key = (dtype, torch.device(device).type)
    if key not in TOLERANCES:
        raise ValueError(f"no tolerance defined for dtype={dtype} on device type {key[1]!r}; "
                         f"known: {sorted((str(d), t) for d, t in TOLERANCES)}")
    return TOLERANCES[key]


def _index(flat: int, shape: torch.Size) -> tuple[int, ...]:
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), shape))


def describe_difference(got, expected: torch.Tensor, what: str = "output") -> str | None:
    """Why ``got`` is not close to ``expected``, or ``None`` when it is.

    Args:
        got: the student's value (anything; a non-tensor is reported as such).
        expected: the reference tensor; its dtype and device set the tolerance.
        what: the name of the value in the message, e.g. ``"grad_input"``.
    """
    if not isinstance(got, torch.Tensor):
        return f"{what}: expected a torch.Tensor, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"{what}: wrong shape: expected {tuple(expected.shape)}, got {tuple(got.shape)}"
    if got.dtype != expected.dtype:
        return f"{what}: wrong dtype: expected {expected.dtype}, got {got.dtype} (keep the input's dtype)"
    if got.device != expected.device:
        return f"{what}: wrong device: expected {expected.device}, got {got.device} (keep the input's device)"
    rtol, atol = tolerance(expected.dtype, expected.device)
    got64, exp64 = got.detach().double().cpu(), expected.detach().double().cpu()
    close = torch.isclose(got64, exp64, rtol=rtol, atol=atol, equal_nan=False)
    if bool(close.all()):
        return None
    total, bad = close.numel(), int((~close).sum())
    abs_diff = (got64 - exp64).abs().nan_to_num(nan=float("inf"))
    rel_diff = abs_diff / exp64.abs()
    rel_diff = rel_diff.nan_to_num(nan=0.0)  # 0/0: equal zeros
    a, r = int(abs_diff.argmax()), int(rel_diff.argmax())
    return (f"{what}: tensors are not close!\n"
            f"  Mismatched elements: {bad} / {total} ({100 * bad / total:.1f}%)\n"
            f"  Greatest absolute difference: {abs_diff.flatten()[a].item():.6g} at index "
            f"{_index(a, got.shape)}: expected {exp64.flatten()[a].item():.6g}, got "
            f"{got64.flatten()[a].item():.6g} (up to {atol:g} allowed)\n"
            f"  Greatest relative difference: {rel_diff.flatten()[r].item():.6g} at index "
            f"{_index(r, got.shape)} (up to {rtol:g} allowed)")


def fail(check: str, case: str, params: str, problem: str) -> CheckFailure:
    """The exception a check raises: which check, which case, its inputs, and what went wrong."""
    return CheckFailure(f"{check} failed on case {case!r}\n  inputs: {params}\n{problem}")


def refuse(check: str, case: str, params: str, problem: str | None) -> None:
    """Fail the check on ``case`` when ``problem`` says what is wrong (``None`` or ``""``: the case passed)."""
    if problem:
        raise fail(check, case, params, problem)


def each_case(check: str, cases: Iterable[T]) -> Iterator[T]:
    """The cases of ``check``, one at a time, as every check loops over them; once the loop has run
    through all of them (none failed: a failure leaves the loop by its exception), the student sees
    :func:`passed`."""
    count = 0
    for case in cases:
        count += 1
        yield case
    passed(check, count)


def call_student(check: str, case: str, params: str, forbidden, fn, *args, **kwargs):
    """Call the student's ``fn`` with the ops in ``forbidden`` disabled, and the course library's answers
    that the calling check module grades (:data:`course_lib.grading.forbidden_ops.ANSWERS`); an exception (other than
    "not implemented yet") is re-raised as a :class:`CheckFailure` that names the case."""
    answers = forbidden_ops.answers_for(sys._getframe(1).f_globals.get("__name__"))
    who = getattr(fn, "__name__", type(fn).__name__)
    try:
        with forbidding(tuple(forbidden) + answers, who):  # may raise on leaving: a forbidden op swallowed
            return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:  # the student's bug, reported with the input that triggered it
        raise fail(check, case, params, f"your function raised {type(err).__name__}: {err}") from err


def sandbox_ready(check):
    """Mark ``check`` as one that works through the sandbox's proxies (the autograder's
    :func:`~course_lib.grading.autograder.session.unsupported` grades a test cell that calls it sandboxed).

    Say so only once a test shows it passing and failing exactly as with direct calls: it hands the
    student's functions plain data (tensors, numbers, tuples, dicts, CPU generators), the grader's
    modules and optimizers, and gets back plain data or the student's modules (mirrored).
    """
    check.sandbox_ready = True
    return check


def is_sandbox_ready(check) -> bool:
    """Whether ``check`` was marked with :func:`sandbox_ready`."""
    return callable(check) and getattr(check, "sandbox_ready", False) is True


def passed(check: str, cases: int, extra: str = "") -> None:
    """What a check prints when every one of its ``cases`` passed (the student sees it under the cell)."""
    print(f"{check}: all {cases} cases passed{extra}")
