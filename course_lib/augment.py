"""Data augmentation on batches of tensors, and AlexNet's PCA colour noise.

Augmentation makes new training examples by changes that keep the label (a cat rotated by 15° is
still a cat): flips, crops, colour changes. It is done on the fly, every epoch anew, so nothing is
stored on disk. For whole pipelines use ``torchvision.transforms.v2``; the two functions here are
the ones the course trains with:

* :func:`random_crop_flip` — pad by ``padding`` pixels, crop back at a random offset, flip
  horizontally with probability ½ (the standard CIFAR/Fashion-MNIST recipe), for a whole batch at once
  on the batch's device (:func:`crop_flip` does the cut given the offsets);
* :func:`pca_color_noise` — Krizhevsky et al. (2012), §4.1: add to every pixel of an RGB image
  :math:`[p_1, p_2, p_3]\\,[\\alpha_1\\lambda_1, \\alpha_2\\lambda_2, \\alpha_3\\lambda_3]^\\top`,
  :math:`\\alpha_i \\sim N(0, 0.1^2)` once per image, where :math:`p_i, \\lambda_i` are the
  eigenvectors and eigenvalues of the 3×3 covariance of RGB pixel values over the training set.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flipped: torch.Tensor,
              padding: int = 2) -> torch.Tensor:
    """Pad every image by ``padding`` zeros, cut the window at ``(dy[i], dx[i])``, flip where ``flipped[i]``.

    One gather for the whole batch (no Python loop over images), so it runs as a few kernels on a GPU.

    Args:
        images: ``(N, C, H, W)``.
        dy, dx: ``(N,)`` integer offsets in ``[0, 2 * padding]`` (``padding``: no shift).
        flipped: ``(N,)`` booleans: mirror image ``i`` left-right.

    Returns:
        ``(N, C, H, W)``: image ``i`` is ``pad(images[i])[:, dy:dy+H, dx:dx+W]``, mirrored if ``flipped[i]``.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(images.shape)}")
    N, C, H, W = images.shape
    dev = images.device
    padded = F.pad(images, (padding,) * 4)  # (N, C, H + 2p, W + 2p)
    rows = (dy.to(dev)[:, None] + torch.arange(H, device=dev))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx.to(dev)[:, None] + torch.arange(W, device=dev))[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(N, device=dev)[:, None, None, None]
    channel = torch.arange(C, device=dev)[None, :, None, None]
    out = padded[batch, channel, rows, cols]  # (N, C, H, W): each image its own window
    return torch.where(flipped.to(dev)[:, None, None, None], out.flip(-1), out)


def random_crop_flip(images: torch.Tensor, padding: int = 2, flip: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Random translation by up to ``padding`` pixels (zero fill) and random horizontal flip.

    The offsets and coin flips are drawn where ``generator`` lives (else where the images are), so a
    CUDA batch is augmented with a CUDA generator without any host round trip; see :func:`crop_flip`.

    Args:
        images: ``(N, C, H, W)``.

    Returns:
        ``(N, C, H, W)``, a new tensor.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(images.shape)}")
    n = len(images)
    dev = generator.device if generator is not None else images.device
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    if flip:
        flipped = torch.rand(n, generator=generator, device=dev) < 0.5
    else:
        flipped = torch.zeros(n, dtype=torch.bool, device=dev)
    return crop_flip(images, dy, dx, flipped, padding)


def rgb_eigen(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues ``(3,)`` (descending) and eigenvectors ``(3, 3)`` (columns) of the RGB covariance.

    Args:
        images: ``(N, 3, H, W)`` or ``(3, H, W)`` — all their pixels are the samples.
    """
    pixels = images.transpose(-3, -1).reshape(-1, 3).double()  # (pixels, 3)
    values, vectors = torch.linalg.eigh(torch.cov(pixels.T))
    return values.flip(0).to(images.dtype), vectors.flip(1).to(images.dtype)


def pca_color_noise(image: torch.Tensor, eigenvalues: torch.Tensor, eigenvectors: torch.Tensor,
                    std: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    """AlexNet's colour augmentation: shift all pixels by :math:`P(\\alpha \\odot \\lambda)`.

    Args:
        image: ``(3, H, W)`` RGB.
        eigenvalues, eigenvectors: from :func:`rgb_eigen` over the training images.
        std: standard deviation of :math:`\\alpha` (0.1 in the paper).

    Returns:
        ``(3, H, W)``: the same shift for every pixel, along the directions of natural colour variation.
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected one RGB image (3, H, W), got shape {tuple(image.shape)}")
    alpha = torch.randn(3, generator=generator).to(image) * std
    shift = eigenvectors @ (alpha * eigenvalues)  # (3,)
    return image + shift[:, None, None]
