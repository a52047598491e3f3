"""Recurrent cells from the lecture's equations: vanilla RNN, LSTM and GRU (two GRU variants).

A recurrent cell maps the input ``x_t`` and the previous state to the next state with the SAME
weights at every step, so the number of parameters does not depend on the sequence length
(lecture 3, HSE, "Рекуррентные сети"):

* RNN:  ``h_t = tanh(W_xh x_t + W_hh h_{t-1} + b)``
* LSTM (Hochreiter & Schmidhuber, 1997; notation of C. Olah's "Understanding LSTMs")::

      f_t = σ(W_f·[h_{t-1}, x_t] + b_f)      i_t = σ(W_i·[h_{t-1}, x_t] + b_i)
      C̃_t = tanh(W_C·[h_{t-1}, x_t] + b_C)   C_t = f_t * C_{t-1} + i_t * C̃_t
      o_t = σ(W_o·[h_{t-1}, x_t] + b_o)      h_t = o_t * tanh(C_t)

* GRU (Cho et al., 2014)::

      z_t = σ(W_z·[h_{t-1}, x_t] + b_z)      r_t = σ(W_r·[h_{t-1}, x_t] + b_r)
      h̃_t = tanh(W·[r_t * h_{t-1}, x_t] + b)                  (lecture: reset BEFORE the product)
      h_t = (1 - z_t) * h_{t-1} + z_t * h̃_t

  cuDNN, and therefore ``torch.nn.GRU``, resets AFTER the product ("в cuDNN другой GRU!"):
  ``h̃_t = tanh(W_x x_t + b + r_t * (W_h h_{t-1} + b_hn))``. :class:`GRUCell` implements both
  (``reset_after``); only ``reset_after=True`` can reproduce torch.

``[h, x]`` is the concatenation; ``W·[h, x] = W[:, :H] h + W[:, H:] x``. The ``*_from_torch``
functions copy torch's weights into these cells. torch stores the gates stacked in the rows of
``weight_ih`` ``(G*H, I)`` and ``weight_hh`` ``(G*H, H)`` in the order (i, f, g, o) for the LSTM
(``g`` is C̃) and (r, z, n) for the GRU (``n`` is h̃), with two biases ``b_ih`` and ``b_hh``. torch also swaps the roles in the GRU's last
line, ``h' = (1 - z) * n + z * h``: its ``z`` is the lecture's ``1 - z_t`` (σ(-a) = 1 - σ(a)).
"""
from __future__ import annotations

import torch
from torch import nn


class RNNCell(nn.Module):
    """Vanilla (Elman) cell: ``h_t = tanh(W_xh x_t + W_hh h_{t-1} + b)``.

    Args:
        input_size: ``I``, features of ``x_t``.
        hidden_size: ``H``, features of ``h_t``.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.W_xh = nn.Linear(input_size, hidden_size)  # holds b
        self.W_hh = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(N, I)``; ``h``: ``(N, H)`` or ``None`` for zeros. Returns ``h_t`` ``(N, H)``."""
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        return torch.tanh(self.W_xh(x) + self.W_hh(h))


