"""Generative adversarial networks: the losses, one alternating training step, a training loop.

Goodfellow et al. (2014): a generator ``G`` maps noise ``z ~ N(0, I)`` to images, a discriminator
``D`` outputs the probability that its input is real, and the two play the minimax game

.. math::

    \\min_G \\max_D \\; V(D, G) = \\mathbb{E}_{x \\sim p_{data}}[\\log D(x)]
        + \\mathbb{E}_{z \\sim p_z}[\\log(1 - D(G(z)))].

Here ``D`` returns a *logit* ``l`` with ``D(x) = σ(l)``, and every loss is computed from logits with
``log σ(l) = -softplus(-l)`` and ``log(1 - σ(l)) = -softplus(l)`` — no ``log(0)``.

* discriminator: maximise ``V`` ⇔ minimise ``-log D(x) - log(1 - D(G(z)))`` (binary cross-entropy,
  real → 1, fake → 0);
* generator, *saturating* (the minimax form): minimise ``log(1 - D(G(z)))``; when ``D`` rejects
  the fakes confidently (``D(G(z)) ≈ 0``, early in training) its gradient vanishes;
* generator, *non-saturating* (what is used in practice): minimise ``-log D(G(z))``; same fixed
  point, strong gradients exactly when the generator is losing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from course_lib.runtime import device as pick_device


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``mean(-log σ(l_real)) + mean(-log(1 - σ(l_fake)))`` (BCE with targets 1 and 0)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, saturating: bool = False) -> torch.Tensor:
    """The generator's loss on ``D``'s logits for fakes.

    ``saturating=True``: ``mean(log(1 - σ(l)))`` (minimax); ``False``: ``mean(-log σ(l))``.
    """
    if saturating:
        return -F.softplus(fake_logits).mean()
    return F.softplus(-fake_logits).mean()


def sample_noise(n: int, z_dim: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``z ~ N(0, I)`` of shape ``(n, z_dim)`` (drawn on the CPU for reproducibility, then moved)."""
    return torch.randn(n, z_dim, generator=generator).to(device if device is not None else "cpu")


def gan_step(G: nn.Module, D: nn.Module, real: torch.Tensor, opt_G, opt_D, z_dim: int,
             saturating: bool = False, generator: torch.Generator | None = None) -> dict:
    """One alternating update: first ``D`` on a real and a fake batch, then ``G`` on fresh noise.

    Args:
        G, D: generator ``(N, z_dim) → images`` and discriminator ``images → logits (N,)``.
        real: a batch of real images on the models' device, scaled like ``G``'s output ([-1, 1]).
        opt_G, opt_D: their optimisers.
        z_dim: length of ``z``.
        saturating: use the minimax generator loss instead of the non-saturating one.
        generator: random stream for ``z``.

    Returns:
        ``{"d_loss", "g_loss", "d_real_acc", "d_fake_acc"}`` (floats; the accuracies are the shares
        of real images with ``D > 1/2`` and of fakes with ``D < 1/2``, measured in the ``D`` step).
    """
    n, dev = real.shape[0], real.device
    # 1. discriminator: fakes are detached, so this step does not touch G
    fake = G(sample_noise(n, z_dim, dev, generator)).detach()
    real_logits, fake_logits = D(real), D(fake)
    d_loss = discriminator_loss(real_logits, fake_logits)
    opt_D.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_D.step()
    # 2. generator: gradients flow through D into G, but only G's optimiser steps
    g_loss = generator_loss(D(G(sample_noise(n, z_dim, dev, generator))), saturating)
    opt_G.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_G.step()
    return {"d_loss": d_loss.item(), "g_loss": g_loss.item(),
            "d_real_acc": (real_logits > 0).float().mean().item(),
            "d_fake_acc": (fake_logits < 0).float().mean().item()}


@dataclass
class GANHistory:
    """Per-step losses and D accuracies; per-epoch samples of the fixed noise and times."""

    d_loss: list = field(default_factory=list)
    g_loss: list = field(default_factory=list)
    d_real_acc: list = field(default_factory=list)
    d_fake_acc: list = field(default_factory=list)
    samples: list = field(default_factory=list)  # (n_samples, C, H, W) in [0, 1], CPU, one per epoch
    seconds: list = field(default_factory=list)


