"""Checks for assignment 7 (training from the ground up), part 2: optimisers, initialisation, label smoothing.

* ``sgd_step``, ``adam_step``, ``adamw_step`` — pure update functions ``(param, grad, state, ...) ->
  (new_param, new_state)`` — step by step for several steps against ``torch.optim.SGD`` (momentum,
  Nesterov, weight decay), ``Adam`` (with L2 weight decay) and ``AdamW``, fed the same initial tensor
  and the same gradients;
* ``fan_in_and_fan_out``, ``xavier_std`` and ``kaiming_std`` against ``torch.nn.init``'s own fan
  computation and ``calculate_gain``, and statistically: the activations' second moment through a deep
  ReLU (Kaiming) or tanh (Xavier) stack of narrowing layers, with normal weights of the student's
  standard deviations, stays in a band;
* ``smoothed_cross_entropy`` against ``F.cross_entropy(label_smoothing=ε)`` (ε spread over all K classes).

Failures are reported as in :mod:`course_lib.grading.training_basics_checks`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.grading.compare import call_student, describe_difference, each_case, fail, passed, refuse, sandbox_ready

# ----------------------------------------------------------------------------------------------
# Optimisers
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptimCase:
    """``steps`` updates of a seeded parameter ``shape`` with seeded gradients; ``options`` are the
    optimiser's hyper-parameters (``lr``, ``momentum``, ``betas`` ...), passed by keyword."""

    name: str
    shape: tuple[int, ...]
    options: dict = field(default_factory=dict)
    steps: int = 5
    grad_scale: float = 1.0
    seed: int = 0

    def describe(self, dtype: torch.dtype) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items()) or "the defaults"
        return (f"param {self.shape} N(0,1), {self.steps} steps with gradients {self.grad_scale}*N(0,1), {opts}, "
                f"state={{}} at first, {dtype}, seed={self.seed}")

    def tensors(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed)
        param = torch.randn(self.shape, generator=g, dtype=torch.float64)
        return param, [self.grad_scale * torch.randn(self.shape, generator=g, dtype=torch.float64)
                       for _ in range(self.steps)]


SGD_CASES = (
    OptimCase("momentum 0.9", (3, 4), {"lr": 0.1, "momentum": 0.9}),
    OptimCase("plain SGD with weight decay", (5,), {"lr": 0.05, "weight_decay": 0.1}, seed=1),
    OptimCase("Nesterov momentum 0.8 with weight decay", (2, 3), {"lr": 0.1, "momentum": 0.8, "nesterov": True,
                                                                  "weight_decay": 0.01}, seed=2),
)
ADAM_CASES = (
    OptimCase("default betas", (3, 4), {"lr": 0.01}),
    OptimCase("betas (0.8, 0.9), eps 1e-6, L2 weight decay 0.1", (6,), {"lr": 0.05, "betas": (0.8, 0.9), "eps": 1e-6,
                                                                        "weight_decay": 0.1}, seed=1),
)
ADAMW_CASES = (
    OptimCase("weight decay 0.1", (3, 4), {"lr": 0.01, "weight_decay": 0.1}),
    OptimCase("betas (0.8, 0.9), weight decay 0.5", (6,), {"lr": 0.05, "betas": (0.8, 0.9), "weight_decay": 0.5},
              seed=1),
)
OPTIMIZERS = {"sgd_step": torch.optim.SGD, "adam_step": torch.optim.Adam, "adamw_step": torch.optim.AdamW}


