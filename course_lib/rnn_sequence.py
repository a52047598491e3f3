"""Unrolling a recurrent cell over a sequence; deep (stacked) and bidirectional RNNs.

Unrolled in time, one cell applied ``T`` times with shared weights (lecture 3, HSE)::

    x_1      x_2      x_3            x_T
     │        │        │              │
    [A] ──▶  [A] ──▶  [A] ──▶ ... ──▶ [A] ──▶ h_T        (many-to-one: classify from h_T)
     │        │        │              │
    h_1      h_2      h_3            h_T                  (many-to-many: one output per step)

* a **deep** RNN feeds the sequence of ``h_t`` of layer ``l`` as the input sequence of layer ``l+1``;
* a **bidirectional** RNN runs a second cell from ``x_T`` back to ``x_1`` and concatenates both
  hidden states at every step, so ``h_t`` sees the past and the future.

:class:`RNN` reproduces ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (same shapes, same outputs once the
weights are copied with :func:`from_torch`), built from the lecture's cells in :mod:`course_lib.rnn`.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from course_lib.rnn import (GRUCell, LSTMCell, RNNCell, gru_cell_from_weights, lstm_cell_from_weights,
                            rnn_cell_from_weights)

CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


def hidden_of(state):
    """The hidden vector ``h`` of a cell's state (the LSTM's state is the pair ``(h, C)``)."""
    return state[0] if isinstance(state, tuple) else state


def unroll(cell: nn.Module, inputs: torch.Tensor, state=None, reverse: bool = False):
    """Apply ``cell`` along time: ``state_t = cell(x_t, state_{t-1})``.

    Args:
        cell: an :class:`~course_lib.rnn.RNNCell`, ``LSTMCell`` or ``GRUCell`` (or torch's cells).
        inputs: ``(T, N, I)``, time first as in ``torch.nn.RNN``.
        state: the initial state (``(N, H)``, or ``(h, C)`` for an LSTM), ``None`` for zeros.
        reverse: run from ``t = T`` down to ``1`` (the backward half of a bidirectional RNN).

    Returns:
        ``outputs`` ``(T, N, H)`` — every ``h_t`` in the order of ``inputs`` (many-to-many) — and the
        final state (its ``h`` is the many-to-one summary).
    """
    if inputs.dim() != 3:
        raise ValueError(f"inputs must be (T, N, I), got shape {tuple(inputs.shape)}")
    steps = range(inputs.shape[0] - 1, -1, -1) if reverse else range(inputs.shape[0])
    outputs = [None] * inputs.shape[0]
    for t in steps:
        state = cell(inputs[t], state)
        outputs[t] = hidden_of(state)
    return torch.stack(outputs), state


class RNN(nn.Module):
    """A deep and/or bidirectional RNN made of the lecture's cells, with ``torch.nn.RNN``'s interface.

    Args:
        mode: ``"rnn"`` (tanh), ``"lstm"`` or ``"gru"``.
        input_size, hidden_size, num_layers, bidirectional, batch_first: as in ``torch.nn.RNN``.
        reset_after: GRU variant (``True`` = cuDNN/torch, ``False`` = the lecture's formula).

    Shapes (``D = 2`` if bidirectional else 1): input ``(T, N, I)`` (``(N, T, I)`` if batch_first)
    → output ``(T, N, D*H)`` and ``h_n`` ``(num_layers*D, N, H)`` (for an LSTM ``(h_n, c_n)``).
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, batch_first: bool = False, reset_after: bool = True):
        super().__init__()
        if mode not in CELLS:
            raise ValueError(f"mode must be one of {sorted(CELLS)}, got {mode!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.mode, self.hidden_size, self.num_layers = mode, hidden_size, num_layers
        self.bidirectional, self.batch_first = bidirectional, batch_first
        D = 2 if bidirectional else 1
        extra = {"reset_after": reset_after} if mode == "gru" else {}
        self.layers = nn.ModuleList(
            nn.ModuleList(CELLS[mode](input_size if layer == 0 else D * hidden_size, hidden_size, **extra)
                          for _ in range(D))
            for layer in range(num_layers))

    def forward(self, inputs: torch.Tensor, state=None):
        """``inputs`` ``(T, N, I)``; ``state`` as torch's ``h_0`` (or ``(h_0, c_0)``), or ``None``."""
        x = inputs.transpose(0, 1) if self.batch_first else inputs  # (T, N, I)
        initial = self._split_state(state)
        finals = []
        for layer, cells in enumerate(self.layers):
            outs = []
            for direction, cell in enumerate(cells):
                out, last = unroll(cell, x, initial[layer * len(cells) + direction], reverse=direction == 1)
                outs.append(out)
                finals.append(last)
            x = torch.cat(outs, dim=2)  # (T, N, D*H): the next layer's input sequence
        output = x.transpose(0, 1) if self.batch_first else x
        if self.mode == "lstm":
            return output, (torch.stack([h for h, _ in finals]), torch.stack([c for _, c in finals]))
        return output, torch.stack(finals)  # (num_layers*D, N, H)

    def _split_state(self, state):
        count = self.num_layers * (2 if self.bidirectional else 1)
        if state is None:
            return [None] * count
        if self.mode == "lstm":
            return list(zip(state[0].unbind(0), state[1].unbind(0)))
        return list(state.unbind(0))


def from_torch(module: nn.RNN | nn.LSTM | nn.GRU, reset_after: bool = True) -> RNN:
    """An :class:`RNN` of the lecture's cells holding the weights of torch's ``module``.

    torch names the tensors of layer ``l`` ``weight_ih_l{l}``, ``weight_hh_l{l}``, ``bias_ih_l{l}``,
    ``bias_hh_l{l}``, with the suffix ``_reverse`` for the backward direction.
    """
    if isinstance(module, nn.LSTM):
        mode, load = "lstm", lstm_cell_from_weights
    elif isinstance(module, nn.GRU):
        mode, load = "gru", partial(gru_cell_from_weights, reset_after=reset_after)
    elif isinstance(module, nn.RNN) and module.nonlinearity == "tanh":
        mode, load = "rnn", rnn_cell_from_weights
    else:
        raise ValueError(f"expected nn.RNN (tanh), nn.LSTM or nn.GRU, got {module!r}")
    if getattr(module, "proj_size", 0):
        raise ValueError("LSTMs with proj_size > 0 are not supported")
    ours = RNN(mode, module.input_size, module.hidden_size, module.num_layers, module.bidirectional,
               module.batch_first, reset_after=reset_after)
    for layer, cells in enumerate(ours.layers):
        for direction in range(len(cells)):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            tensors = [getattr(module, f"{name}{suffix}", None)
                       for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            cells[direction] = load(*tensors)
    return ours
