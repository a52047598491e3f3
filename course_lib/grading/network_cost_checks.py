"""Checks for assignment 2's counting part: a layer's and a whole network's parameters and
multiply-adds, from the layers' descriptions alone.

References are measured on real layers, never computed by formula: parameters are
``sum(p.numel())`` of ``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d`` modules (or whole torchvision
networks built with ``weights=None`` on the ``meta`` device: shapes without memory), multiply-adds are
half the FLOPs that :class:`torch.utils.flop_counter.FlopCounterMode` counts in a forward pass (it counts a
multiply-add as 2 FLOPs, and nothing for BatchNorm, activations and pooling, as the papers' tables).
The networks' totals are also those of the papers (VGG-16: 138.4 M parameters, 15.5 G mult-adds;
ResNet-18: 11.7 M, 1.8 G; as torchvision's model tables list them). Every check raises
:class:`~course_lib.grading.compare.CheckFailure` naming the case, its inputs, expected vs got.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from course_lib.grading.compare import call_student, fail, passed, sandbox_ready


@dataclass(frozen=True)
class LayerCase:
    """One layer for ``conv2d_cost(**arguments)`` (``kind="conv2d"``) or ``linear_cost(**arguments)``."""

    name: str
    kind: str
    arguments: dict = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.kind}_cost(" + ", ".join(f"{k}={v!r}" for k, v in self.arguments.items()) + ")"


def _conv(name, c_in, c_out, k, size, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, bias=True):
    return LayerCase(name, "conv2d", dict(in_channels=c_in, out_channels=c_out, kernel_size=k, input_size=size,
                                          stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias))


LAYER_CASES = (
    _conv("3x3 convolution with bias", 3, 8, (3, 3), (10, 10), padding=(1, 1)),
    _conv("5x5 convolution, stride 2, no bias", 4, 6, (5, 5), (13, 13), stride=(2, 2), bias=False),
    _conv("depthwise 3x3 (groups = channels)", 8, 8, (3, 3), (9, 9), padding=(1, 1), groups=8),
    LayerCase("fully connected with bias", "linear", dict(in_features=120, out_features=84, bias=True)),
)
#: torchvision constructors whose whole network is counted, on a ``(3, 224, 224)`` image.
NETWORK_CASES = ("resnet18",)


def _measure(module: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """``(parameters, multiply-adds)`` of one forward pass of ``module`` on ``x``, measured."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    return sum(p.numel() for p in module.parameters()), counter.get_total_flops() // 2


def _layer_module(case: LayerCase) -> tuple[nn.Module, torch.Tensor]:
    a = case.arguments
    if case.kind == "linear":
        return nn.Linear(a["in_features"], a["out_features"], a["bias"]), torch.zeros(1, a["in_features"])
    conv = nn.Conv2d(a["in_channels"], a["out_channels"], a["kernel_size"], a["stride"], a["padding"],
                     a["dilation"], a["groups"], a["bias"])
    return conv, torch.zeros(1, a["in_channels"], *a["input_size"])


def _pair_problem(got, expected: tuple[int, int], what: str) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"{what}: expected a pair (parameters, mult_adds), got {got!r}"
    for name, value, want in zip(("parameters", "mult-adds"), got, expected):
        number = value if hasattr(value, "__index__") and not isinstance(value, bool) else None
        if number is None or int(number) != want:
            ratio = f" (off by a factor {value / want:.4g})" if number is not None and want else ""
            shown = f"{int(number):,}" if number is not None else repr(value)
            return f"{what}: {name}: expected {want:,} (measured on real layers), got {shown}{ratio}"
    return None


@sandbox_ready
def check_layer_costs(conv2d_cost: Callable, linear_cost: Callable, cases: Sequence[LayerCase] = LAYER_CASES) -> None:
    """``conv2d_cost(...)`` / ``linear_cost(...)`` -> ``(parameters, mult_adds)`` of one layer on one
    image, against ``numel`` of a real layer's parameters and ``FlopCounterMode`` / 2."""
    check = "check_layer_costs"
    for case in cases:
        module, x = _layer_module(case)
        expected = _measure(module, x)
        fn = conv2d_cost if case.kind == "conv2d" else linear_cost
        got = call_student(check, case.name, case.describe(), (), fn, **case.arguments)
        problem = _pair_problem(got, expected, case.describe())
        if problem:
            raise fail(check, case.name, case.describe(), problem)
    passed(check, len(cases))


def describe_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[dict]:
    """The layers of ``model`` with parameters, in the order a forward pass on one ``input_shape`` image
    calls them, as plain dicts (a convolution with the size of its input)."""
    layers: list[dict] = []

    def record(module, args):
        if isinstance(module, nn.Conv2d):
            layers.append(dict(type="conv2d", in_channels=module.in_channels, out_channels=module.out_channels,
                               kernel_size=tuple(module.kernel_size), input_size=tuple(args[0].shape[-2:]),
                               stride=tuple(module.stride), padding=tuple(module.padding),
                               dilation=tuple(module.dilation), groups=module.groups, bias=module.bias is not None))
        elif isinstance(module, nn.Linear):
            layers.append(dict(type="linear", in_features=module.in_features, out_features=module.out_features,
                               bias=module.bias is not None))
        elif isinstance(module, nn.BatchNorm2d):
            layers.append(dict(type="batchnorm2d", num_features=module.num_features))

    hooks = [m.register_forward_pre_hook(record) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return layers


def network(name: str) -> nn.Module:
    """A torchvision network without weights, on the ``meta`` device (shapes only: nothing allocated)."""
    import torchvision

    with torch.device("meta"):
        return getattr(torchvision.models, name)(weights=None).eval()


@sandbox_ready
def check_network_cost(network_cost: Callable, networks: Sequence[str] = NETWORK_CASES) -> None:
    """``network_cost(layers)`` -> ``(parameters, mult_adds)`` of a whole torchvision network from the list
    of its layers (:func:`describe_layers`), against the network's parameters and ``FlopCounterMode`` / 2."""
    check = "check_network_cost"
    for name in networks:
        model = network(name)
        layers = describe_layers(model, (3, 224, 224))
        expected = _measure(model, torch.zeros(1, 3, 224, 224, device="meta"))
        params = f"torchvision.models.{name}(weights=None), one 3x224x224 image, {len(layers)} layers"
        got = call_student(check, name, params, (), network_cost, layers)
        problem = _pair_problem(got, expected, f"network_cost(<the {len(layers)} layers of {name}>)")
        if problem:
            raise fail(check, name, params, problem)
    passed(check, len(networks))