def _optimizer_check(name: str, step: Callable, cases: Sequence[OptimCase], dtype, forbidden) -> None:
    check = f"check_{name}"
    for case in each_case(check, cases):
        start, grads = case.tensors()
        ref = start.clone().requires_grad_(True)
        optimizer = OPTIMIZERS[name]([ref], **case.options)
        param, state = start.to(dtype), {}
        params = case.describe(dtype)
        for t, grad in enumerate(grads, 1):
            ref.grad = grad.clone()
            optimizer.step()
            got = call_student(check, case.name, params, forbidden, step, param.clone(), grad.to(dtype), state,
                               **case.options)
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                problem = f"expected a pair (new_param, new_state), got {type(got).__name__}"
            elif not isinstance(got[1], dict):
                problem = f"new_state: expected a dict, got {type(got[1]).__name__}"
            else:
                problem = describe_difference(got[0], ref.detach().to(dtype), f"new_param after step {t}")
            refuse(check, case.name, params, problem)
            param, state = got


@sandbox_ready
def check_sgd_step(sgd_step: Callable, cases: Sequence[OptimCase] = SGD_CASES, dtype=torch.float64,
                   forbidden: Sequence[str] = ()) -> None:
    """``sgd_step(param, grad, state, lr, momentum=0, weight_decay=0, nesterov=False)`` against ``torch.optim.SGD``."""
    _optimizer_check("sgd_step", sgd_step, cases, dtype, forbidden)


@sandbox_ready
def check_adam_step(adam_step: Callable, cases: Sequence[OptimCase] = ADAM_CASES, dtype=torch.float64,
                    forbidden: Sequence[str] = ()) -> None:
    """``adam_step(param, grad, state, lr, betas, eps, weight_decay)`` against ``torch.optim.Adam`` (L2 decay)."""
    _optimizer_check("adam_step", adam_step, cases, dtype, forbidden)


@sandbox_ready
def check_adamw_step(adamw_step: Callable, cases: Sequence[OptimCase] = ADAMW_CASES, dtype=torch.float64,
                     forbidden: Sequence[str] = ()) -> None:
    """``adamw_step(param, grad, state, lr, betas, eps, weight_decay)`` against ``torch.optim.AdamW``."""
    _optimizer_check("adamw_step", adamw_step, cases, dtype, forbidden)


# ----------------------------------------------------------------------------------------------
# Initialisation
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InitCase:
    """A weight shape (``(out, in)`` or ``(out, in, kH, kW)``) and the initialisation's options (those equal
    to the functions' defaults are left out of the call)."""

    name: str
    shape: tuple[int, ...]
    nonlinearity: str = "relu"
    a: float = 0.0
    mode: str = "fan_in"
    gain: float = 1.0

    def describe(self) -> str:
        return (f"shape {self.shape}, kaiming: nonlinearity={self.nonlinearity!r}, a={self.a}, mode={self.mode!r}; "
                f"xavier: gain={self.gain}")


INIT_CASES = (
    InitCase("linear (out 20, in 50)", (20, 50)),
    InitCase("conv (out 16, in 3, 5x5), fan_out", (16, 3, 5, 5), mode="fan_out", gain=2.0),
    InitCase("conv (out 8, in 32, 3x3), tanh", (8, 32, 3, 3), nonlinearity="tanh", gain=5 / 3),
)


def reference_stds(case: InitCase) -> tuple[tuple[int, int], float, float]:
    """``((fan_in, fan_out), xavier std, kaiming std)`` from ``torch.nn.init``'s fans and gains."""
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(torch.empty(case.shape))
    xavier = case.gain * math.sqrt(2.0 / (fan_in + fan_out))
    gain = nn.init.calculate_gain(case.nonlinearity, case.a if case.nonlinearity == "leaky_relu" else None)
    kaiming = gain / math.sqrt(fan_in if case.mode == "fan_in" else fan_out)
    return (fan_in, fan_out), xavier, kaiming


def _number(got) -> float | None:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    return float(got) if isinstance(got, (int, float)) and not isinstance(got, bool) else None


#: The defaults of the functions' signatures: a case with a default value leaves the argument out.
INIT_DEFAULTS = {"gain": 1.0, "nonlinearity": "relu", "a": 0.0, "mode": "fan_in"}


def _given(**options) -> dict:
    return {k: v for k, v in options.items() if v != INIT_DEFAULTS[k]}


