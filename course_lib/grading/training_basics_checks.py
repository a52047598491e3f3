"""Checks for assignment 7 (training from the ground up), part 1: gradient checking, BatchNorm and
Dropout, against PyTorch's own ops.

* ``relative_error`` against the CS231n formula evaluated here in float64 (elementwise
  ``|a - b| / max(|a|, |b|, floor)``, then the maximum);
* ``numerical_gradient`` (centred differences) against autograd through the grader's module, in float64,
  with a tolerance that a one-sided difference cannot meet;
* ``batchnorm_forward`` against ``nn.BatchNorm2d`` (train and eval, running statistics with momentum,
  torch's unbiased ``running_var``), ``batchnorm_backward`` against autograd through ``nn.BatchNorm2d``;
* ``dropout`` exactly against the mask rule the assignment specifies, and statistically against
  ``F.dropout`` (how many are zeroed, the value of the survivors, eval mode).

The optimisers, the initialisation and label smoothing are in :mod:`course_lib.grading.optim_init_checks`. Like
:mod:`course_lib.grading.conv_checks`, each check runs seeded cases, raises
:class:`~course_lib.grading.compare.CheckFailure` naming the case, its inputs and the difference, and
prints one line when every case passes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.grading.compare import call_student, describe_difference, each_case, passed, refuse, sandbox_ready

#: What assignment 7 asks students to write themselves; the checks compare with these, so a
#: solution may not call them (``forbidden=TRAINING_FROM_SCRATCH``).
TRAINING_FROM_SCRATCH = (
    "torch.autograd.grad", "torch.autograd.backward", "torch.Tensor.backward",
    "torch.autograd.functional.jacobian", "torch.autograd.functional.vjp", "torch.func.vjp", "torch.func.grad",
    "torch.autograd.gradcheck", "torch.autograd.gradcheck.gradcheck",
    "torch.nn.functional.batch_norm", "torch.batch_norm", "torch.nn.BatchNorm2d.forward",
    "torch.nn.functional.dropout", "torch.dropout", "torch.nn.Dropout.forward",
    "torch.optim.SGD.step", "torch.optim.Adam.step", "torch.optim.AdamW.step",
    "torch.optim.sgd.sgd", "torch.optim.adam.adam", "torch.optim.adamw.adamw",
    "torch.nn.init.calculate_gain", "torch.nn.init._calculate_fan_in_and_fan_out",
    "torch.nn.init._calculate_correct_fan", "torch.nn.init.xavier_normal_", "torch.nn.init.xavier_uniform_",
    "torch.nn.init.kaiming_normal_", "torch.nn.init.kaiming_uniform_",
    "torch.nn.functional.cross_entropy", "torch.nn.CrossEntropyLoss.forward",
)


def _seeded(seed: int, *shape, dtype=torch.float64, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) + shift


# ----------------------------------------------------------------------------------------------
# Gradient checking
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RelErrCase:
    """``relative_error(a, b)`` for ``a`` = ``scale``·N(0, 1) and ``b`` = ``a`` changed as ``kind`` says."""

    name: str
    shape: tuple[int, ...]
    kind: str = "noise"  # noise | sign | zeros | equal
    scale: float = 1.0
    seed: int = 0

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        a = _seeded(self.seed, *self.shape, scale=self.scale)
        if self.kind == "zeros":
            a[..., 0] = 0.0
            b = a.clone()
            b[..., 1:] += 1e-3 * self.scale * _seeded(self.seed + 1, *b[..., 1:].shape)
        elif self.kind == "sign":
            b = a.clone()
            b.view(-1)[0] = -b.view(-1)[0]
        elif self.kind == "equal":
            b = a.clone()
        else:
            b = a + 1e-4 * self.scale * _seeded(self.seed + 1, *self.shape)
        return a, b


RELERR_CASES = (
    RelErrCase("small noise", (3, 4)),
    RelErrCase("one sign flipped", (5,), kind="sign", seed=1),
    RelErrCase("exact zeros in both", (2, 3), kind="zeros", seed=2),
    RelErrCase("tiny values, 1e-8 * N(0,1), noise", (4, 4), scale=1e-8, seed=3),
)


def reference_relative_error(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-12) -> float:
    """CS231n's relative error: ``max |a - b| / max(|a|, |b|, floor)`` over the elements, in float64."""
    a64, b64 = a.double().flatten().tolist(), b.double().flatten().tolist()
    return max(abs(x - y) / max(abs(x), abs(y), floor) for x, y in zip(a64, b64))


