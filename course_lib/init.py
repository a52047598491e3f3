"""Weight initialisation from the variance formulas: LeCun, Xavier (Glorot), He (Kaiming).

A neuron computes :math:`z = \\sum_{j=1}^{n_{in}} w_j x_j + b`. With independent, zero-mean
weights and inputs the variances of the terms add up:

.. math::  \\operatorname{Var} z = n_{in}\\,\\operatorname{Var} w\\;\\mathbb{E}[x^2].

Keeping :math:`\\operatorname{Var} z` the same from layer to layer fixes :math:`\\operatorname{Var} w`:

* LeCun (LeCun et al., *Efficient BackProp*, 1998): :math:`\\operatorname{Var} w = 1/n_{in}`
  (a linear or tanh-like unit, :math:`\\mathbb{E}[x^2] = \\operatorname{Var} z`);
* Xavier / Glorot (Glorot & Bengio, 2010): :math:`\\operatorname{Var} w = 2/(n_{in}+n_{out})`,
  a compromise between the forward pass (:math:`1/n_{in}`) and the backward pass (:math:`1/n_{out}`);
* He / Kaiming (He et al., 2015): :math:`\\operatorname{Var} w = 2/n_{in}`, because a ReLU zeroes
  half of its inputs, :math:`\\mathbb{E}[\\mathrm{relu}(z)^2] = \\operatorname{Var} z / 2`.

For a convolution ``weight (C_out, C_in/groups, kH, kW)``: :math:`n_{in} = C_{in}/g\\cdot k_H k_W`,
:math:`n_{out} = C_{out}\\cdot k_H k_W`. A uniform :math:`U(-a, a)` has variance :math:`a^2/3`, so the
uniform variants use :math:`a = \\sqrt{3}\\,\\sigma`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

SCHEMES = ("lecun", "xavier", "he")


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a linear ``(out, in)`` or convolution ``(out, in/groups, *k)`` weight."""
    if weight.dim() < 2:
        raise ValueError(f"fans need a weight with at least 2 dimensions, got shape {tuple(weight.shape)}")
    receptive = math.prod(weight.shape[2:])  # kH * kW (1 for a linear layer)
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def init_std(scheme: str, fan_in: int, fan_out: int) -> float:
    """The standard deviation :math:`\\sigma` that the scheme prescribes (see the module docstring)."""
    if scheme == "lecun":
        return math.sqrt(1.0 / fan_in)
    if scheme == "xavier":
        return math.sqrt(2.0 / (fan_in + fan_out))
    if scheme == "he":
        return math.sqrt(2.0 / fan_in)
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


@torch.no_grad()
def init_(weight: torch.Tensor, scheme: str = "he", distribution: str = "normal",
          generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``weight`` in place with :math:`N(0, \\sigma^2)` or :math:`U(-\\sqrt3\\sigma, \\sqrt3\\sigma)`.

    Args:
        weight: ``(out, in)`` or ``(out, in/groups, kH, kW)``.
        scheme: ``"lecun"``, ``"xavier"`` or ``"he"``.
        distribution: ``"normal"`` or ``"uniform"`` (same variance).

    Returns:
        ``weight``.
    """
    std = init_std(scheme, *fans(weight))
    if distribution == "normal":
        return weight.normal_(0.0, std, generator=generator)
    if distribution == "uniform":
        bound = math.sqrt(3.0) * std
        return weight.uniform_(-bound, bound, generator=generator)
    raise ValueError(f"distribution must be 'normal' or 'uniform', got {distribution!r}")


def init_model_(model: nn.Module, scheme: str = "he", distribution: str = "normal") -> nn.Module:
    """Initialise every ``Linear`` and ``Conv`` weight of ``model`` with ``scheme``; biases to 0."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            init_(module.weight, scheme, distribution)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


@torch.no_grad()
def activation_stds(scheme: str, activation: nn.Module, depth: int = 30, width: int = 256,
                    batch: int = 1000, seed: int = 0) -> torch.Tensor:
    """Standard deviation of the pre-activations ``z`` after each layer of a deep MLP.

    The network is ``depth`` times ``Linear(width, width)`` (bias 0) → ``activation``, fed with
    standard normal inputs; a good scheme keeps the values of the same order at every depth.

    Returns:
        ``(depth,)`` the std of ``z`` of layer 1, 2, ..., ``depth``.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, generator=generator)
    stds = []
    for _ in range(depth):
        weight = init_(torch.empty(width, width), scheme, generator=generator)
        z = x @ weight.T  # (batch, width)
        stds.append(z.std())
        x = activation(z)
    return torch.stack(stds)


def deep_mlp(activation: type[nn.Module], depth: int, width: int, in_features: int | None = None,
             num_classes: int = 10, scheme: str | float | None = None) -> nn.Sequential:
    """``[Flatten →] depth × (Linear → activation) → Linear(width, num_classes)``: the network of the
    vanishing-gradient experiments (chapters 0 and 4).

    Args:
        activation: the class of the non-linearity, e.g. ``nn.Sigmoid``.
        in_features: the first layer's inputs (``None``: ``width``, and no ``Flatten``).
        scheme: the hidden layers' initialisation: ``None`` PyTorch's default; a name of :data:`SCHEMES`
            (:func:`init_`, biases 0); a float: weights from :math:`N(0, \\text{scheme}^2)`, default biases.
            Each layer is initialised as soon as it is made, so the draws follow the layer order.
    """
    layers: list[nn.Module] = [] if in_features is None else [nn.Flatten()]
    for i in range(depth):
        linear = nn.Linear(in_features if i == 0 and in_features is not None else width, width)
        if isinstance(scheme, str):
            init_(linear.weight, scheme)
            nn.init.zeros_(linear.bias)
        elif scheme is not None:
            nn.init.normal_(linear.weight, std=float(scheme))
        layers += [linear, activation()]
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


def layer_gradient_norms(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """``‖∂L/∂W_l‖`` (Frobenius) of every ``nn.Linear`` but the output layer, from the input side, for the
    cross-entropy ``L`` of ``model(inputs)`` against ``targets``. Geometric decay with ``l`` is the
    vanishing gradient: each layer multiplies the backward signal by ``W^T diag(σ'(z))``.

    The gradients are computed with ``torch.autograd.grad``: ``model``'s ``.grad`` fields are untouched.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)][:-1]
    loss = nn.functional.cross_entropy(model(inputs), targets)
    grads = torch.autograd.grad(loss, [m.weight for m in linears])
    return [g.norm().item() for g in grads]
