"""Shifting images, and measuring how a layer's output follows the shift.

A map ``f`` is **translation equivariant** when shifting the input shifts the output,
``f(T_δ x) = T_δ f(x)``, and **invariant** when the output does not move at all,
``f(T_δ x) = f(x)``. A convolution is equivariant (the same weights at every position; exactly so
with circular padding, up to the border otherwise); pooling adds a little invariance; a fully
connected layer is neither.
"""
from __future__ import annotations

import torch


def translate(images: torch.Tensor, dy: int, dx: int, circular: bool = False) -> torch.Tensor:
    """Shift ``(..., H, W)`` images by ``dy`` rows down and ``dx`` columns right.

    Pixels shifted in are zeros (``circular=False``) or wrap around from the other side.
    """
    if circular:
        return torch.roll(images, shifts=(dy, dx), dims=(-2, -1))
    H, W = images.shape[-2:]
    if abs(dy) >= H or abs(dx) >= W:
        raise ValueError(f"shift ({dy}, {dx}) is larger than the image {H}x{W}")
    out = torch.zeros_like(images)
    src_rows, dst_rows = slice(max(0, -dy), H - max(0, dy)), slice(max(0, dy), H - max(0, -dy))
    src_cols, dst_cols = slice(max(0, -dx), W - max(0, dx)), slice(max(0, dx), W - max(0, -dx))
    out[..., dst_rows, dst_cols] = images[..., src_rows, src_cols]
    return out


def equivariance_error(f, x: torch.Tensor, dy: int, dx: int, scale: int = 1) -> float:
    """Relative error ``‖f(T_δ x) − T_{δ/scale} f(x)‖ / ‖f(x)‖`` with circular shifts.

    Args:
        f: maps ``(N, C, H, W)`` to ``(N, C', H/scale, W/scale)`` feature maps.
        scale: the map's total stride; the shift must be a multiple of it.

    Returns:
        0 for an exactly equivariant ``f``; about 1.4 when the outputs are unrelated.
    """
    if dy % scale or dx % scale:
        raise ValueError(f"shift ({dy}, {dx}) must be a multiple of the stride {scale}")
    with torch.no_grad():
        moved_then_f = f(translate(x, dy, dx, circular=True))
        f_then_moved = translate(f(x), dy // scale, dx // scale, circular=True)
        return ((moved_then_f - f_then_moved).norm() / f_then_moved.norm()).item()