@sandbox_ready
def check_relative_error(relative_error: Callable, cases: Sequence[RelErrCase] = RELERR_CASES) -> None:
    """``relative_error(a, b) -> float`` against the formula (the default floor, 1e-12)."""
    check = "check_relative_error"
    for case in each_case(check, cases):
        a, b = case.tensors()
        params = f"a {case.shape} = {case.scale}*N(0,1), b = {case.kind}, float64, seed={case.seed}"
        got = call_student(check, case.name, params, (), relative_error, a.clone(), b.clone())
        expected = reference_relative_error(a, b)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (float, int)):
            problem = f"expected a Python float, got {type(got).__name__}"
        elif not math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-15):
            problem = f"wrong relative error: expected {expected:.6g}, got {got:.6g}"
        else:
            problem = None
        refuse(check, case.name, params, problem)


@dataclass(frozen=True)
class GradCase:
    """``numerical_gradient(f, x, grad_output, h)`` with ``f`` a small float64 network of the grader's."""

    name: str
    x_shape: tuple[int, ...]
    layers: str = "linear-tanh"  # linear-tanh | sigmoid | linear-softplus-linear
    h: float | None = 1e-5  # None: not passed, the function's default (1e-6) is used
    scale: float = 1.0
    seed: int = 0

    def describe(self) -> str:
        h = "not passed (default 1e-6)" if self.h is None else self.h
        return (f"f = {self.layers}, x {self.x_shape} = {self.scale}*N(0,1), grad_output N(0,1), h={h}, "
                f"float64, seed={self.seed}")

    def module(self) -> nn.Module:
        torch.manual_seed(self.seed)
        width = self.x_shape[-1]
        if self.layers == "sigmoid":
            return nn.Sigmoid()
        if self.layers == "linear-softplus-linear":
            return nn.Sequential(nn.Linear(width, 5), nn.Softplus(), nn.Linear(5, 3)).double()
        return nn.Sequential(nn.Linear(width, 4), nn.Tanh()).double()


GRAD_CASES = (
    GradCase("linear + tanh", (3, 4)),
    GradCase("linear + tanh, the default h", (2, 3), h=None, seed=2),
    GradCase("sigmoid, large inputs", (2, 5), layers="sigmoid", scale=3.0, seed=1),
)


def _gradient_problem(got, expected: torch.Tensor, h: float) -> str | None:
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape or got.dtype != expected.dtype:
        return describe_difference(got, expected, "numerical gradient")
    tol = 10 * h ** 2 + 1e-8
    err = (got - expected).abs() - tol * (1 + expected.abs())
    if not bool((err > 0).any()) and not bool(got.isnan().any()):
        return None
    worst = int(err.nan_to_num(nan=float("inf")).argmax())
    return (f"numerical gradient: not accurate enough for centred differences: at flat index {worst} expected "
            f"{expected.flatten()[worst].item():.10g}, got {got.flatten()[worst].item():.10g} (up to {tol:g} * "
            f"(1 + |expected|) allowed; a one-sided difference errs by O(h))")


@sandbox_ready
def check_numerical_gradient(numerical_gradient: Callable, cases: Sequence[GradCase] = GRAD_CASES,
                             forbidden: Sequence[str] = ()) -> None:
    """``numerical_gradient(f, x, grad_output, h) -> ∂ sum(f(x) * grad_output) / ∂x`` against autograd.

    The tolerance, ``(10 h² + 1e-8) * (1 + |expected|)``, is what centred differences meet (their error
    is O(h²) plus rounding) and a one-sided difference (O(h)) does not."""
    check = "check_numerical_gradient"
    for case in each_case(check, cases):
        f = case.module()
        x = _seeded(case.seed + 100, *case.x_shape, scale=case.scale)
        with torch.no_grad():
            out_shape = f(x).shape
        grad_output = _seeded(case.seed + 200, *out_shape)
        xr = x.clone().requires_grad_(True)
        expected = torch.autograd.grad((f(xr) * grad_output).sum(), xr)[0]
        params = case.describe()
        got = call_student(check, case.name, params, forbidden, numerical_gradient, f, x.clone(), grad_output.clone(),
                           *(() if case.h is None else (case.h,)))
        problem = _gradient_problem(got, expected, 1e-6 if case.h is None else case.h)
        refuse(check, case.name, params, problem)


