"""Hand-made convolution kernels: what a first convolutional layer learns by itself.

Hubel and Wiesel's simple cells in V1 respond to oriented edges; the first layer of a trained CNN
holds similar filters. Here they are written by hand.
"""
from __future__ import annotations

import math

import torch

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))  # responds to vertical edges
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def sobel_kernels(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The Sobel pair ``(2, 3, 3)``: ``[0]`` = d/dx (vertical edges), ``[1]`` = d/dy (horizontal edges).

    Applied with :func:`course_lib.conv.conv2d` (a cross-correlation), ``[0]`` is positive where the
    image gets brighter to the right.
    """
    gx = torch.tensor(SOBEL_X, dtype=dtype)
    return torch.stack([gx, gx.T])


def laplacian_kernel(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 4-neighbour Laplacian ``(3, 3)``: second derivative, zero on flat and linear regions."""
    return torch.tensor(LAPLACIAN, dtype=dtype)


def gaussian_kernel(size: int, sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised Gaussian blur ``(size, size)``: ``exp(-(u² + v²) / 2σ²)`` summing to 1."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd number, got {size}")
    u = torch.arange(size, dtype=dtype) - size // 2
    g = torch.exp(-(u ** 2) / (2 * sigma ** 2))
    kernel = torch.outer(g, g)
    return kernel / kernel.sum()


def gabor_kernel(size: int, theta: float, wavelength: float, sigma: float | None = None,
                 gamma: float = 0.5, phase: float = 0.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Real Gabor filter ``(size, size)``, a model of a V1 simple cell (Daugman, 1985).

    .. math::
        g(u, v) = \\exp\\left(-\\frac{u'^2 + \\gamma^2 v'^2}{2\\sigma^2}\\right)
                  \\cos\\left(2\\pi \\frac{u'}{\\lambda} + \\psi\\right),
        \\quad u' = u\\cos\\theta + v\\sin\\theta,\\; v' = -u\\sin\\theta + v\\cos\\theta

    Args:
        theta: orientation in radians of the stripes' normal (0 = responds to vertical stripes).
        wavelength: ``λ``, the period of the stripes in pixels.
        sigma: width of the Gaussian envelope; default ``0.56 λ`` (one-octave bandwidth).
        gamma: aspect ratio of the envelope.
        phase: ``ψ``; 0 gives an even (line) detector, ``π/2`` an odd (edge) detector.

    Returns:
        A zero-mean kernel (flat regions give no response).
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd number, got {size}")
    sigma = 0.56 * wavelength if sigma is None else sigma
    u = torch.arange(size, dtype=dtype) - size // 2
    v, u = torch.meshgrid(u, u, indexing="ij")  # v: rows (down), u: columns (right)
    u_rot = u * math.cos(theta) + v * math.sin(theta)
    v_rot = -u * math.sin(theta) + v * math.cos(theta)
    envelope = torch.exp(-(u_rot ** 2 + gamma ** 2 * v_rot ** 2) / (2 * sigma ** 2))
    kernel = envelope * torch.cos(2 * math.pi * u_rot / wavelength + phase)
    return kernel - kernel.mean()


def grating(size: int, theta: float, wavelength: float, phase: float = 0.0,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A sinusoidal grating ``cos(2π u'/λ + ψ)`` with stripes normal to ``theta``: the stimulus of
    orientation-tuning experiments (the bars Hubel and Wiesel showed to a cat)."""
    u = torch.arange(size, dtype=dtype) - size // 2
    v, u = torch.meshgrid(u, u, indexing="ij")
    return torch.cos(2 * math.pi * (u * math.cos(theta) + v * math.sin(theta)) / wavelength + phase)