def _init_problem(fans: Callable, xavier_std: Callable, kaiming_std: Callable, case: InitCase, forbidden):
    check, params = "check_init_std", case.describe()
    (fan_in, fan_out), xavier, kaiming = reference_stds(case)
    got = call_student(check, case.name, params, forbidden, fans, case.shape)
    if not isinstance(got, (tuple, list)) or len(got) != 2 or tuple(got) != (fan_in, fan_out):
        return f"fan_in_and_fan_out: expected ({fan_in}, {fan_out}) as torch.nn.init computes them, got {got!r}"
    got = _number(call_student(check, case.name, params, forbidden, xavier_std, case.shape, **_given(gain=case.gain)))
    if got is None or not math.isclose(got, xavier, rel_tol=1e-6):
        return f"xavier_std: expected gain * sqrt(2 / (fan_in + fan_out)) = {xavier:.6g}, got {got!r}"
    got = _number(call_student(check, case.name, params, forbidden, kaiming_std, case.shape,
                               **_given(nonlinearity=case.nonlinearity, a=case.a, mode=case.mode)))
    if got is None or not math.isclose(got, kaiming, rel_tol=1e-6):
        return (f"kaiming_std: expected calculate_gain({case.nonlinearity!r}) / sqrt({case.mode}) = {kaiming:.6g}, "
                f"got {got!r}")
    return None


@sandbox_ready
def check_init_std(fan_in_and_fan_out: Callable, xavier_std: Callable, kaiming_std: Callable,
                   cases: Sequence[InitCase] = INIT_CASES, forbidden: Sequence[str] = ()) -> None:
    """``fan_in_and_fan_out(shape)``, ``xavier_std(shape, gain)``, ``kaiming_std(shape, nonlinearity, a, mode)``
    against ``torch.nn.init``'s fans and ``calculate_gain``."""
    for case in each_case("check_init_std", cases):
        problem = _init_problem(fan_in_and_fan_out, xavier_std, kaiming_std, case, forbidden)
        refuse("check_init_std", case.name, case.describe(), problem)


#: Widths of the deep stacks: every layer narrows by 4/3, so that fan_in and fan_out always differ.
DEEP_WIDTHS = (512, 384, 288, 216, 162, 122, 92, 69, 52, 39)


def _second_moments(std_of: Callable, activation: Callable, seed: int) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(2000, DEEP_WIDTHS[0], generator=g, dtype=torch.float64)
    moments = [float((h ** 2).mean())]
    for fan_in, fan_out in zip(DEEP_WIDTHS, DEEP_WIDTHS[1:]):
        std = std_of((fan_out, fan_in))
        w = torch.randn(fan_out, fan_in, generator=g, dtype=torch.float64) * std
        h = activation(h @ w.T)
        moments.append(float((h ** 2).mean()))
    return moments


@sandbox_ready
def check_deep_stack(xavier_std: Callable, kaiming_std: Callable, forbidden: Sequence[str] = (), seed: int = 0) -> None:
    """With the student's standard deviations, the activations' mean square after each of 9 narrowing layers
    stays within a factor 2 of what torch.nn.init's std gives: ReLU with Kaiming (fan_in), tanh with Xavier (gain 5/3) — the
    variance argument. The same stacks with torch's own ``kaiming_normal_`` / ``xavier_normal_`` are the band's reference."""
    check = "check_deep_stack"
    stacks = (("ReLU, kaiming_std(shape, 'relu', mode='fan_in')", torch.relu,
               lambda s: kaiming_std(s, nonlinearity="relu", a=0.0, mode="fan_in")),
              ("tanh, xavier_std(shape, gain=5/3)", torch.tanh, lambda s: xavier_std(s, gain=5 / 3)))
    for name, act, std_of in stacks:
        params = f"x (2000, 512) N(0,1), widths {DEEP_WIDTHS}, normal weights, float64, seed={seed}"
        ref = _second_moments(lambda s: reference_std(s, name), act, seed)
        got = _student_moments(check, name, params, forbidden, std_of, act, seed)
        if isinstance(got, str):
            raise fail(check, name, params, got)
        ratio = [m / r for m, r in zip(got, ref)]
        if not all(0.5 < q < 2.0 for q in ratio):
            layer = next(k for k, q in enumerate(ratio) if not 0.5 < q < 2.0)
            raise fail(check, name, params, f"after layer {layer} the activations' mean square is {got[layer]:.4g}, "
                       f"with torch.nn.init's std {ref[layer]:.4g} (ratio {ratio[layer]:.3g}, 0.5 to 2 allowed): "
                       f"your std makes the signal {'explode' if ratio[layer] > 1 else 'vanish'}")
    passed(check, len(stacks))