class LSTMCell(nn.Module):
    """LSTM cell with the lecture's four gates, each a linear layer on ``[h_{t-1}, x_t]``.

    The state is the pair ``(h_t, C_t)``; the memory ``C_t`` passes through unchanged while the
    forget gate ``f_t`` is open (≈ 1) and the input gate ``i_t`` closed (≈ 0).
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        concat = hidden_size + input_size
        self.W_f, self.W_i, self.W_C, self.W_o = (nn.Linear(concat, hidden_size) for _ in range(4))

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        """``x``: ``(N, I)``; ``state``: ``(h, C)`` each ``(N, H)``, or ``None``. Returns ``(h_t, C_t)``."""
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        h, C = state
        hx = torch.cat([h, x], dim=1)  # (N, H + I)
        f = torch.sigmoid(self.W_f(hx))
        i = torch.sigmoid(self.W_i(hx))
        C_tilde = torch.tanh(self.W_C(hx))
        C = f * C + i * C_tilde
        o = torch.sigmoid(self.W_o(hx))
        return o * torch.tanh(C), C


class GRUCell(nn.Module):
    """GRU cell; ``reset_after=False`` is the lecture's formula, ``True`` is cuDNN's / torch's.

    Lecture:  ``h̃_t = tanh(W·[r_t * h_{t-1}, x_t] + b)``
    cuDNN:    ``h̃_t = tanh(W[:, H:] x_t + b + r_t * (W[:, :H] h_{t-1} + b_hn))``

    The two agree only when ``r_t`` is 0 or 1 (and ``b_hn`` = 0); in general ``W_h (r*h) ≠ r * (W_h h)``.
    """

    def __init__(self, input_size: int, hidden_size: int, reset_after: bool = False):
        super().__init__()
        self.hidden_size = hidden_size
        self.reset_after = reset_after
        concat = hidden_size + input_size
        self.W_z, self.W_r, self.W = (nn.Linear(concat, hidden_size) for _ in range(3))
        # cuDNN keeps the hidden part's bias inside the reset product, so it needs its own vector
        self.b_hn = nn.Parameter(torch.zeros(hidden_size)) if reset_after else None

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(N, I)``; ``h``: ``(N, H)`` or ``None`` for zeros. Returns ``h_t`` ``(N, H)``."""
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        H = self.hidden_size
        hx = torch.cat([h, x], dim=1)  # (N, H + I)
        z = torch.sigmoid(self.W_z(hx))
        r = torch.sigmoid(self.W_r(hx))
        if self.reset_after:
            W_h, W_x = self.W.weight[:, :H], self.W.weight[:, H:]
            h_tilde = torch.tanh(x @ W_x.T + self.W.bias + r * (h @ W_h.T + self.b_hn))
        else:
            h_tilde = torch.tanh(self.W(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * h_tilde


# ----------------------------------------------------------------------------------------------
# torch's weights → the lecture's cells
# ----------------------------------------------------------------------------------------------

def _load_linear(linear: nn.Linear, W_h: torch.Tensor, W_x: torch.Tensor, bias: torch.Tensor) -> None:
    """Set ``linear`` (acting on ``[h, x]``) to ``W_h h + W_x x + bias``."""
    with torch.no_grad():
        linear.weight.copy_(torch.cat([W_h, W_x], dim=1))  # (H, H + I)
        linear.bias.copy_(bias)


def _check_weights(weight_ih, weight_hh, gates: int) -> tuple[int, int]:
    GH, I = weight_ih.shape
    if GH % gates or weight_hh.shape != (GH, GH // gates):
        raise ValueError(f"expected weight_ih ({gates}*H, I) and weight_hh ({gates}*H, H), got "
                         f"{tuple(weight_ih.shape)} and {tuple(weight_hh.shape)}")
    return I, GH // gates


def _biases(bias_ih, bias_hh, weight_hh):
    zeros = torch.zeros(weight_hh.shape[0], dtype=weight_hh.dtype, device=weight_hh.device)
    return (zeros if bias_ih is None else bias_ih), (zeros if bias_hh is None else bias_hh)


def rnn_cell_from_weights(weight_ih, weight_hh, bias_ih=None, bias_hh=None) -> RNNCell:
    """An :class:`RNNCell` computing what torch's tanh RNN computes with these tensors.

    torch: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``, so ``W_xh = W_ih`` and ``b = b_ih + b_hh``.
    """
    I, H = _check_weights(weight_ih, weight_hh, 1)
    bias_ih, bias_hh = _biases(bias_ih, bias_hh, weight_hh)
    cell = RNNCell(I, H).to(weight_ih)
    with torch.no_grad():
        cell.W_xh.weight.copy_(weight_ih)
        cell.W_xh.bias.copy_(bias_ih + bias_hh)
        cell.W_hh.weight.copy_(weight_hh)
    return cell


def lstm_cell_from_weights(weight_ih, weight_hh, bias_ih=None, bias_hh=None) -> LSTMCell:
    """An :class:`LSTMCell` equal to torch's LSTM with these tensors (gate rows ordered i, f, g, o)."""
    I, H = _check_weights(weight_ih, weight_hh, 4)
    bias_ih, bias_hh = _biases(bias_ih, bias_hh, weight_hh)
    cell = LSTMCell(I, H).to(weight_ih)
    W_x, W_h, b = weight_ih.chunk(4), weight_hh.chunk(4), (bias_ih + bias_hh).chunk(4)
    for k, linear in enumerate((cell.W_i, cell.W_f, cell.W_C, cell.W_o)):  # torch's order
        _load_linear(linear, W_h[k], W_x[k], b[k])
    return cell


def gru_cell_from_weights(weight_ih, weight_hh, bias_ih=None, bias_hh=None,
                          reset_after: bool = True) -> GRUCell:
    """A :class:`GRUCell` with torch's GRU weights (gate rows ordered r, z, n; z negated).

    With ``reset_after=True`` the cell equals torch's. With ``False`` it is the lecture's formula
    with the same weights (``b = b_in + b_hn``), which differs from torch's: that is the point.
    """
    I, H = _check_weights(weight_ih, weight_hh, 3)
    bias_ih, bias_hh = _biases(bias_ih, bias_hh, weight_hh)
    cell = GRUCell(I, H, reset_after=reset_after).to(weight_ih)
    W_x, W_h = weight_ih.chunk(3), weight_hh.chunk(3)
    b_i, b_h = bias_ih.chunk(3), bias_hh.chunk(3)
    _load_linear(cell.W_r, W_h[0], W_x[0], b_i[0] + b_h[0])
    # torch: h' = (1 - z) * n + z * h, the lecture: h_t = (1 - z_t) * h_{t-1} + z_t * h̃_t, so the
    # lecture's z_t is torch's 1 - z = σ(-(...)): the update gate's weights change sign
    _load_linear(cell.W_z, -W_h[1], -W_x[1], -(b_i[1] + b_h[1]))
    if reset_after:
        _load_linear(cell.W, W_h[2], W_x[2], b_i[2])
        with torch.no_grad():
            cell.b_hn.copy_(b_h[2])
    else:
        _load_linear(cell.W, W_h[2], W_x[2], b_i[2] + b_h[2])
    return cell


def cell_from_torch(cell: nn.RNNCell | nn.LSTMCell | nn.GRUCell, reset_after: bool = True):
    """The lecture's cell with the weights of ``torch.nn.RNNCell``, ``LSTMCell`` or ``GRUCell``."""
    tensors = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    if isinstance(cell, nn.RNNCell):
        if cell.nonlinearity != "tanh":
            raise ValueError(f"only tanh RNN cells are supported, got nonlinearity={cell.nonlinearity!r}")
        return rnn_cell_from_weights(*tensors)
    if isinstance(cell, nn.LSTMCell):
        return lstm_cell_from_weights(*tensors)
    if isinstance(cell, nn.GRUCell):
        return gru_cell_from_weights(*tensors, reset_after=reset_after)
    raise ValueError(f"expected nn.RNNCell, nn.LSTMCell or nn.GRUCell, got {type(cell).__name__}")
