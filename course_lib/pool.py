"""Pooling: aggregate neighbouring activations, and send gradients back to where they came from.

Max-pooling (lecture 1, Nikolenko)

.. math::  x^{l+1}_{i,j} = \\max_{0 \\le a,b < k} z^{l}_{s i + a,\\; s j + b}

gives a little invariance to small shifts; its gradient goes only to the position of each maximum.
Average pooling spreads the gradient evenly over the window. Global pooling reduces each feature
map to one number (Lin et al., 2013, "Network in network"), replacing fully connected layers.

Built on :func:`course_lib.conv.im2col` / :func:`~course_lib.conv.col2im`, so the backward passes
read as "route the output gradient into the columns, then fold".
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.conv import IntPair, _pair, col2im, conv_output_size, im2col


def _windows(input: torch.Tensor, kernel_size, stride, padding, dilation, pad_value: float):
    """``(N, C, kH*kW, L)`` windows of every channel, padded with ``pad_value``."""
    N, C, H, W = input.shape
    (kH, kW), (ph, pw) = _pair(kernel_size, "kernel_size"), _pair(padding, "padding")
    if ph > kH // 2 or pw > kW // 2:
        raise ValueError(f"padding {padding} must be at most half the kernel size {kernel_size}")
    x = F.pad(input, (pw, pw, ph, ph), value=pad_value)
    cols = im2col(x, (kH, kW), dilation, 0, stride)  # (N, C*kH*kW, L)
    return cols.reshape(N, C, kH * kW, -1)


def _geometry(input, kernel_size, stride, padding, dilation):
    stride = kernel_size if stride is None else stride
    (kH, kW), (sh, sw) = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
    (ph, pw), (dh, dw) = _pair(padding, "padding"), _pair(dilation, "dilation")
    H, W = input.shape[-2:]
    H_out, W_out = conv_output_size(H, kH, sh, ph, dh), conv_output_size(W, kW, sw, pw, dw)
    return (kH, kW), (sh, sw), (ph, pw), (dh, dw), (H_out, W_out)


def max_pool2d(input: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None,
               padding: IntPair = 0, dilation: IntPair = 1, return_indices: bool = False):
    """Maximum over each window, as ``F.max_pool2d``.

    Args:
        input: ``(N, C, H, W)``.
        stride: defaults to ``kernel_size`` (non-overlapping windows).
        return_indices: also return, for every output, the flat index ``row*W + col`` of its
            maximum in the input plane (what ``F.max_unpool2d`` and the Zeiler–Fergus
            "switches" use).

    Returns:
        ``(N, C, H_out, W_out)``, and the int64 indices of the same shape if asked.
    """
    (kH, kW), (sh, sw), (ph, pw), (dh, dw), (H_out, W_out) = _geometry(input, kernel_size, stride, padding, dilation)
    N, C, H, W = input.shape
    windows = _windows(input, (kH, kW), (sh, sw), (ph, pw), (dh, dw), float("-inf"))
    values, arg = windows.max(dim=2)  # (N, C, L): the value and its offset a*kW + b in the window
    out = values.reshape(N, C, H_out, W_out)
    if not return_indices:
        return out
    a, b = arg // kW, arg % kW
    pos = torch.arange(H_out * W_out, device=input.device)
    rows = (pos // W_out) * sh - ph + a * dh
    cols = (pos % W_out) * sw - pw + b * dw
    return out, (rows * W + cols).reshape(N, C, H_out, W_out)


def max_pool2d_backward(grad_output: torch.Tensor, input: torch.Tensor, kernel_size: IntPair,
                        stride: IntPair | None = None, padding: IntPair = 0, dilation: IntPair = 1) -> torch.Tensor:
    """Gradient of :func:`max_pool2d`: each output's gradient goes to its window's maximum.

    ``dL/dz_{p} = sum over windows w whose argmax is p of dL/dx_w`` (overlapping windows add up).

    Returns:
        ``(N, C, H, W)``, the gradient with respect to ``input``.
    """
    (kH, kW), (sh, sw), (ph, pw), (dh, dw), _ = _geometry(input, kernel_size, stride, padding, dilation)
    N, C, H, W = input.shape
    windows = _windows(input, (kH, kW), (sh, sw), (ph, pw), (dh, dw), float("-inf"))
    arg = windows.argmax(dim=2, keepdim=True)  # (N, C, 1, L)
    grad_windows = torch.zeros_like(windows).scatter_(2, arg, grad_output.reshape(N, C, 1, -1))
    grad_cols = grad_windows.reshape(N, C * kH * kW, -1)
    grad_padded = col2im(grad_cols, (H + 2 * ph, W + 2 * pw), (kH, kW), (dh, dw), 0, (sh, sw))
    return grad_padded[:, :, ph: ph + H, pw: pw + W]


def avg_pool2d(input: torch.Tensor, kernel_size: IntPair, stride: IntPair | None = None,
               padding: IntPair = 0) -> torch.Tensor:
    """Mean over each window, zero padding counted in the mean (``F.avg_pool2d`` defaults).

    Returns:
        ``(N, C, H_out, W_out)``.
    """
    (kH, kW), (sh, sw), (ph, pw), _, (H_out, W_out) = _geometry(input, kernel_size, stride, padding, 1)
    N, C = input.shape[:2]
    return _windows(input, (kH, kW), (sh, sw), (ph, pw), 1, 0.0).mean(dim=2).reshape(N, C, H_out, W_out)


def avg_pool2d_backward(grad_output: torch.Tensor, input: torch.Tensor, kernel_size: IntPair,
                        stride: IntPair | None = None, padding: IntPair = 0) -> torch.Tensor:
    """Gradient of :func:`avg_pool2d`: each output's gradient is shared equally, ``1/(kH*kW)``, by its window."""
    (kH, kW), (sh, sw), (ph, pw), _, _ = _geometry(input, kernel_size, stride, padding, 1)
    N, C, H, W = input.shape
    grad_windows = grad_output.reshape(N, C, 1, -1).expand(N, C, kH * kW, -1) / (kH * kW)
    grad_cols = grad_windows.reshape(N, C * kH * kW, -1)
    grad_padded = col2im(grad_cols, (H + 2 * ph, W + 2 * pw), (kH, kW), 1, 0, (sh, sw))
    return grad_padded[:, :, ph: ph + H, pw: pw + W]


