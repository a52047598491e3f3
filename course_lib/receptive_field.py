"""How much of the input one output unit sees.

For a stack of layers with kernel ``k_l``, stride ``s_l`` and dilation ``d_l`` (Araujo et al.,
2019, "Computing receptive fields of convolutional neural networks"):

.. math::  r_l = r_{l-1} + d_l (k_l - 1)\\, j_{l-1}, \\qquad j_l = j_{l-1} s_l, \\qquad r_0 = j_0 = 1

``j_l`` is the *jump*: the distance, in input pixels, between neighbouring units of layer ``l``.
Stacked stride-1 3×3 convolutions grow the field by only 2 pixels each; strides and pooling
multiply every later growth.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layer:
    """Geometry of one convolution or pooling layer."""

    kernel_size: int
    stride: int = 1
    dilation: int = 1


def receptive_fields(layers: list[Layer]) -> list[int]:
    """Receptive field size (in input pixels, per axis) after each layer of ``layers``."""
    r, jump, sizes = 1, 1, []
    for layer in layers:
        if min(layer.kernel_size, layer.stride, layer.dilation) < 1:
            raise ValueError(f"kernel_size, stride and dilation must be >= 1, got {layer}")
        r += layer.dilation * (layer.kernel_size - 1) * jump
        jump *= layer.stride
        sizes.append(r)
    return sizes


def layers_to_cover(target: int, layer: Layer) -> int:
    """How many copies of ``layer`` must be stacked for the receptive field to reach ``target`` pixels."""
    if layer.stride == 1 and layer.kernel_size == 1:
        raise ValueError("a 1x1 stride-1 layer never grows the receptive field")
    count, r, jump = 0, 1, 1
    while r < target:
        r += layer.dilation * (layer.kernel_size - 1) * jump
        jump *= layer.stride
        count += 1
    return count
