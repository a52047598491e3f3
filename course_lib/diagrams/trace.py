"""What a block diagram shows, read from the module itself: each layer's kind and output shape.

One forward pass of a zero input of the model's input size, with a forward hook on every leaf
module, records the layers in the order they run and the shape each one returns. A figure drawn
from these records cannot disagree with the implementation: change a channel count in
``course_lib.models`` and the figure changes with it. Build big models on the ``meta`` device
(``with torch.device("meta"): ...``): then the pass computes shapes only.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from course_lib.counting import forward_once

# Leaves that change nothing a reader of a block diagram needs (dropout is mentioned in captions).
NOT_DRAWN = (nn.Dropout, nn.Dropout2d, nn.Flatten, nn.Identity)


@dataclass(frozen=True)
class LayerRecord:
    """One call of one layer: ``name`` as in ``model.named_modules()``, ``kind`` (conv, pool, fc,
    norm, act, upconv), a short ``label`` ("conv 3×3/2") and the shapes without the batch axis."""

    name: str
    kind: str
    label: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _conv_label(m: nn.Conv2d | nn.ConvTranspose2d) -> str:
    kH, kW = m.kernel_size
    stride = _pair(m.stride)[0]
    name = "up-conv" if isinstance(m, nn.ConvTranspose2d) else "conv"
    label = f"{name} {kH}×{kW}" + (f"/{stride}" if stride > 1 else "")
    if m.groups > 1:  # groups == in_channels is MobileNet's depthwise convolution
        label += " depthwise" if m.groups == m.in_channels else f" g={m.groups}"
    return label


def _pool_label(m: nn.Module, out_shape: tuple[int, ...]) -> str:
    kind = "max" if isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) else "avg"
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return f"global {kind} pool" if out_shape[-2:] == (1, 1) else f"adaptive {kind} pool"
    k, s = _pair(m.kernel_size)[0], _pair(m.stride if m.stride is not None else m.kernel_size)[0]
    return f"{kind} pool {k}×{k}" + (f"/{s}" if s > 1 else "")


def describe(module: nn.Module, out_shape: tuple[int, ...] = ()) -> tuple[str, str]:
    """``(kind, label)`` of a leaf module, e.g. ``("conv", "conv 11×11/4")``."""
    if isinstance(module, nn.ConvTranspose2d):
        return "upconv", _conv_label(module)
    if isinstance(module, nn.Conv2d):
        return "conv", _conv_label(module)
    if isinstance(module, nn.Linear):
        return "fc", "fc"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return "pool", _pool_label(module, out_shape)
    if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm)):
        return "norm", "BN" if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)) else type(module).__name__
    if isinstance(module, nn.LocalResponseNorm):
        return "norm", "LRN"
    if isinstance(module, (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.LeakyReLU, nn.GELU)):
        return "act", {"ReLU": "ReLU", "Tanh": "tanh", "Sigmoid": "σ", "SiLU": "SiLU"}.get(
            type(module).__name__, type(module).__name__)
    return "other", type(module).__name__


def trace(model: nn.Module, input_shape: tuple[int, ...], kinds: tuple[str, ...] | None = None,
          forward=None) -> list[LayerRecord]:
    """The leaf layers of ``model`` in the order one forward pass calls them, with their shapes.

    Args:
        model: any module; it runs on its own device (``meta`` costs nothing) in eval mode.
        input_shape: one example's shape, no batch axis, e.g. ``(3, 224, 224)``.
        kinds: keep only these kinds (e.g. ``("conv", "pool", "fc")``); ``None`` keeps all but
            dropout, flatten and identity.
        forward: how to call the model on the input ``x`` (default ``model(x)``).

    Returns:
        One :class:`LayerRecord` per call (a layer called twice, like a shared ReLU, appears twice).
    """
    records: list[LayerRecord] = []

    def hook(name):
        def record(module, inputs, output):
            in_shape, out_shape = tuple(inputs[0].shape[1:]), tuple(output.shape[1:])
            kind, label = describe(module, out_shape)
            if kinds is None or kind in kinds:
                records.append(LayerRecord(name, kind, label, in_shape, out_shape))
        return record

    leaves = [(name, m) for name, m in model.named_modules()
              if not list(m.children()) and not isinstance(m, NOT_DRAWN)]
    forward_once(model, input_shape, [m.register_forward_hook(hook(name)) for name, m in leaves], forward)
    return records


def shape_text(shape: tuple[int, ...]) -> str:
    """``(6, 28, 28)`` → ``"6@28×28"`` (maps @ height × width, LeCun's notation); ``(84,)`` → ``"84"``."""
    if len(shape) == 3:
        return f"{shape[0]}@{shape[1]}×{shape[2]}"
    return "×".join(map(str, shape))