def train_gan(G: nn.Module, D: nn.Module, images: torch.Tensor, *, epochs: int, batch_size: int = 64,
              z_dim: int | None = None, lr: float = 2e-4, betas=(0.5, 0.999), saturating: bool = False,
              n_samples: int = 32, device=None, seed: int = 0, progress: bool = True) -> GANHistory:
    """Train a GAN with Adam (DCGAN: ``lr = 2e-4``, ``β1 = 0.5``) and keep a sample grid per epoch.

    Args:
        images: real images ``(N, C, H, W)`` in [0, 1] (rescaled to [-1, 1] for the ``tanh`` output).
        epochs, batch_size: passes over ``images`` and batch size.
        z_dim: noise length (default ``G.z_dim``).
        saturating: minimax generator loss instead of the non-saturating one.
        n_samples: images generated each epoch from the same fixed noise, to watch progress.
        device: where to train (default: :func:`course_lib.device`).

    Returns:
        A :class:`GANHistory`.
    """
    dev = pick_device(device) if device is None or isinstance(device, str) else torch.device(device)
    z_dim = z_dim or G.z_dim
    G.to(dev)
    D.to(dev)
    gen = torch.Generator().manual_seed(seed)
    fixed_z = sample_noise(n_samples, z_dim, dev, gen)
    opt_G = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=lr, betas=betas)
    history = GANHistory()
    for epoch in range(epochs):
        start = time.perf_counter()
        G.train()
        D.train()
        order = torch.randperm(len(images), generator=gen)
        full = len(images) // batch_size  # drop the last partial batch: BN dislikes tiny batches
        bar = tqdm(range(full), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for b in bar:
            real = images[order[b * batch_size:(b + 1) * batch_size]].to(dev) * 2 - 1
            stats = gan_step(G, D, real, opt_G, opt_D, z_dim, saturating, gen)
            for key, value in stats.items():
                getattr(history, key).append(value)
            bar.set_postfix(d_loss=f"{stats['d_loss']:.3f}", g_loss=f"{stats['g_loss']:.3f}")
        history.samples.append(generate(G, fixed_z))
        history.seconds.append(time.perf_counter() - start)
    return history


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """``G(z)`` in eval mode, mapped from [-1, 1] to [0, 1], on the CPU."""
    was_training = G.training
    G.eval()
    images = (G(z) + 1) / 2
    G.train(was_training)
    return images.clamp(0, 1).cpu()


def checkerboard_energy(images: torch.Tensor, border: int = 4) -> torch.Tensor:
    """Share of each image's variance explained by the pixel's place in the 2×2 grid.

    Split the pixels into four phases ``(i mod 2, j mod 2)``; by the law of total variance the
    variance of the four phase means divided by the total variance is in [0, 1]: 0 for a smooth
    or constant image, 1 for a pure checkerboard. A transposed convolution with stride 2 gives
    each phase its own kernel taps, so even a constant input comes out checkered (Odena et al., 2016).

    Args:
        images: ``(N, C, H, W)``.
        border: pixels cut from each side first (zero padding disturbs the borders).

    Returns:
        ``(N, C)`` energies (0 where an image is constant).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    x = images[..., border:images.shape[-2] - border, border:images.shape[-1] - border]
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    if h == 0 or w == 0:
        raise ValueError(f"border={border} leaves no 2x2 cell of a {tuple(images.shape[-2:])} image")
    x = x[..., :h, :w]
    phases = torch.stack([x[..., a::2, b::2].mean((-2, -1)) for a in (0, 1) for b in (0, 1)], -1)  # (N, C, 4)
    between = phases.var(-1, unbiased=False)
    total = x.flatten(-2).var(-1, unbiased=False)
    return torch.where(total > 1e-12, between / total.clamp_min(1e-12), torch.zeros_like(total))
