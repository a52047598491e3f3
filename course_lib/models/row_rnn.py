"""An image read as a sequence: each of the H rows is one time step of W features (many-to-one).

A 28×28 Fashion-MNIST image becomes ``x_1 … x_28`` with ``x_t ∈ R^28`` (row ``t``); a recurrent
network reads the rows top to bottom and the classifier looks only at the last hidden state
``h_28`` (of the last layer; for a bidirectional network both directions' last states).
"""
from __future__ import annotations

import torch
from torch import nn

RNN_TYPES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RowRNNClassifier(nn.Module):
    """``images (N, 1, H, W) → logits (N, num_classes)`` through an RNN over the rows.

    Args:
        mode: ``"rnn"``, ``"lstm"`` or ``"gru"`` (torch's cuDNN-backed layers).
        input_size: ``W``, features per row (28 for Fashion-MNIST).
        hidden_size, num_layers, bidirectional: of the recurrent layer.
        num_classes: outputs.
    """

    def __init__(self, mode: str = "lstm", input_size: int = 28, hidden_size: int = 128, num_layers: int = 1,
                 bidirectional: bool = False, num_classes: int = 10):
        super().__init__()
        if mode not in RNN_TYPES:
            raise ValueError(f"mode must be one of {sorted(RNN_TYPES)}, got {mode!r}")
        self.rnn = RNN_TYPES[mode](input_size, hidden_size, num_layers, batch_first=True,
                                   bidirectional=bidirectional)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"images must be (N, 1, H, W), got shape {tuple(images.shape)}")
        rows = images[:, 0]  # (N, T=H, W): row t is the input at step t
        _, h_n = self.rnn(rows)
        h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # the LSTM returns (h_n, c_n)
        D = 2 if self.rnn.bidirectional else 1
        last = h_n[-D:].transpose(0, 1).flatten(1)  # (N, D*H): the last layer, both directions
        return self.head(last)
