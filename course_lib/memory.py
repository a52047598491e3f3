"""Activation memory and gradient checkpointing (Chen et al., *Training Deep Nets with Sublinear
Memory Cost*, 2016).

Backpropagation needs, for every layer, tensors saved in the forward pass (inputs of linear layers,
outputs of ReLU/tanh, ...). For a chain of :math:`L` layers that is :math:`O(L)` activations.
Gradient checkpointing keeps only the inputs of :math:`k` segments and recomputes each segment's
inside during the backward pass: memory :math:`O(k + L/k)`, minimal at :math:`k = \\sqrt L`
(:math:`O(\\sqrt L)`), for the price of one more forward pass (≈ 30 % more compute).

:func:`saved_tensor_bytes` *measures* what autograd keeps: it installs
``torch.autograd.graph.saved_tensors_hooks`` and adds up the distinct storages packed for backward
during the forward pass. Parameters are left out (they are in memory anyway). Inside a
``torch.utils.checkpoint`` region nothing is packed — that is the saving; only the segment's
*input* is kept (and counted).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.autograd.graph import saved_tensors_hooks
from torch.utils.checkpoint import checkpoint


def saved_tensor_bytes(fn, exclude=()) -> tuple[int, object]:
    """Bytes of the distinct tensors autograd saves for backward while ``fn()`` runs.

    Args:
        fn: a function of no arguments, e.g. ``lambda: model(x)``.
        exclude: tensors not to count (pass ``model.parameters()``).

    Returns:
        ``(bytes, fn())`` — the output is returned so that the graph stays alive for ``backward``.
    """
    excluded = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}

    def pack(tensor):
        ptr = tensor.untyped_storage().data_ptr()
        if ptr not in excluded:  # views of one storage (e.g. a reshape) are counted once
            storages[ptr] = tensor.untyped_storage().nbytes()
        return tensor

    with saved_tensors_hooks(pack, lambda tensor: tensor):
        out = fn()
    return sum(storages.values()), out


def layer_outputs(model: nn.Module, input_shape: tuple[int, ...],
                  kinds: tuple[type, ...] = (nn.Conv2d, nn.MaxPool2d, nn.Linear)) -> list[tuple[str, str, tuple, int]]:
    """The output of every layer of the given ``kinds`` in one forward pass of a single input.

    The forward activations a network must hold for one image (CS231n's per-layer table for VGG-16):
    each layer writes ``C·H·W`` values; an in-place ReLU writes into its input, so it is not counted
    again. Works on the ``meta`` device (shapes only).

    Args:
        input_shape: one input without the batch axis, e.g. ``(3, 224, 224)``.

    Returns:
        ``[(name, kind, shape, values), ...]`` in forward order, per image.
    """
    found = []
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: found.append(
        (name, type(m).__name__, tuple(o.shape[1:]), o[0].numel())))
        for name, m in model.named_modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    return found


class CheckpointedSequential(nn.Module):
    """Run ``layers`` in ``segments`` chunks, each under ``torch.utils.checkpoint`` while training.

    The output and the gradients equal those of ``nn.Sequential(*layers)``; only memory and time
    change. (``torch.utils.checkpoint.checkpoint_sequential`` does the same but leaves the last
    segment un-checkpointed.)
    """

    def __init__(self, layers, segments: int):
        super().__init__()
        layers = list(layers)
        if not 1 <= segments <= len(layers):
            raise ValueError(f"segments must be in [1, {len(layers)}], got {segments}")
        size = -(-len(layers) // segments)  # ceil
        self.segments = nn.ModuleList(nn.Sequential(*layers[i:i + size]) for i in range(0, len(layers), size))

    def forward(self, x):
        for segment in self.segments:
            if self.training and torch.is_grad_enabled():
                x = checkpoint(segment, x, use_reentrant=False)  # keeps x, recomputes the inside
            else:
                x = segment(x)
        return x

