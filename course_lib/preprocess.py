"""Input preprocessing: centring, normalisation, PCA and ZCA whitening.

For data ``X (N, D)`` (one row per example, e.g. a flattened image):

* centring: :math:`X - \\mu`, with :math:`\\mu` the mean over the examples;
* normalisation: :math:`(X - \\mu) / \\sigma` per feature (or one :math:`\\mu, \\sigma` per channel for images);
* PCA whitening: with the covariance :math:`\\Sigma = U \\Lambda U^\\top` (eigen-decomposition),
  :math:`X_{PCA} = (X - \\mu)\\,U\\,(\\Lambda + \\varepsilon I)^{-1/2}` has covariance :math:`\\approx I`:
  decorrelated features of unit variance, in the eigenbasis;
* ZCA whitening (Bell & Sejnowski, 1997): :math:`X_{ZCA} = X_{PCA} U^\\top`, rotated back to the
  pixel basis; of all whitenings it stays closest to the original images (CIFAR-10 in
  Krizhevsky, 2009).

Statistics are fitted on training data only and then applied unchanged to test data.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def _check_2d(x: torch.Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"expected data of shape (N, D), got {tuple(x.shape)}; flatten images first")


def center(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x - mean, mean)`` with the mean over the examples; ``x (N, D)``, ``mean (D,)``."""
    _check_2d(x)
    mean = x.mean(0)
    return x - mean, mean


def standardize(x: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``((x - mean) / std, mean, std)`` per feature; ``x (N, D)``."""
    _check_2d(x)
    mean, std = x.mean(0), x.std(0)
    return (x - mean) / (std + eps), mean, std


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of ``images (N, C, H, W)``, the numbers given to ``transforms.Normalize``."""
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    return images.mean(dim=(0, 2, 3)), images.std(dim=(0, 2, 3))


@dataclass
class Whitening:
    """A fitted whitening: ``transform(x) = (x - mean) @ matrix``.

    ``matrix`` is ``(D, k)``; ``eigenvalues (k,)`` and ``components (D, k)`` (columns = principal
    directions, largest variance first) are kept for plots.
    """

    mean: torch.Tensor
    matrix: torch.Tensor
    eigenvalues: torch.Tensor
    components: torch.Tensor

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        _check_2d(x)
        return (x - self.mean.to(x)) @ self.matrix.to(x)


def fit_whitening(x: torch.Tensor, method: str = "pca", eps: float = 1e-5, k: int | None = None) -> Whitening:
    """Fit PCA or ZCA whitening to ``x (N, D)`` (covariance with the unbiased 1/(N-1), as NumPy).

    Args:
        method: ``"pca"`` (output in the eigenbasis, ``k`` columns) or ``"zca"`` (``D`` columns).
        eps: added to the eigenvalues: keeps near-zero-variance directions (e.g. always-black
            border pixels) from being blown up into noise.
        k: keep the ``k`` leading components (PCA only); default all ``D``.

    Returns:
        A :class:`Whitening`; ``w.transform(x)`` has covariance ≈ identity.
    """
    _check_2d(x)
    if method not in ("pca", "zca"):
        raise ValueError(f"method must be 'pca' or 'zca', got {method!r}")
    N, D = x.shape
    k = D if k is None else k
    if not 1 <= k <= D:
        raise ValueError(f"k must be in [1, {D}], got {k}")
    x64 = x.double()  # the smallest eigenvalues are lost in float32
    mean = x64.mean(0)
    xc = x64 - mean
    cov = xc.T @ xc / (N - 1)  # (D, D)
    eigenvalues, vectors = torch.linalg.eigh(cov)  # ascending
    eigenvalues, vectors = eigenvalues.flip(0).clamp_min(0), vectors.flip(1)  # largest first
    if method == "pca":
        eigenvalues, vectors = eigenvalues[:k], vectors[:, :k]
    scale = (eigenvalues + eps).rsqrt()  # (k,)
    matrix = vectors * scale  # U Λ^{-1/2}: (D, k)
    if method == "zca":
        matrix = matrix @ vectors.T  # U Λ^{-1/2} U^T: (D, D), symmetric
    dtype = x.dtype
    return Whitening(mean.to(dtype), matrix.to(dtype), eigenvalues.to(dtype), vectors.to(dtype))
