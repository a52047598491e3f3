"""Convolution in any number of dimensions: 1-D signals, 2-D images, 3-D video and volumes.

The lecture: *"CNN is a model for data with spatial structure (an image is 2-D, a signal 1-D, a
video 3-D)"*. The formula of chapter 2 does not care how many spatial axes there are; for
:math:`d` of them, with stride :math:`s` and the input already padded,

.. math::
    y[n, o, \\mathbf i] = b[o] + \\sum_{c} \\sum_{\\mathbf k} w[o, c, \\mathbf k]\\;
                          x[n, c, s\\,\\mathbf i + \\mathbf k],
    \\qquad \\mathbf i, \\mathbf k \\in \\mathbb Z^d,

and a layer has :math:`C_{out}\\,C_{in}\\,k_1 \\cdots k_d + C_{out}` parameters. :func:`conv_nd`
computes it as a sum over the kernel's offsets: for each offset :math:`\\mathbf k`, one strided
slice of the input times the :math:`C_{out}\\times C_{in}` matrix :math:`w[:, :, \\mathbf k]`.
It matches ``F.conv1d``, ``F.conv2d`` and ``F.conv3d`` (``tests/test_conv_nd.py``).
"""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F


def _per_axis(value, d: int, name: str) -> tuple[int, ...]:
    values = (value,) * d if isinstance(value, int) else tuple(value)
    if len(values) != d:
        raise ValueError(f"{name}={value} must be an int or {d} ints, one per spatial axis")
    return values


def conv_nd(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
            stride=1, padding=0) -> torch.Tensor:
    """Cross-correlation over ``d = weight.dim() - 2`` spatial axes, as ``F.conv{d}d``.

    Args:
        input: ``(N, C_in, *size)``, e.g. ``(N, C, L)`` for signals, ``(N, C, T, H, W)`` for video.
        weight: ``(C_out, C_in, *kernel)``; bias: ``(C_out,)`` or None.
        stride, padding: an int or one per spatial axis (zero padding).

    Returns:
        ``(N, C_out, *out)`` with ``out = (size + 2·padding − kernel) // stride + 1`` per axis.
    """
    d = weight.dim() - 2
    if input.dim() != d + 2 or input.shape[1] != weight.shape[1]:
        raise ValueError(f"input {tuple(input.shape)} does not fit weight {tuple(weight.shape)}: "
                         f"expected (N, {weight.shape[1]}, {d} spatial sizes)")
    stride, padding = _per_axis(stride, d, "stride"), _per_axis(padding, d, "padding")
    x = F.pad(input, [p for p in reversed(padding) for _ in (0, 1)])  # F.pad lists the last axis first
    N, C_in, *size = x.shape
    C_out, _, *kernel = weight.shape
    out_size = [(n - k) // s + 1 for n, k, s in zip(size, kernel, stride)]
    out = x.new_zeros(N, C_out, *out_size)
    for offset in itertools.product(*(range(k) for k in kernel)):
        taps = tuple(slice(k, k + s * (m - 1) + 1, s) for k, s, m in zip(offset, stride, out_size))
        window = x[(slice(None), slice(None), *taps)]                       # (N, C_in, *out_size)
        out += torch.einsum("nc...,oc->no...", window, weight[(slice(None), slice(None), *offset)])
    if bias is not None:
        out += bias.view(1, C_out, *([1] * d))
    return out


def conv_nd_num_params(in_channels: int, out_channels: int, kernel_size: tuple[int, ...],
                       bias: bool = True) -> int:
    """Parameters of ``nn.Conv{d}d``: ``C_out · C_in · k_1 ⋯ k_d + C_out``."""
    return out_channels * in_channels * math.prod(kernel_size) + (out_channels if bias else 0)
