"""Assignment 5's DCGAN networks compared layer by layer with the architecture the assignment states.

A student's network is checked in two ways, independently of its own ``forward``:

* its (transposed) convolutions, in the order ``model.modules()`` lists them, must have the stated
  type, channels, kernel size, stride and padding, and there must be as many ``BatchNorm2d`` as stated;
* its output, once its convolution weights and BatchNorm parameters and running statistics are
  replaced by seeded random values (in place: the model may be the grader's mirror of a module that
  lives in the sandbox; eval mode), must equal the stated layers run with
  ``F.conv2d`` / ``F.conv_transpose2d`` / ``F.batch_norm`` and the stated activations at the stated
  positions, on those same weights (computed in float64). An activation left out, moved, or of the
  wrong kind changes it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.grading.compare import describe_difference

#: ("convT" | "conv", in_channels, out_channels, kernel_size, stride, padding), "bn", "relu", "lrelu", "tanh"
NAMES = {"bn": "BatchNorm2d", "relu": "ReLU", "lrelu": "LeakyReLU(0.2)", "tanh": "Tanh"}
_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def conv_size(size: int, m: nn.Conv2d, axis: int) -> int:
    return (size + 2 * m.padding[axis] - m.dilation[axis] * (m.kernel_size[axis] - 1) - 1) // m.stride[axis] + 1


def transposed_conv_size(size: int, m: nn.ConvTranspose2d, axis: int) -> int:
    return ((size - 1) * m.stride[axis] - 2 * m.padding[axis] + m.dilation[axis] * (m.kernel_size[axis] - 1)
            + m.output_padding[axis] + 1)


def generator_spec(z_dim: int, width: int) -> list:
    """z as a 1x1 map -> 7x7 (kernel 7) -> 14x14 -> 28x28 (kernel 4, stride 2, padding 1); BN + ReLU, tanh."""
    return [("convT", z_dim, 2 * width, 7, 1, 0), "bn", "relu", ("convT", 2 * width, width, 4, 2, 1), "bn", "relu",
            ("convT", width, 1, 4, 2, 1), "tanh"]


def discriminator_spec(width: int) -> list:
    """28 -> 14 -> 7 (kernel 4, stride 2, padding 1), LeakyReLU(0.2), BN after the second; a 7x7 conv to 1x1."""
    return [("conv", 1, width, 4, 2, 1), "lrelu", ("conv", width, 2 * width, 4, 2, 1), "bn", "lrelu",
            ("conv", 2 * width, 1, 7, 1, 0)]


def _layer_name(layer) -> str:
    if isinstance(layer, str):
        return NAMES[layer]
    kind, c_in, c_out, k, s, p = layer
    return (f"{'ConvTranspose2d' if kind == 'convT' else 'Conv2d'}({c_in}, {c_out}, kernel_size={k}, "
            f"stride={s}, padding={p})")


def describe_spec(spec: list) -> str:
    return " -> ".join(_layer_name(layer) for layer in spec)


def _conv_problem(number: int, m: nn.Module, layer) -> str | None:
    kind, c_in, c_out, k, s, p = layer
    want = nn.ConvTranspose2d if kind == "convT" else nn.Conv2d
    got = (type(m).__name__, m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
           getattr(m, "output_padding", (0, 0)), m.groups)
    if got == (want.__name__, c_in, c_out, (k, k), (s, s), (p, p), (1, 1), (0, 0), 1):
        return None
    return (f"convolution {number}: expected {_layer_name(layer)}, got {type(m).__name__}({m.in_channels}, "
            f"{m.out_channels}, kernel_size={m.kernel_size}, stride={m.stride}, padding={m.padding}"
            + (f", output_padding={m.output_padding}" if isinstance(m, nn.ConvTranspose2d) else "")
            + (f", dilation={m.dilation}" if m.dilation != (1, 1) else "")
            + (f", groups={m.groups}" if m.groups != 1 else "") + ")")


def layers_problem(model: nn.Module, spec: list) -> str | None:
    """Why the model's convolutions and BatchNorm layers are not those of ``spec``, or None."""
    convs = [m for m in model.modules() if isinstance(m, _CONVS)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    want = [layer for layer in spec if isinstance(layer, tuple)]
    if len(convs) != len(want) or len(bns) != spec.count("bn"):
        return (f"expected {len(want)} convolutions and {spec.count('bn')} BatchNorm2d layers, found "
                f"{len(convs)} and {len(bns)}; the assignment's layers are: {describe_spec(spec)}")
    for number, (m, layer) in enumerate(zip(convs, want), 1):
        problem = _conv_problem(number, m, layer)
        if problem:
            return problem + f"\n  (the assignment's layers: {describe_spec(spec)})"
    return None


def _randomise(model: nn.Module, seed: int) -> None:
    """Seeded random weights, BN parameters and running statistics, in place."""
    g = torch.Generator().manual_seed(seed)

    def uniform(t, low, high):
        if t is not None:
            t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) * (high - low) + low)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _CONVS):
                fan = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.in_channels * math.prod(m.kernel_size)
                m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype) / math.sqrt(fan))
                uniform(m.bias, -0.3, 0.3)
            elif isinstance(m, nn.BatchNorm2d):
                uniform(m.weight, 0.5, 1.5), uniform(m.bias, -0.5, 0.5)
                uniform(m.running_mean, -0.5, 0.5), uniform(m.running_var, 0.5, 2.0)


def _reference_forward(model: nn.Module, spec: list, x: torch.Tensor) -> torch.Tensor:
    """The stated layers, with torch's functional ops in float64, on the model's own weights and statistics."""

    def f64(t):
        return None if t is None else t.double()

    convs = iter([m for m in model.modules() if isinstance(m, _CONVS)])
    bns = iter([m for m in model.modules() if isinstance(m, nn.BatchNorm2d)])
    for layer in spec:
        if layer == "bn":
            m = next(bns)
            x = F.batch_norm(x, f64(m.running_mean), f64(m.running_var), f64(m.weight), f64(m.bias),
                             m.running_mean is None, 0.0, m.eps)
        elif layer in ("relu", "lrelu", "tanh"):
            x = {"relu": F.relu, "lrelu": lambda t: F.leaky_relu(t, 0.2), "tanh": torch.tanh}[layer](x)
        else:
            m = next(convs)
            op = F.conv_transpose2d if layer[0] == "convT" else F.conv2d
            x = op(x, m.weight.double(), f64(m.bias), stride=layer[4], padding=layer[5])
    return x


def spec_problem(model: nn.Module, spec: list, x: torch.Tensor, seed: int) -> str | None:
    """Why ``model`` is not the network ``spec`` describes (layers, then output on random weights), or None.

    ``x`` is the network's input: ``z (N, z_dim)`` for the generator, images for the discriminator;
    the reference's output is reshaped to the model's output shape when they have as many elements.
    """
    problem = layers_problem(model, spec)
    if problem:
        return problem
    model.eval()
    _randomise(model, seed)
    with torch.no_grad():
        got = model(x)
        inputs = x.double().reshape(x.shape[0], -1, 1, 1) if x.dim() == 2 else x.double()
        expected = _reference_forward(model, spec, inputs).to(x.dtype)
    if isinstance(got, torch.Tensor) and got.numel() == expected.numel():
        expected = expected.reshape(got.shape)
    problem = describe_difference(got, expected, "output with random weights (eval mode)")
    if problem:
        return (problem + "\n  the network's output differs from the assignment's layers run on the same weights: "
                f"{describe_spec(spec)} (check which activations follow which layers)")
    return None