def reference_std(shape: tuple[int, int], stack: str) -> float:
    """``torch.nn.init``'s own std for ``shape``: Kaiming fan_in for the ReLU stack, Xavier gain 5/3 for tanh."""
    w = torch.empty(shape, dtype=torch.float64)
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
    if stack.startswith("ReLU"):
        return nn.init.calculate_gain("relu") / math.sqrt(fan_in)
    return nn.init.calculate_gain("tanh") * math.sqrt(2.0 / (fan_in + fan_out))


def _student_moments(check, name, params, forbidden, std_of, act, seed) -> list[float] | str:
    stds = {}
    for fan_in, fan_out in zip(DEEP_WIDTHS, DEEP_WIDTHS[1:]):
        value = _number(call_student(check, name, params, forbidden, std_of, (fan_out, fan_in)))
        if value is None or not value > 0:
            return f"expected a positive std for shape {(fan_out, fan_in)}, got {value!r}"
        stds[(fan_out, fan_in)] = value
    return _second_moments(lambda s: stds[s], act, seed)


# ----------------------------------------------------------------------------------------------
# Label smoothing
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SmoothingCase:
    """Logits ``(N, K)`` = ``scale``·N(0, 1), random targets, smoothing ``epsilon``."""

    name: str
    batch: int
    classes: int
    epsilon: float
    scale: float = 1.0
    seed: int = 0

    def describe(self, dtype: torch.dtype) -> str:
        return (f"logits ({self.batch}, {self.classes}) = {self.scale}*N(0,1), targets seeded, "
                f"epsilon={self.epsilon}, {dtype}, seed={self.seed}")


SMOOTHING_CASES = (
    SmoothingCase("10 classes, epsilon 0.1", 6, 10, 0.1),
    SmoothingCase("3 classes, epsilon 0.3", 4, 3, 0.3, seed=1),
    SmoothingCase("no smoothing", 5, 4, 0.0, seed=2),
)


@sandbox_ready
def check_smoothed_cross_entropy(smoothed_cross_entropy: Callable, cases: Sequence[SmoothingCase] = SMOOTHING_CASES,
                                 dtype=torch.float32, forbidden: Sequence[str] = ()) -> None:
    """``smoothed_cross_entropy(logits, targets, epsilon) -> 0-d mean loss`` against
    ``F.cross_entropy(logits, targets, label_smoothing=epsilon)``."""
    check = "check_smoothed_cross_entropy"
    for case in each_case(check, cases):
        logits = case.scale * torch.randn(case.batch, case.classes, generator=torch.Generator().manual_seed(case.seed),
                                          dtype=torch.float64)
        targets = torch.randint(case.classes, (case.batch,), generator=torch.Generator().manual_seed(case.seed + 7))
        expected = F.cross_entropy(logits, targets, label_smoothing=case.epsilon).to(dtype)
        params = case.describe(dtype)
        got = call_student(check, case.name, params, forbidden, smoothed_cross_entropy, logits.to(dtype),
                           targets.clone(), case.epsilon)
        problem = describe_difference(got, expected, "loss")
        refuse(check, case.name, params, problem)