# ----------------------------------------------------------------------------------------------
# BatchNorm2d
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BNCase:
    """A seeded ``(N, C, H, W)`` input ``scale``·N(0, 1) + ``shift``, γ, β and running statistics."""

    name: str
    shape: tuple[int, int, int, int]
    training: bool = True
    momentum: float = 0.1
    eps: float = 1e-5
    scale: float = 1.0
    shift: float = 0.0
    seed: int = 0

    def describe(self, dtype: torch.dtype) -> str:
        return (f"x {self.shape} = {self.scale}*N(0,1) + {self.shift}, training={self.training}, "
                f"momentum={self.momentum}, eps={self.eps}, gamma/beta/running stats seeded, {dtype}, seed={self.seed}")

    def options(self, momentum: bool = True) -> dict:
        """``momentum`` and ``eps`` by keyword, where they differ from torch's defaults (0.1, 1e-5): the
        cases with torch's defaults test the function's own."""
        options = {"momentum": self.momentum} if momentum and self.momentum != 0.1 else {}
        return options | ({"eps": self.eps} if self.eps != 1e-5 else {})

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """``(x, gamma, beta, running_mean, running_var)`` in float64."""
        C = self.shape[1]
        x = _seeded(self.seed, *self.shape, scale=self.scale, shift=self.shift)
        gamma = 1 + 0.5 * _seeded(self.seed + 1, C)
        beta = _seeded(self.seed + 2, C)
        running_mean = 0.3 * _seeded(self.seed + 3, C)
        running_var = 0.5 + _seeded(self.seed + 4, C).abs()
        return x, gamma, beta, running_mean, running_var

    def torch_bn(self) -> nn.BatchNorm2d:
        _, gamma, beta, running_mean, running_var = self.tensors()
        bn = nn.BatchNorm2d(self.shape[1], eps=self.eps, momentum=self.momentum).double()
        with torch.no_grad():
            bn.weight.copy_(gamma), bn.bias.copy_(beta)
            bn.running_mean.copy_(running_mean), bn.running_var.copy_(running_var)
        return bn.train(self.training)


BN_CASES = (
    BNCase("train, batch 4, 3 channels, 5x5", (4, 3, 5, 5)),
    BNCase("train, batch 2, shifted and scaled input", (2, 2, 3, 4), scale=3.0, shift=2.0, momentum=0.3, seed=1),
    BNCase("eval, batch 3, 2 channels, 4x4", (3, 2, 4, 4), training=False, seed=2),
)


@sandbox_ready
def check_batchnorm_forward(batchnorm_forward: Callable, cases: Sequence[BNCase] = BN_CASES, dtype=torch.float32,
                            forbidden: Sequence[str] = ()) -> None:
    """``batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps) ->
    (out, new_running_mean, new_running_var)`` against ``nn.BatchNorm2d`` (in float64, rounded to ``dtype``)."""
    check = "check_batchnorm_forward"
    for case in each_case(check, cases):
        bn, tensors = case.torch_bn(), case.tensors()
        with torch.no_grad():
            out = bn(tensors[0])
        expected = (out, bn.running_mean, bn.running_var)
        params = case.describe(dtype)
        got = call_student(check, case.name, params, forbidden, batchnorm_forward,
                           *(t.to(dtype) for t in tensors), case.training, **case.options())
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            problem = f"expected a triple (out, new_running_mean, new_running_var), got {type(got).__name__}"
        else:
            problem = next(filter(None, (describe_difference(v, e.to(dtype), what) for v, e, what in
                                         zip(got, expected, ("out", "new_running_mean", "new_running_var")))), None)
        refuse(check, case.name, params, problem)


@sandbox_ready
def check_batchnorm_backward(batchnorm_backward: Callable, cases: Sequence[BNCase] = BN_CASES,
                             forbidden: Sequence[str] = ()) -> None:
    """``batchnorm_backward(grad_out, x, gamma, eps) -> (grad_x, grad_gamma, grad_beta)`` (training mode:
    the batch's statistics) against autograd through ``nn.BatchNorm2d``, in float64."""
    check = "check_batchnorm_backward"
    for case in each_case(check, cases):
        bn = case.torch_bn().train()
        x = case.tensors()[0].requires_grad_(True)
        out = bn(x)
        grad_out = _seeded(case.seed + 500, *out.shape)
        expected = torch.autograd.grad(out, (x, bn.weight, bn.bias), grad_out)
        params = case.describe(torch.float64).replace(f"training={case.training}", "training=True")
        got = call_student(check, case.name, params, forbidden, batchnorm_backward, grad_out.clone(),
                           x.detach().clone(), bn.weight.detach().clone(), **case.options(momentum=False))
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            problem = f"expected a triple (grad_x, grad_gamma, grad_beta), got {type(got).__name__}"
        else:
            problem = next(filter(None, (describe_difference(v, e, what) for v, e, what in
                                         zip(got, expected, ("grad_x", "grad_gamma", "grad_beta")))), None)
        refuse(check, case.name, params, problem)


