"""What a trained CNN responds to (Zeiler & Fergus, 2014, "Visualizing and understanding convolutional networks").

* :func:`feature_maps` — a layer's activations for some images (a forward hook).
* :func:`top_activating` — the images whose strongest activation in one channel is largest.
* :func:`activation_gradient` — ``∂ max_{i,j} a_c(x)_{ij} / ∂x``: which input pixels change the
  channel's strongest activation (a saliency map; Simonyan et al., 2014).
* :func:`deconvnet` — Zeiler & Fergus' projection back to pixels: keep only the strongest
  activation of one channel and run the layers backwards, each conv replaced by its transpose
  (same weights), each ReLU applied to the signal going back, and each max pool undone by putting
  values at the remembered positions of the maxima ("switches"), zeros elsewhere. Without ReLUs
  this is exactly the gradient; the ReLU rule is what makes it a different picture.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def feature_maps(model: nn.Module, layer: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The output of ``layer`` (a submodule of ``model``) when ``model`` runs on ``images``.

    Returns:
        The layer's output, detached, e.g. ``(N, C, H', W')`` for a convolution.
    """
    captured = []
    # clone: an in-place ReLU right after ``layer`` would otherwise overwrite what we captured
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.append(output.detach().clone()))
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"layer {layer.__class__.__name__} was not called by the model's forward")
    return captured[0]


def top_activating(model: nn.Module, layer: nn.Module, images: torch.Tensor, channel: int, k: int = 9,
                   batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` images with the largest maximal activation of ``channel`` in ``layer``.

    Returns:
        ``(indices, values)``, each ``(k,)``, largest first: indices into ``images`` and the maxima.
    """
    maxima = []
    for start in range(0, len(images), batch_size):
        maps = feature_maps(model, layer, images[start:start + batch_size])  # (B, C, H', W')
        if not 0 <= channel < maps.shape[1]:
            raise ValueError(f"channel={channel} out of range for a layer with {maps.shape[1]} channels")
        maxima.append(maps[:, channel].flatten(1).amax(dim=1))  # (B,)
    values, indices = torch.cat(maxima).topk(min(k, len(images)))
    return indices, values


def activation_gradient(model: nn.Module, layer: nn.Module, images: torch.Tensor, channel: int) -> torch.Tensor:
    """Gradient of each image's strongest activation of ``channel`` in ``layer`` w.r.t. the image.

    .. math::  g = \\partial \\max_{i,j} a_{c,ij}(x) / \\partial x

    Run the model in eval mode, so that the images do not influence each other through BatchNorm.

    Returns:
        ``(N, C_in, H, W)``, the same shape as ``images``.
    """
    captured = []
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.append(output.clone()))
    images = images.detach().clone().requires_grad_(True)
    try:
        model(images)
    finally:
        handle.remove()
    strongest = captured[0][:, channel].flatten(1).amax(dim=1)  # (N,)
    (grad,) = torch.autograd.grad(strongest.sum(), images)  # images are independent: sum is fine
    return grad


def deconvnet(features: nn.Sequential, images: torch.Tensor, layer_index: int, channel: int) -> torch.Tensor:
    """Zeiler–Fergus deconvnet: project the strongest activation of one channel back to pixel space.

    Args:
        features: a ``nn.Sequential`` of ``Conv2d``, ``ReLU`` and ``MaxPool2d`` layers (e.g. the
            ``features`` of AlexNet, VGG or LeNet-5 with ReLU and max pooling); ``Identity`` and
            ``Dropout`` are passed through (dropout is off at test time).
        images: ``(N, C_in, H, W)``.
        layer_index: project from the output of ``features[layer_index]``.
        channel: the channel whose strongest activation (per image) is kept; all others are zeroed.

    Returns:
        ``(N, C_in, H, W)``: the reconstruction, one per image.
    """
    supported = (nn.Conv2d, nn.ReLU, nn.MaxPool2d)
    layers = [layer for layer in features[:layer_index + 1] if not isinstance(layer, (nn.Identity, nn.Dropout))]
    for layer in layers:
        if not isinstance(layer, supported):
            raise ValueError(f"deconvnet supports Conv2d, ReLU and MaxPool2d, not {layer.__class__.__name__}")
    switches, sizes = [], []
    x = images.detach()
    with torch.no_grad():
        for layer in layers:  # forward, remembering where each max came from
            sizes.append(x.shape[-2:])
            if isinstance(layer, nn.MaxPool2d):
                x, idx = F.max_pool2d(x, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                                      layer.ceil_mode, return_indices=True)
                switches.append(idx)
            else:
                x = layer(x)
        N, C, H, W = x.shape
        flat = x[:, channel].reshape(N, H * W)  # (N, H·W)
        keep = torch.zeros_like(x)  # only the strongest activation of the channel survives
        keep[:, channel].view(N, H * W).scatter_(1, flat.argmax(dim=1, keepdim=True),
                                                  flat.amax(dim=1, keepdim=True))
        y = keep
        for layer, size in zip(reversed(layers), reversed(sizes)):  # and backwards
            if isinstance(layer, nn.MaxPool2d):
                y = _unpool(y, switches.pop(), size)
            elif isinstance(layer, nn.ReLU):
                y = F.relu(y)  # rectify the signal going back, as in the forward pass
            else:
                y = _conv_transpose_like(y, layer, size)
    return y


def _unpool(y: torch.Tensor, switches: torch.Tensor, size) -> torch.Tensor:
    """Put every pooled value back where its maximum came from (zeros elsewhere).

    Overlapping windows (AlexNet's 3×3 stride-2 pools) can share a maximum; their values add up, as
    in the gradient of max pooling (``F.max_unpool2d`` would keep only one of them).
    """
    N, C, h, w = y.shape
    out = y.new_zeros(N, C, size[0] * size[1])
    out.scatter_add_(2, switches.reshape(N, C, h * w), y.reshape(N, C, h * w))  # (N, C, H·W)
    return out.view(N, C, *size)


def _conv_transpose_like(y: torch.Tensor, conv: nn.Conv2d, size) -> torch.Tensor:
    """Apply the transpose of ``conv`` (same weights, no bias) so that the output has spatial ``size``."""
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(f"deconvnet needs numeric zero padding, got padding={conv.padding!r}, "
                         f"padding_mode={conv.padding_mode!r}")
    sH, sW = conv.stride
    (pH, pW), (dH, dW), (kH, kW) = conv.padding, conv.dilation, conv.kernel_size
    H, W = y.shape[-2:]
    # the rows/columns the forward conv dropped when (size + 2p - d(k-1) - 1) was not divisible by s
    extra = (size[0] - ((H - 1) * sH - 2 * pH + dH * (kH - 1) + 1),
             size[1] - ((W - 1) * sW - 2 * pW + dW * (kW - 1) + 1))
    return F.conv_transpose2d(y, conv.weight, None, conv.stride, conv.padding, extra, conv.groups, conv.dilation)
