"""Checks for assignment 1's pooling parts: forward against ``F.max_pool2d`` / ``F.avg_pool2d``,
backward against autograd through them in float64.

Inputs are continuous random numbers, so windows have no ties and the max-pooling gradient is
unambiguous. Like :mod:`course_lib.grading.conv_checks`, every check takes the student's function
and optionally its own cases, and raises :class:`~course_lib.grading.compare.CheckFailure`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from course_lib.grading.compare import call_student, describe_difference, each_case, refuse, sandbox_ready


@dataclass(frozen=True)
class PoolCase:
    """A seeded pooling problem: input ``(N, C, H, W)``, square window, ``stride=None`` = ``kernel_size``."""

    name: str
    input_shape: tuple[int, int, int, int]
    kernel_size: int
    stride: int | None = None
    seed: int = 0

    def describe(self, dtype: torch.dtype, device: str) -> str:
        return (f"input {self.input_shape}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"{dtype}, device={device}, seed={self.seed}")

    def input(self, dtype: torch.dtype, device: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        return torch.randn(self.input_shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)

    def args(self) -> tuple:
        """Positional arguments after the input; ``stride`` is left out when it is the default."""
        return (self.kernel_size,) if self.stride is None else (self.kernel_size, self.stride)


POOL_CASES = (
    PoolCase("2x2 windows, stride 2", (2, 3, 6, 6), 2),
    PoolCase("3x3 windows, stride 3", (1, 2, 9, 9), 3, seed=1),
    PoolCase("2x2 windows, stride 1 (overlapping)", (1, 2, 5, 5), 2, stride=1, seed=2),
    # batch and channels both > 1 and different, H != W: catches N and C (or H and W) swapped in a view
    PoolCase("batch 3, 2 channels, non-square", (3, 2, 6, 8), 2, seed=3),
)

_REFERENCES = {"max": F.max_pool2d, "avg": F.avg_pool2d}


def _check_forward(kind: str, student: Callable, cases: Sequence[PoolCase], dtype, device, forbidden) -> None:
    check = f"check_{kind}_pool2d"
    for case in each_case(check, cases):
        x = case.input(dtype, device)
        params = case.describe(dtype, device)
        expected = _REFERENCES[kind](x.double(), *case.args()).to(dtype)
        got = call_student(check, case.name, params, forbidden, student, x, *case.args())
        problem = describe_difference(got, expected)
        refuse(check, case.name, params, problem)


def _check_backward(kind: str, student: Callable, cases: Sequence[PoolCase], device, forbidden) -> None:
    check, dtype = f"check_{kind}_pool2d_backward", torch.float64
    for case in each_case(check, cases):
        x = case.input(dtype, device).requires_grad_(True)
        params = case.describe(dtype, device)
        out = _REFERENCES[kind](x, *case.args())
        g = torch.Generator().manual_seed(case.seed + 1000)
        grad_output = torch.randn(out.shape, generator=g, dtype=dtype).to(device)
        (expected,) = torch.autograd.grad(out, x, grad_output)
        got = call_student(check, case.name, params, forbidden, student, grad_output, x.detach(), *case.args())
        problem = describe_difference(got, expected, "grad_input")
        refuse(check, case.name, params, problem)


@sandbox_ready
def check_max_pool2d(max_pool2d: Callable, cases: Sequence[PoolCase] = POOL_CASES, dtype=torch.float32,
                     device: str = "cpu", forbidden: Sequence[str] = ()) -> None:
    """``max_pool2d(input, kernel_size, stride=None)`` against ``F.max_pool2d``."""
    _check_forward("max", max_pool2d, cases, dtype, device, forbidden)


@sandbox_ready
def check_avg_pool2d(avg_pool2d: Callable, cases: Sequence[PoolCase] = POOL_CASES, dtype=torch.float32,
                     device: str = "cpu", forbidden: Sequence[str] = ()) -> None:
    """``avg_pool2d(input, kernel_size, stride=None)`` against ``F.avg_pool2d``."""
    _check_forward("avg", avg_pool2d, cases, dtype, device, forbidden)


@sandbox_ready
def check_max_pool2d_backward(max_pool2d_backward: Callable, cases: Sequence[PoolCase] = POOL_CASES,
                              device: str = "cpu", forbidden: Sequence[str] = ()) -> None:
    """``max_pool2d_backward(grad_output, input, kernel_size, stride=None)`` against autograd (float64)."""
    _check_backward("max", max_pool2d_backward, cases, device, forbidden)


@sandbox_ready
def check_avg_pool2d_backward(avg_pool2d_backward: Callable, cases: Sequence[PoolCase] = POOL_CASES,
                              device: str = "cpu", forbidden: Sequence[str] = ()) -> None:
    """``avg_pool2d_backward(grad_output, input, kernel_size, stride=None)`` against autograd (float64)."""
    _check_backward("avg", avg_pool2d_backward, cases, device, forbidden)
