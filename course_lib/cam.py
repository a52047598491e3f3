"""Class activation maps: which positions of the last feature maps speak for a class.

* :func:`class_activation_map` — CAM (Zhou et al., 2016, "Learning Deep Features for
  Discriminative Localization"). For a network that ends in global average pooling and one linear
  layer, ``y_k = b_k + sum_c W_kc mean_ij A_cij``; moving the sum over channels inside the mean
  gives a map whose spatial mean is the class score minus its bias:

  .. math::  M_k(i, j) = \\sum_c W_{kc} A_{c,i,j}, \\qquad \\operatorname{mean}_{ij} M_k = y_k - b_k

* :func:`grad_cam` — Grad-CAM (Selvaraju et al., 2017) for any differentiable head: the channel
  weights are the spatially averaged gradients of the class score,

  .. math::  \\alpha_c^k = \\frac{1}{Z}\\sum_{i,j} \\frac{\\partial y_k}{\\partial A_{c,i,j}}, \\qquad
             L^k = \\operatorname{ReLU}\\Big(\\sum_c \\alpha_c^k A_c\\Big)

  For a GAP + linear head ``alpha_c^k = W_kc / Z``, so Grad-CAM is ``ReLU(CAM) / Z``.
* :func:`upsample_map` — bring a coarse map to the image size, scaled to [0, 1], to overlay it.

These are the "layer heatmaps" of the lecture: pictures of where a trained network looks.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _class_index(class_idx, N: int, device) -> torch.Tensor:
    idx = torch.as_tensor(class_idx, device=device).long()
    if idx.dim() == 0:
        idx = idx.expand(N)
    if idx.shape != (N,):
        raise ValueError(f"class_idx must be an int or have shape ({N},), got shape {tuple(idx.shape)}")
    return idx


def class_activation_map(features: torch.Tensor, weight: torch.Tensor, class_idx) -> torch.Tensor:
    """CAM: the classifier's weights for one class applied at every position of the feature map.

    Args:
        features: ``(N, C, h, w)`` the last convolutional feature maps ``A``.
        weight: ``(K, C)`` the weights ``W`` of the linear layer that follows global average pooling.
        class_idx: the class ``k``: an int, or one per image as ``(N,)``.

    Returns:
        ``(N, h, w)`` maps ``M_k``; their spatial mean is the class logit minus its bias.
    """
    if features.dim() != 4 or weight.dim() != 2 or weight.shape[1] != features.shape[1]:
        raise ValueError(f"need features (N, C, h, w) and weight (K, C) with the same C, got "
                         f"{tuple(features.shape)} and {tuple(weight.shape)}")
    N = features.shape[0]
    w = weight[_class_index(class_idx, N, weight.device)]  # (N, C)
    return torch.einsum("nc,nchw->nhw", w, features)


def grad_cam(model: nn.Module, layer: nn.Module, input: torch.Tensor, class_idx=None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM of ``layer``'s output for class ``class_idx`` (default: the predicted class).

    Put the model in ``eval()`` mode first, so that BatchNorm and Dropout do not mix the images.

    Args:
        model: maps ``input`` to logits ``(N, K)``.
        layer: a sub-module of ``model`` whose output ``A`` is ``(N, C, h, w)``.
        input: ``(N, ...)`` a batch of images.
        class_idx: an int, ``(N,)`` class indices, or ``None`` for each image's top class.

    Returns:
        ``(maps, logits)``: ``(N, h, w)`` non-negative Grad-CAM maps and the ``(N, K)`` logits.
    """
    captured = {}

    def keep_output(module, args, output):
        # Start a fresh graph at A: we need dy/dA only, whatever requires_grad says upstream.
        captured["A"] = output.detach().requires_grad_(True)
        return captured["A"]

    handle = layer.register_forward_hook(keep_output)
    try:
        with torch.enable_grad():
            logits = model(input)
            if "A" not in captured:
                raise ValueError("layer was not called during model(input): is it a sub-module of model?")
            A = captured["A"]
            if A.dim() != 4:
                raise ValueError(f"layer output must be (N, C, h, w), got shape {tuple(A.shape)}")
            idx = logits.argmax(dim=1) if class_idx is None else _class_index(class_idx, len(logits), logits.device)
            score = logits.gather(1, idx[:, None]).sum()  # images are independent: one backward for all
            (grads,) = torch.autograd.grad(score, A)  # (N, C, h, w)
    finally:
        handle.remove()
    alpha = grads.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
    maps = F.relu((alpha * A).sum(dim=1))  # (N, h, w)
    return maps.detach(), logits.detach()


def upsample_map(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly upsample ``(N, h, w)`` maps to ``size`` and rescale each to [0, 1] for overlays."""
    if maps.dim() != 3:
        raise ValueError(f"maps must be (N, h, w), got shape {tuple(maps.shape)}")
    up = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    low = up.amin(dim=(1, 2), keepdim=True)
    span = (up.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-12)  # a flat map stays 0, not NaN
    return (up - low) / span