def global_avg_pool2d(input: torch.Tensor) -> torch.Tensor:
    """One number per feature map: the mean over all positions, ``(N, C, H, W) -> (N, C)``."""
    return input.mean(dim=(2, 3))


def global_max_pool2d(input: torch.Tensor) -> torch.Tensor:
    """One number per feature map: the maximum over all positions, ``(N, C, H, W) -> (N, C)``."""
    return input.amax(dim=(2, 3))


def maxout(input: torch.Tensor, pieces: int) -> torch.Tensor:
    """Pooling across filters (maxout, Goodfellow et al., 2013): the max of ``pieces`` consecutive channels.

    .. math:: y[n, c, \\ldots] = \\max_{j < k} x[n, c k + j, \\ldots]

    A convolution with ``C·k`` filters followed by ``maxout(·, k)`` gives ``C`` maps, each a learned
    piecewise-linear convex function of the input (ReLU is the special case ``max(w·x, 0)``); since the
    k filters may detect rotated or shifted versions of one pattern, the max is invariant to those.

    Args:
        input: ``(N, C·k, *spatial)``.
    Returns:
        ``(N, C, *spatial)``.
    """
    N, channels, *spatial = input.shape
    if pieces < 1 or channels % pieces:
        raise ValueError(f"maxout: {channels} channels cannot be split into groups of {pieces}")
    return input.unflatten(1, (channels // pieces, pieces)).amax(dim=2)  # (N, C, k, *spatial) -> (N, C, *spatial)
