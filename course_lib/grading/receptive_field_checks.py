"""Checks for assignment 2's receptive-field part: the field of a stack of convolution and pooling
layers (kernel, stride, dilation), and how many layers it takes to see a given width.

The reference is measured, not computed by the recurrence the student writes: a stack of 1-D
convolutions with all-one weights (in float64, no padding) gets the layers' geometry, and the
gradient of its first output unit with respect to the input is non-zero exactly over that unit's
receptive field (its span, first to last non-zero input, is the field's size; with dilation the field
has holes, its span does not). The published fields of AlexNet (195) and VGG-16 (212) (Araujo,
Norris and Sim, 2019, "Computing receptive fields of convolutional neural networks", Table 1) are
hidden cases. Every check raises :class:`~course_lib.grading.compare.CheckFailure` naming the case.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from course_lib.grading.compare import call_student, fail, passed, sandbox_ready


@dataclass(frozen=True)
class FieldCase:
    """A stack of layers, each ``(kernel_size, stride, dilation)``; ``published``: the field of the whole
    stack as a paper's table gives it (``None`` where there is none)."""

    name: str
    layers: tuple[tuple[int, int, int], ...]
    published: int | None = None

    def describe(self) -> str:
        return "layers (kernel_size, stride, dilation) = " + ", ".join(map(str, self.layers))


def _conv(k: int, s: int, d: int = 1) -> tuple[int, int, int]:
    return (k, s, d)


#: AlexNet as torchvision builds it, up to pool5: conv 11/4, pool 3/2, conv 5, pool 3/2, 3 x conv 3, pool 3/2.
ALEXNET = (_conv(11, 4), _conv(3, 2), _conv(5, 1), _conv(3, 2), _conv(3, 1), _conv(3, 1), _conv(3, 1), _conv(3, 2))
#: VGG-16 up to pool5: blocks of 2, 2, 3, 3, 3 convolutions 3x3, each followed by a 2x2 stride-2 pooling.
VGG16 = tuple(layer for convs in (2, 2, 3, 3, 3) for layer in (*[_conv(3, 1)] * convs, _conv(2, 2)))

FIELD_CASES = (
    FieldCase("three 3x3 convolutions", (_conv(3, 1), _conv(3, 1), _conv(3, 1))),
    FieldCase("conv, 2x2 pooling with stride 2, conv", (_conv(3, 1), _conv(2, 2), _conv(3, 1))),
    FieldCase("dilated 3x3 convolutions (dilation 1, 2, 4)", (_conv(3, 1, 1), _conv(3, 1, 2), _conv(3, 1, 4))),
)
#: ``(target, kernel_size, stride, dilation)``: how many such layers see ``target`` pixels.
COVER_CASES = ((100, 3, 1, 1), (10, 5, 1, 1), (30, 3, 2, 1))


def measured_field(layers: Sequence[tuple[int, int, int]]) -> int:
    """The receptive field of the whole stack ``layers``, measured by a gradient (see the module)."""
    # An input surely longer than the field (no recurrence used): the spans times every stride.
    length = 2 + sum(d * (k - 1) for k, _, d in layers) * math.prod(s for _, s, _ in layers)
    x = torch.zeros(1, 1, length, dtype=torch.float64, requires_grad=True)
    y = x
    for k, s, d in layers:
        y = F.conv1d(y, torch.ones(1, 1, k, dtype=torch.float64), stride=s, dilation=d)
    (grad,) = torch.autograd.grad(y[0, 0, 0], x)
    seen = grad[0, 0].nonzero().flatten()
    return int(seen[-1] - seen[0] + 1)


def measured_fields(layers: Sequence[tuple[int, int, int]]) -> list[int]:
    """The receptive field after each layer of ``layers``, measured."""
    return [measured_field(layers[:depth]) for depth in range(1, len(layers) + 1)]


def _as_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if hasattr(value, "__index__"):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _field_problem(got, expected: list[int], layers) -> str | None:
    if not isinstance(got, (list, tuple)):
        return f"expected a list of {len(expected)} ints (the field after each layer), got {type(got).__name__}"
    if len(got) != len(expected):
        return f"expected {len(expected)} fields (one after each layer), got {len(got)}: {list(got)}"
    for number, (value, want, layer) in enumerate(zip(got, expected, layers), 1):
        if _as_int(value) != want:
            k, s, d = layer
            return (f"after layer {number} of {len(layers)} (kernel_size={k}, stride={s}, dilation={d}): expected "
                    f"a receptive field of {want} pixels, got {value!r}\n  expected after each layer: {expected}\n"
                    f"  got:                        {list(got)}")
    return None


@sandbox_ready
def check_receptive_field(receptive_field: Callable, cases: Sequence[FieldCase] = FIELD_CASES) -> None:
    """``receptive_field(layers)`` -> the field (pixels, per axis) after each layer, against the span of
    a measured input gradient (and a paper's table where the case has one)."""
    check = "check_receptive_field"
    for case in cases:
        layers = [tuple(layer) for layer in case.layers]
        expected = measured_fields(layers)
        if case.published is not None and expected[-1] != case.published:  # the reference itself is wrong
            raise RuntimeError(f"{case.name}: measured field {expected[-1]} != published {case.published}")
        got = call_student(check, case.name, case.describe(), (), receptive_field, [tuple(l) for l in layers])
        problem = _field_problem(got, expected, layers)
        if problem:
            raise fail(check, case.name, case.describe(), problem)
    passed(check, len(cases))


def measured_layers_to_cover(target: int, kernel_size: int, stride: int, dilation: int) -> int:
    """The fewest copies of one layer whose stack has a measured field of at least ``target`` pixels."""
    count, field = 0, 1
    while field < target:
        count += 1
        field = measured_field([(kernel_size, stride, dilation)] * count)
    return count


@sandbox_ready
def check_layers_to_cover(layers_to_cover: Callable, cases: Sequence[tuple[int, int, int, int]] = COVER_CASES) -> None:
    """``layers_to_cover(target, kernel_size, stride, dilation)`` -> the fewest stacked copies of that
    layer whose receptive field is at least ``target`` pixels (measured by gradients)."""
    check = "check_layers_to_cover"
    for number, (target, k, s, d) in enumerate(cases, 1):
        label, params = f"{number} of {len(cases)}", f"target={target}, kernel_size={k}, stride={s}, dilation={d}"
        expected = measured_layers_to_cover(target, k, s, d)
        got = call_student(check, label, params, (), layers_to_cover, target, k, s, d)
        if _as_int(got) != expected:
            raise fail(check, label, params, f"expected {expected} layers (their field: "
                       f"{measured_field([(k, s, d)] * expected)} pixels), got {got!r}")
    passed(check, len(cases))
