"""Checks for assignment 1's convolution parts, against PyTorch's own ops.

Each ``check_*`` takes the student's function (and optionally its own list of cases, which is how
the hidden tests pass hidden inputs, and ``forbidden``: ops the student's code may not call, e.g.
:data:`~course_lib.grading.compare.FROM_SCRATCH`), runs it on seeded inputs, compares it with the reference
(``F.conv1d``'s output length, ``F.unfold``, ``F.conv2d``, autograd through ``F.conv2d`` in
float64) and raises :class:`~course_lib.grading.compare.CheckFailure` saying which case failed,
with which inputs, and how. It prints one line when every case passes. A check keeps no state
between calls and touches nothing but its arguments.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from course_lib.grading.compare import call_student, describe_difference, each_case, refuse, sandbox_ready


@dataclass(frozen=True)
class SizeCase:
    """One axis of a convolution: ``conv_output_size(size, kernel_size, stride, padding, dilation)``."""

    size: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1

    def describe(self) -> str:
        return (f"size={self.size}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}")


@dataclass(frozen=True)
class ConvCase:
    """A seeded convolution problem: input ``(N, C_in, H, W)``, weight ``(C_out, C_in, kH, kW)``."""

    name: str
    input_shape: tuple[int, int, int, int]
    weight_shape: tuple[int, int, int, int]
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    bias: bool = True
    seed: int = 0

    def describe(self, dtype: torch.dtype, device: str) -> str:
        bias = f"bias {(self.weight_shape[0],)}" if self.bias else "bias=None"
        return (f"input {self.input_shape}, weight {self.weight_shape}, {bias}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, {dtype}, device={device}, seed={self.seed}")

    def tensors(self, dtype: torch.dtype, device: str):
        """``(input, weight, bias or None)``, standard normal, the same for every call."""
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.input_shape, generator=g, dtype=torch.float64)
        w = torch.randn(self.weight_shape, generator=g, dtype=torch.float64)
        b = torch.randn(self.weight_shape[0], generator=g, dtype=torch.float64) if self.bias else None
        to = {"dtype": dtype, "device": device}
        return x.to(**to), w.to(**to), (b.to(**to) if b is not None else None)

    def geometry(self) -> dict:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}


SIZE_CASES = (SizeCase(7, 3), SizeCase(28, 5), SizeCase(28, 3, padding=1), SizeCase(32, 5, padding=2),
              SizeCase(5, 5))

CONV_CASES = (
    ConvCase("3x3 kernel, no padding", (2, 3, 6, 6), (4, 3, 3, 3)),
    ConvCase("3x3 kernel, padding 1", (2, 3, 6, 6), (4, 3, 3, 3), padding=1, seed=1),
    ConvCase("1x1 kernel, no bias", (1, 3, 5, 5), (2, 3, 1, 1), bias=False, seed=2),
    ConvCase("5x5 kernel, padding 2, one channel", (1, 1, 7, 7), (1, 1, 5, 5), padding=2, seed=3),
    # batch, input and output channels all > 1 and all different, and H != W: a batch/channel or
    # height/width mix-up in a view, reshape or permute cannot give the right answer by chance
    ConvCase("batch 3, 2 -> 4 channels, non-square input and kernel", (3, 2, 5, 8), (4, 2, 3, 2), padding=1,
             seed=4),
)


@sandbox_ready
def check_conv_output_size(conv_output_size: Callable, cases: Sequence[SizeCase] = SIZE_CASES) -> None:
    """The student's output-size formula against the length of a real ``F.conv1d`` output."""
    for number, case in enumerate(each_case("check_conv_output_size", cases), 1):
        label = f"{number} of {len(cases)}"
        ref = F.conv1d(torch.zeros(1, 1, case.size), torch.zeros(1, 1, case.kernel_size),
                       stride=case.stride, padding=case.padding, dilation=case.dilation).shape[-1]
        got = call_student("check_conv_output_size", label, case.describe(), (), conv_output_size,
                           case.size, case.kernel_size, stride=case.stride, padding=case.padding,
                           dilation=case.dilation)
        problem = None
        if isinstance(got, bool) or not hasattr(got, "__index__"):
            problem = (f"expected an int, got {type(got).__name__} {got!r}"
                       + (" (use // for the floor division)" if isinstance(got, float) else ""))
        elif int(got) != ref:
            problem = f"wrong output size: expected {ref}, got {int(got)}"
        refuse("check_conv_output_size", label, case.describe(), problem)


