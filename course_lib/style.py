"""Style transfer's style loss: Gram matrices of feature maps (Gatys, Ecker & Bethge, 2016).

A layer's feature maps :math:`F \\in \\mathbb R^{N_l \\times M_l}` (:math:`N_l` channels,
:math:`M_l = H W` positions) say *what* is found *where*. Their Gram matrix

.. math:: G_{ij} = \\sum_k F_{ik} F_{jk}

keeps only which features occur *together*, summed over all positions: the texture, or "style",
with the layout thrown away. The style loss of one layer compares the Gram matrices of the
generated image (:math:`G`) and of the style image (:math:`A`), Eq. (4) of the paper:

.. math:: E_l = \\frac{1}{4 N_l^2 M_l^2} \\sum_{i,j} (G_{ij} - A_{ij})^2 ,

and the total is :math:`\\sum_l w_l E_l`. Style transfer minimises a weighted sum of this and a
content loss (the squared difference of the feature maps themselves) over the *pixels*.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` feature maps → ``(N, C, C)`` Gram matrices :math:`G = F F^T` (not normalised)."""
    N, C, H, W = features.shape
    flat = features.reshape(N, C, H * W)                  # (N, C, M)
    return flat @ flat.transpose(1, 2)                    # (N, C, C)


def style_loss(features: Sequence[torch.Tensor], style_features: Sequence[torch.Tensor],
               weights: Sequence[float] | None = None) -> torch.Tensor:
    """:math:`\\sum_l w_l E_l` over layers, each :math:`E_l` from Eq. (4) of Gatys et al.; averaged over the batch."""
    weights = [1.0 / len(features)] * len(features) if weights is None else weights
    if not len(features) == len(style_features) == len(weights):
        raise ValueError(f"{len(features)} layers of features, {len(style_features)} of style, {len(weights)} weights")
    total = 0.0
    for f, s, w in zip(features, style_features, weights):
        N, C, H, W = f.shape
        difference = gram_matrix(f) - gram_matrix(s)      # (N, C, C)
        total = total + w * difference.pow(2).sum(dim=(1, 2)).mean() / (4 * C ** 2 * (H * W) ** 2)
    return total
