"""Checks for assignment 6 (recurrent networks), against PyTorch's own modules.

* cells: the student's ``rnn_cell``, ``lstm_cell``, ``gru_cell`` (the lecture's parameters: one
  matrix per gate acting on ``[h, x]``) against ``torch.nn.RNNCell`` / ``LSTMCell`` / ``GRUCell``
  into which the check copies the same weights in torch's layout — gate rows (i, f, g, o) for the
  LSTM and (r, z, n) for the GRU, cuDNN's *reset-after* candidate, torch's ``z`` = the lecture's ``1 - z``;
* backpropagation through time of a tanh RNN against autograd through the unrolled ``nn.RNNCell``
  (float64);
* clipping by the global norm against ``torch.nn.utils.clip_grad_norm_``;
* the trained row-by-row classifier: :mod:`course_lib.grading.sequence_checks`.

Like :mod:`course_lib.grading.conv_checks`, each check runs seeded cases, raises
:class:`~course_lib.grading.compare.CheckFailure` naming the case, its inputs and the difference,
and prints one line when every case passes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from course_lib.grading.compare import call_student, describe_difference, each_case, refuse, sandbox_ready

#: What assignment 6 asks students to write themselves: torch's recurrent modules (the cells'
#: reference), autograd (the BPTT reference) and torch's clipping (the clipping reference).
RNN_FROM_SCRATCH = (
    "torch.nn.RNNCell.forward", "torch.nn.LSTMCell.forward", "torch.nn.GRUCell.forward",
    "torch.nn.RNN.forward", "torch.nn.LSTM.forward", "torch.nn.GRU.forward",
    "torch.autograd.grad", "torch.autograd.backward", "torch.Tensor.backward",
    "torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad.clip_grad_norm_", "torch.nn.utils.clip_grad_norm",
    "torch.nn.utils.clip_grads_with_norm_", "torch.nn.utils.get_total_norm",
)

LSTM_GATES = ("i", "f", "C", "o")  # torch's row order (i, f, g, o); g is the candidate C̃
GRU_PARAMS = ("W_z", "b_z", "W_r", "b_r", "W_xn", "b_xn", "W_hn", "b_hn")


@dataclass(frozen=True)
class CellCase:
    """A seeded step of a recurrent cell: input ``(N, I)``, state ``(N, H)``, weights ``scale``·N(0, 1)."""

    name: str
    batch: int
    input_size: int
    hidden_size: int
    scale: float = 0.5
    seed: int = 0

    def describe(self, dtype: torch.dtype, device: str) -> str:
        return (f"x ({self.batch}, {self.input_size}), h ({self.batch}, {self.hidden_size}), weights "
                f"{self.scale}*N(0,1), {dtype}, device={device}, seed={self.seed}")

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


def _randn(g, *shape, scale=1.0):
    return scale * torch.randn(*shape, generator=g, dtype=torch.float64)


def rnn_params(case: CellCase) -> dict[str, torch.Tensor]:
    """``W_xh (H, I)``, ``W_hh (H, H)``, ``b (H,)`` in float64."""
    g, I, H, s = case.generator(), case.input_size, case.hidden_size, case.scale
    return {"W_xh": _randn(g, H, I, scale=s), "W_hh": _randn(g, H, H, scale=s), "b": _randn(g, H, scale=s)}


def lstm_params(case: CellCase) -> dict[str, torch.Tensor]:
    """``W_f, W_i, W_C, W_o`` ``(H, H + I)`` acting on ``[h, x]`` and ``b_f, b_i, b_C, b_o`` ``(H,)``."""
    g, I, H, s = case.generator(), case.input_size, case.hidden_size, case.scale
    params = {}
    for gate in ("f", "i", "C", "o"):
        params[f"W_{gate}"], params[f"b_{gate}"] = _randn(g, H, H + I, scale=s), _randn(g, H, scale=s)
    return params


def gru_params(case: CellCase) -> dict[str, torch.Tensor]:
    """``W_z, W_r (H, H + I)`` on ``[h, x]``, ``b_z, b_r``; candidate ``W_xn (H, I), b_xn, W_hn (H, H), b_hn``."""
    g, I, H, s = case.generator(), case.input_size, case.hidden_size, case.scale
    shapes = {"W_z": (H, H + I), "b_z": (H,), "W_r": (H, H + I), "b_r": (H,), "W_xn": (H, I), "b_xn": (H,),
              "W_hn": (H, H), "b_hn": (H,)}
    return {name: _randn(g, *shapes[name], scale=s) for name in GRU_PARAMS}


def _state(case: CellCase, count: int):
    g = torch.Generator().manual_seed(case.seed + 1000)
    x = torch.randn(case.batch, case.input_size, generator=g, dtype=torch.float64)
    return (x, *(torch.randn(case.batch, case.hidden_size, generator=g, dtype=torch.float64) for _ in range(count)))


def torch_rnn_cell(p: dict[str, torch.Tensor]) -> nn.RNNCell:
    """``nn.RNNCell`` computing ``tanh(W_xh x + W_hh h + b)`` (``b`` in ``bias_ih``, ``bias_hh = 0``)."""
    H, I = p["W_xh"].shape
    cell = nn.RNNCell(I, H).to(p["W_xh"])
    with torch.no_grad():
        cell.weight_ih.copy_(p["W_xh"]), cell.weight_hh.copy_(p["W_hh"])
        cell.bias_ih.copy_(p["b"]), cell.bias_hh.zero_()
    return cell


def torch_lstm_cell(p: dict[str, torch.Tensor]) -> nn.LSTMCell:
    """``nn.LSTMCell`` with the lecture's gates stacked in torch's row order (i, f, g, o)."""
    H = p["b_f"].shape[0]
    I = p["W_f"].shape[1] - H
    cell = nn.LSTMCell(I, H).to(p["W_f"])
    with torch.no_grad():
        cell.weight_hh.copy_(torch.cat([p[f"W_{k}"][:, :H] for k in LSTM_GATES]))
        cell.weight_ih.copy_(torch.cat([p[f"W_{k}"][:, H:] for k in LSTM_GATES]))
        cell.bias_ih.copy_(torch.cat([p[f"b_{k}"] for k in LSTM_GATES])), cell.bias_hh.zero_()
    return cell


def torch_gru_cell(p: dict[str, torch.Tensor]) -> nn.GRUCell:
    """``nn.GRUCell`` (rows r, z, n; reset after the product) with the lecture's parameters.

    torch: ``h' = (1 - z) * n + z * h``; the lecture: ``h_t = (1 - z_t) * h + z_t * h̃``, so torch's
    update gate is the lecture's with its weights negated (``σ(-a) = 1 - σ(a)``).
    """
    H = p["b_z"].shape[0]
    I = p["W_xn"].shape[1]
    cell = nn.GRUCell(I, H).to(p["W_xn"])
    with torch.no_grad():
        cell.weight_hh.copy_(torch.cat([p["W_r"][:, :H], -p["W_z"][:, :H], p["W_hn"]]))
        cell.weight_ih.copy_(torch.cat([p["W_r"][:, H:], -p["W_z"][:, H:], p["W_xn"]]))
        cell.bias_ih.copy_(torch.cat([p["b_r"], -p["b_z"], p["b_xn"]]))
        cell.bias_hh.copy_(torch.cat([torch.zeros_like(p["b_r"]), torch.zeros_like(p["b_z"]), p["b_hn"]]))
    return cell


CELL_CASES = (
    CellCase("batch 3, 4 inputs, 5 hidden", 3, 4, 5),
    CellCase("batch 1, 2 inputs, 3 hidden", 1, 2, 3, seed=1),
    CellCase("batch 4, 6 inputs, 2 hidden, large weights", 4, 6, 2, scale=1.5, seed=2),
)


def _to(tensors, dtype, device):
    if isinstance(tensors, dict):
        return {k: v.to(dtype=dtype, device=device) for k, v in tensors.items()}
    return tuple(t.to(dtype=dtype, device=device) for t in tensors)


@sandbox_ready
def check_rnn_cell(rnn_cell: Callable, cases: Sequence[CellCase] = CELL_CASES, dtype=torch.float32,
                   device: str = "cpu", forbidden: Sequence[str] = ()) -> None:
    """``rnn_cell(x, h, params) -> h_next`` against ``nn.RNNCell`` with the same weights."""
    check = "check_rnn_cell"
    for case in each_case(check, cases):
        p, (x, h) = rnn_params(case), _state(case, 1)
        params = case.describe(dtype, device)
        with torch.no_grad():
            expected = torch_rnn_cell(p)(x, h).to(device=device, dtype=dtype)
        got = call_student(check, case.name, params, forbidden, rnn_cell, *_to((x, h), dtype, device),
                           _to(p, dtype, device))
        problem = describe_difference(got, expected, "h_next")
        refuse(check, case.name, params, problem)


@sandbox_ready
def check_lstm_cell(lstm_cell: Callable, cases: Sequence[CellCase] = CELL_CASES, dtype=torch.float32,
                    device: str = "cpu", forbidden: Sequence[str] = ()) -> None:
    """``lstm_cell(x, (h, C), params) -> (h_next, C_next)`` against ``nn.LSTMCell`` (rows i, f, g, o)."""
    check = "check_lstm_cell"
    for case in each_case(check, cases):
        p, (x, h, c) = lstm_params(case), _state(case, 2)
        params = case.describe(dtype, device) + ", C like h"
        with torch.no_grad():
            h_ref, c_ref = (t.to(device=device, dtype=dtype) for t in torch_lstm_cell(p)(x, (h, c)))
        x_, h_, c_ = _to((x, h, c), dtype, device)
        got = call_student(check, case.name, params, forbidden, lstm_cell, x_, (h_, c_), _to(p, dtype, device))
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            problem = f"expected a pair (h_next, C_next), got {type(got).__name__}"
        else:
            problem = describe_difference(got[1], c_ref, "C_next") or describe_difference(got[0], h_ref, "h_next")
        refuse(check, case.name, params, problem)


@sandbox_ready
def check_gru_cell(gru_cell: Callable, cases: Sequence[CellCase] = CELL_CASES, dtype=torch.float32,
                   device: str = "cpu", forbidden: Sequence[str] = ()) -> None:
    """``gru_cell(x, h, params) -> h_next`` against ``nn.GRUCell`` (cuDNN's reset-after candidate)."""
    check = "check_gru_cell"
    for case in each_case(check, cases):
        p, (x, h) = gru_params(case), _state(case, 1)
        params = case.describe(dtype, device)
        with torch.no_grad():
            expected = torch_gru_cell(p)(x, h).to(device=device, dtype=dtype)
        got = call_student(check, case.name, params, forbidden, gru_cell, *_to((x, h), dtype, device),
                           _to(p, dtype, device))
        problem = describe_difference(got, expected, "h_next")
        refuse(check, case.name, params, problem)


# ----------------------------------------------------------------------------------------------
# Backpropagation through time
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BPTTCase:
    """A tanh RNN over ``steps`` steps; the loss's gradient reaches every ``h_t`` (or only ``h_T``)."""

    name: str
    steps: int
    batch: int
    input_size: int
    hidden_size: int
    last_only: bool = False
    scale: float = 0.5
    seed: int = 0

    def describe(self) -> str:
        where = "only at h_T" if self.last_only else "at every h_t"
        return (f"T={self.steps}, xs ({self.steps}, {self.batch}, {self.input_size}), h0 ({self.batch}, "
                f"{self.hidden_size}), weights {self.scale}*N(0,1), grad_hs nonzero {where}, torch.float64, "
                f"seed={self.seed}")


BPTT_CASES = (
    BPTTCase("T=4, gradient at every step", 4, 2, 3, 4),
    BPTTCase("T=6, gradient only at the last step", 6, 3, 2, 3, last_only=True, seed=1),
    BPTTCase("T=1", 1, 2, 3, 2, seed=2),
)


@sandbox_ready
def check_rnn_backward(rnn_backward: Callable, cases: Sequence[BPTTCase] = BPTT_CASES, device: str = "cpu",
                       forbidden: Sequence[str] = ()) -> None:
    """``rnn_backward(grad_hs, xs, h0, params) -> (grad_W_xh, grad_W_hh, grad_b, grad_h0)`` against
    autograd through ``nn.RNNCell`` unrolled over the ``T`` steps, in float64.

    The loss is ``L = Σ_t <grad_hs[t], h_t>``, so ``grad_hs[t] = ∂L/∂h_t`` (direct part only).
    """
    check, dtype = "check_rnn_backward", torch.float64
    for case in each_case(check, cases):
        cell_case = CellCase(case.name, case.batch, case.input_size, case.hidden_size, case.scale, case.seed)
        p = rnn_params(cell_case)
        g = torch.Generator().manual_seed(case.seed + 2000)
        xs = torch.randn(case.steps, case.batch, case.input_size, generator=g, dtype=dtype)
        h0 = torch.randn(case.batch, case.hidden_size, generator=g, dtype=dtype)
        grad_hs = torch.randn(case.steps, case.batch, case.hidden_size, generator=g, dtype=dtype)
        if case.last_only:
            grad_hs[:-1] = 0
        cell = torch_rnn_cell(p)
        h = h0.clone().requires_grad_(True)
        states, state = [], h
        for x_t in xs:
            state = cell(x_t, state)
            states.append(state)
        refs = torch.autograd.grad(torch.stack(states), (cell.weight_ih, cell.weight_hh, cell.bias_ih, h), grad_hs)
        names = ("grad_W_xh", "grad_W_hh", "grad_b", "grad_h0")
        params = case.describe()
        got = call_student(check, case.name, params, forbidden, rnn_backward, *_to((grad_hs, xs, h0), dtype, device),
                           _to(p, dtype, device))
        if not isinstance(got, (tuple, list)) or len(got) != 4:
            problem = f"expected a tuple (grad_W_xh, grad_W_hh, grad_b, grad_h0), got {type(got).__name__}"
        else:
            problem = next((m for m in (describe_difference(v, r.to(device), n) for v, r, n in zip(got, refs, names))
                            if m), None)
        refuse(check, case.name, params, problem)


# ----------------------------------------------------------------------------------------------
# Clipping by the global norm
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClipCase:
    """Gradients of the given shapes, ``scale``·N(0, 1); ``none``: indices whose gradient is ``None``."""

    name: str
    shapes: tuple[tuple[int, ...], ...]
    max_norm: float
    scale: float = 1.0
    none: tuple[int, ...] = ()
    seed: int = 0

    def describe(self) -> str:
        return (f"gradients of shapes {list(self.shapes)}, {self.scale}*N(0,1)"
                + (f" (entries {list(self.none)} are None)" if self.none else "")
                + f", max_norm={self.max_norm}, torch.float32, seed={self.seed}")

    def grads(self) -> list[torch.Tensor | None]:
        g = torch.Generator().manual_seed(self.seed)
        return [None if k in self.none else self.scale * torch.randn(shape, generator=g)
                for k, shape in enumerate(self.shapes)]


CLIP_CASES = (
    ClipCase("three tensors, norm above max_norm", ((4, 3), (4,), (2, 4)), max_norm=1.0),
    ClipCase("three tensors, norm below max_norm (unchanged)", ((4, 3), (4,), (2, 4)), max_norm=100.0, seed=1),
    ClipCase("one tensor", ((5, 5),), max_norm=0.5, scale=3.0, seed=2),
)


@sandbox_ready
def check_clip_grad_norm(clip_grad_norm: Callable, cases: Sequence[ClipCase] = CLIP_CASES,
                         forbidden: Sequence[str] = ()) -> None:
    """``clip_grad_norm(grads, max_norm) -> (clipped_grads, total_norm)`` against ``torch.nn.utils.clip_grad_norm_``.

    ``grads`` is a list of tensors (or ``None``); the student returns a new list of the same length.
    The reference clips parameters holding the same gradients in place.
    """
    check = "check_clip_grad_norm"
    for case in each_case(check, cases):
        grads = case.grads()
        ref = [torch.zeros(shape, requires_grad=True) for shape in case.shapes]
        for p, g in zip(ref, grads):
            p.grad = None if g is None else g.clone()
        expected_norm = torch.nn.utils.clip_grad_norm_(ref, case.max_norm)
        params = case.describe()
        got = call_student(check, case.name, params, forbidden, clip_grad_norm, [None if g is None else g.clone()
                                                                                  for g in grads], case.max_norm)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            problem = f"expected a pair (clipped_grads, total_norm), got {type(got).__name__}"
        elif not isinstance(got[0], (tuple, list)) or len(got[0]) != len(grads):
            problem = f"clipped_grads: expected a list of {len(grads)} gradients, got {type(got[0]).__name__}"
        else:
            norm = got[1]
            if isinstance(norm, (float, int)) and not isinstance(norm, bool):
                norm = torch.tensor(float(norm), dtype=expected_norm.dtype)
            problem = describe_difference(norm, expected_norm, "total_norm")
            for k, (mine, r) in enumerate(zip(got[0], ref)):
                if problem:
                    break
                if r.grad is None:
                    problem = None if mine is None else f"gradient {k}: was None, expected None back"
                else:
                    problem = describe_difference(mine, r.grad, f"clipped gradient {k}")
        refuse(check, case.name, params, problem)