@sandbox_ready
def check_im2col(im2col: Callable, cases: Sequence[ConvCase] = CONV_CASES, dtype=torch.float32,
                 device: str = "cpu", forbidden: Sequence[str] = ()) -> None:
    """``im2col(input, kernel_size, dilation, padding, stride)`` against ``F.unfold``: ``(N, C*kH*kW, L)``."""
    for case in each_case("check_im2col", cases):
        x, w, _ = case.tensors(dtype, device)
        kernel_size = tuple(w.shape[2:])
        params = f"kernel_size={kernel_size}, " + case.describe(dtype, device)
        expected = F.unfold(x.double(), kernel_size, **case.geometry()).to(dtype)
        got = call_student("check_im2col", case.name, params, forbidden, im2col, x, kernel_size, **case.geometry())
        problem = describe_difference(got, expected, "columns")
        refuse("check_im2col", case.name, params, problem)


@sandbox_ready
def check_conv2d(conv2d: Callable, cases: Sequence[ConvCase] = CONV_CASES, dtype=torch.float32,
                 device: str = "cpu", forbidden: Sequence[str] = ()) -> None:
    """``conv2d(input, weight, bias, stride, padding, dilation)`` against ``F.conv2d``.

    The reference is computed in float64 and rounded to ``dtype``, so that the tolerance only has
    to absorb the student's own rounding.
    """
    for case in each_case("check_conv2d", cases):
        x, w, b = case.tensors(dtype, device)
        params = case.describe(dtype, device)
        expected = F.conv2d(x.double(), w.double(), None if b is None else b.double(), **case.geometry()).to(dtype)
        got = call_student("check_conv2d", case.name, params, forbidden, conv2d, x, w, b, **case.geometry())
        problem = describe_difference(got, expected)
        refuse("check_conv2d", case.name, params, problem)


@sandbox_ready
def check_conv2d_backward(conv2d_backward: Callable, cases: Sequence[ConvCase] = CONV_CASES,
                          device: str = "cpu", forbidden: Sequence[str] = ()) -> None:
    """``conv2d_backward(grad_output, input, weight, stride, padding, dilation) -> (grad_input, grad_weight,
    grad_bias)`` (as :func:`course_lib.conv.conv2d_backward`) against autograd through ``F.conv2d``, in float64.

    For a loss ``L`` whose gradient at the output is ``grad_output``, the reference is
    ``torch.autograd.grad((F.conv2d(x, w, b) * grad_output).sum(), (x, w, b))``.
    """
    dtype = torch.float64
    for case in each_case("check_conv2d_backward", cases):
        x, w, _ = case.tensors(dtype, device)
        params = case.describe(dtype, device)
        b = torch.zeros(w.shape[0], dtype=dtype, device=device)  # its gradient does not depend on its value
        x.requires_grad_(True), w.requires_grad_(True), b.requires_grad_(True)
        out = F.conv2d(x, w, b, **case.geometry())
        g = torch.Generator().manual_seed(case.seed + 1000)
        grad_output = torch.randn(out.shape, generator=g, dtype=dtype).to(device)
        expected = torch.autograd.grad(out, (x, w, b), grad_output)
        got = call_student("check_conv2d_backward", case.name, params, forbidden, conv2d_backward,
                           grad_output, x.detach(), w.detach(), **case.geometry())
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            problem = f"expected a triple (grad_input, grad_weight, grad_bias), got {type(got).__name__}"
        else:
            problem = next(filter(None, (describe_difference(v, e, what) for v, e, what in
                                         zip(got, expected, ("grad_input", "grad_weight", "grad_bias")))), None)
        refuse("check_conv2d_backward", case.name, params, problem)
