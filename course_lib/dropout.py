"""Dropout, and spatial dropout that drops whole feature maps.

Dropout (Srivastava et al., 2014) zeroes each activation with probability :math:`p` during
training and scales the survivors by :math:`1/(1-p)`, so that :math:`\\mathbb E[y] = x`; at test
time it is the identity.

In a convolutional layer neighbouring pixels of one feature map are strongly correlated: zeroing
single pixels hardly removes any information, because the next layer recovers it from the
neighbours. **Spatial dropout** (Tompson et al., 2015, *Efficient object localization using
convolutional networks*) therefore draws one Bernoulli variable per (image, channel) and zeroes
the *whole* map:

.. math::
    y[n, c, \\ldots] = \\frac{m_{nc}}{1 - p}\\, x[n, c, \\ldots], \\qquad m_{nc} \\sim \\mathrm{Bernoulli}(1 - p).

This is ``nn.Dropout2d`` (``nn.Dropout1d``/``nn.Dropout3d`` for signals and video); with the same
random seed :func:`spatial_dropout` draws exactly the same masks (``tests/test_dropout_maxout.py``).
"""
from __future__ import annotations

import torch


def spatial_dropout(input: torch.Tensor, p: float = 0.5, training: bool = True) -> torch.Tensor:
    """Zero whole channels of ``(N, C, *spatial)`` with probability ``p``, scale the rest by ``1/(1-p)``."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0:
        return input
    if p == 1:
        return torch.zeros_like(input)
    N, C, *spatial = input.shape
    keep = input.new_empty(N, C, *([1] * len(spatial))).bernoulli_(1 - p)  # one draw per map, (N, C, 1, ...)
    return input * keep.div_(1 - p)