# ----------------------------------------------------------------------------------------------
# Inverted dropout
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DropoutCase:
    """``dropout(x, p, training, generator)`` on a seeded ``x`` with ``torch.Generator().manual_seed(seed)``."""

    name: str
    shape: tuple[int, ...]
    p: float
    training: bool = True
    seed: int = 0

    def describe(self, dtype: torch.dtype) -> str:
        return (f"x {self.shape} N(0,1), p={self.p}, training={self.training}, "
                f"generator=torch.Generator().manual_seed({self.seed}), {dtype}")


DROPOUT_CASES = (
    DropoutCase("p=0.5, training", (4, 6), 0.5),
    DropoutCase("p=0.2, training, 4-d", (2, 3, 4, 4), 0.2, seed=1),
    DropoutCase("p=0.5, eval", (3, 5), 0.5, training=False, seed=2),
)


def reference_dropout(x: torch.Tensor, p: float, training: bool, seed: int) -> torch.Tensor:
    """The assignment's rule: keep where ``torch.rand(x.shape, generator=g, dtype=x.dtype) >= p``, scale by 1/(1-p)."""
    if not training or p == 0:
        return x.clone()
    if p == 1:
        return torch.zeros_like(x)
    keep = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype) >= p
    return x * keep / (1 - p)


def _dropout_statistics(dropout: Callable, p: float, forbidden, dtype) -> str | None:
    """How the student's dropout of 200 000 ones compares with ``F.dropout``'s: the fraction zeroed
    (within 5 binomial standard deviations of p), the survivors' value and the mean."""
    n = 200_000
    ones = torch.ones(n, dtype=dtype)
    ref = F.dropout(ones, p, training=True)
    got = call_student("check_dropout", f"statistics, p={p}", f"x = torch.ones({n}), p={p}", forbidden, dropout,
                       ones.clone(), p, True, torch.Generator().manual_seed(12345))
    if not isinstance(got, torch.Tensor) or got.shape != ones.shape:
        return f"expected a tensor of shape ({n},), got {type(got).__name__}"
    band = 5 * math.sqrt(p * (1 - p) / n)
    dropped, ref_dropped = float((got == 0).double().mean()), float((ref == 0).double().mean())
    if abs(dropped - p) > band:
        return (f"{dropped:.4f} of the elements were zeroed; F.dropout zeroes {ref_dropped:.4f}, "
                f"p={p} expected (±{band:.4f})")
    survivor, ref_survivor = got[got != 0], ref[ref != 0][:1].expand(int((got != 0).sum()))
    return describe_difference(survivor, ref_survivor, "the values kept (F.dropout keeps x / (1 - p))")


@sandbox_ready
def check_dropout(dropout: Callable, cases: Sequence[DropoutCase] = DROPOUT_CASES, dtype=torch.float32,
                  forbidden: Sequence[str] = (), statistics: Sequence[float] = (0.5,)) -> None:
    """``dropout(x, p, training, generator)``: exactly the assignment's mask rule on ``cases``, the
    eval mode against ``F.dropout(training=False)``, and the statistics of ``F.dropout`` for each
    ``p`` in ``statistics``."""
    check = "check_dropout"
    for case in cases:
        x = _seeded(case.seed + 50, *case.shape).to(dtype)
        expected = F.dropout(x, case.p, training=False) if not case.training else \
            reference_dropout(x, case.p, True, case.seed)
        params = case.describe(dtype)
        got = call_student(check, case.name, params, forbidden, dropout, x.clone(), case.p, case.training,
                           torch.Generator().manual_seed(case.seed))
        problem = describe_difference(got, expected)
        refuse(check, case.name, params, problem)
    for p in statistics:
        problem = _dropout_statistics(dropout, p, forbidden, dtype)
        refuse(check, f"statistics, p={p}", f"x = torch.ones(200000), p={p}, {dtype}", problem)
    passed(check, len(cases) + len(statistics))
