"""Plots the chapters share: image grids, kernels, feature maps."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch


def show_images(images, titles=None, ncols: int = 8, cmap: str = "gray", size: float = 1.6,
                suptitle: str | None = None, symmetric: bool = False):
    """A grid of images.

    Args:
        images: a tensor ``(N, H, W)``, ``(N, 1, H, W)``, ``(N, 3, H, W)`` or a list of such images.
        titles: one string per image, or ``None``.
        symmetric: centre the colour map on 0 (for kernels and signed feature maps).

    Returns:
        The matplotlib ``Figure``.
    """
    images = [torch.as_tensor(img).detach().float().cpu() for img in images]
    n = len(images)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        img = images[k]
        if img.dim() == 3 and img.shape[0] == 1:
            img = img[0]
        if img.dim() == 3:  # (3, H, W) colour
            ax.imshow(img.permute(1, 2, 0).clamp(0, 1))
        else:
            limit = img.abs().max().item() or 1.0
            kwargs = dict(vmin=-limit, vmax=limit) if symmetric else {}
            ax.imshow(img, cmap="RdBu_r" if symmetric else cmap, **kwargs)
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_matrix(matrix, title: str = "", ax=None, annotate: bool = True, fmt: str = "{:g}"):
    """A small matrix as a heat map with its numbers written in the cells."""
    matrix = torch.as_tensor(matrix).detach().cpu()
    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 * matrix.shape[1] + 1, 0.5 * matrix.shape[0] + 0.6))
    ax.imshow(matrix, cmap="Blues")
    if annotate:
        for (i, j), value in zip(((i, j) for i in range(matrix.shape[0]) for j in range(matrix.shape[1])),
                                 matrix.flatten().tolist()):
            ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return ax
