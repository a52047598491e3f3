"""Counting a network's cost: parameters and multiply-adds.

* convolution: ``C_out * (C_in/groups * kH * kW + 1)`` parameters (the ``+1`` is the bias), and
  ``C_out * C_in/groups * kH * kW * H_out * W_out`` mult-adds (MobileNet's
  ``D_K * D_K * M * N * D_F * D_F`` for a square kernel);
* fully connected: ``in * out + out`` parameters, ``in * out`` mult-adds per example.
"""
from __future__ import annotations

import torch
from torch import nn


def conv2d_num_params(in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                      bias: bool = True, groups: int = 1) -> int:
    """Parameters of ``nn.Conv2d``: ``C_out * (C_in/groups) * kH * kW + C_out``."""
    kH, kW = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
    return out_channels * (in_channels // groups) * kH * kW + (out_channels if bias else 0)


def linear_num_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """Parameters of ``nn.Linear``: ``in * out + out``."""
    return in_features * out_features + (out_features if bias else 0)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_mult_adds(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass on a single example of ``input_shape`` (no batch axis).

    Counts convolutions (incl. transposed) and fully connected layers, which dominate every network
    of the course; normalisation, activations and pooling are ignored, as in the papers' tables.
    """
    total = 0

    def conv_hook(module, inputs, output):
        nonlocal total
        kH, kW = module.kernel_size
        per_output = (module.in_channels // module.groups) * kH * kW
        if isinstance(module, nn.ConvTranspose2d):  # every *input* pixel is scattered by the kernel
            total += inputs[0][0].numel() * (module.out_channels // module.groups) * kH * kW
        else:
            total += output[0].numel() * per_output

    def linear_hook(module, inputs, output):
        nonlocal total
        total += output[0].numel() * module.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    forward_once(model, input_shape, hooks)
    return total


def forward_once(model: nn.Module, input_shape: tuple[int, ...], hooks: list, forward=None) -> None:
    """Run ``forward`` (default: the model) once on a zero input of ``input_shape`` (batch of one, on the
    model's device), in eval mode and without gradients, for the forward ``hooks`` registered on its
    layers to record what they see; then remove the hooks and restore the model's training mode."""
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        x = torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu")
        with torch.no_grad():
            (forward or model)(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
