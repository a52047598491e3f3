"""GAN losses against binary cross-entropy, the alternating step, DCGAN shapes and checkerboards."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import gan
from course_lib.models import dcgan

LOGITS = torch.tensor([-30.0, -3.0, -0.5, 0.0, 0.7, 4.0, 25.0], dtype=torch.float64)


def test_discriminator_loss_is_bce_real_one_fake_zero():
    real, fake = LOGITS, LOGITS.flip(0) * 0.5
    expected = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    torch.testing.assert_close(gan.discriminator_loss(real, fake), expected)
    moderate = LOGITS[1:-1]  # the naive formula is exact where σ does not round to 0 or 1
    by_hand = -(torch.log(torch.sigmoid(moderate)).mean() + torch.log(1 - torch.sigmoid(moderate)).mean())
    torch.testing.assert_close(gan.discriminator_loss(moderate, moderate), by_hand)


def test_generator_losses():
    ones, zeros = torch.ones_like(LOGITS), torch.zeros_like(LOGITS)
    torch.testing.assert_close(gan.generator_loss(LOGITS), F.binary_cross_entropy_with_logits(LOGITS, ones))
    torch.testing.assert_close(gan.generator_loss(LOGITS, saturating=True),
                               -F.binary_cross_entropy_with_logits(LOGITS, zeros))


def test_saturating_loss_has_no_gradient_when_d_rejects_fakes():
    logit = torch.tensor([-8.0], dtype=torch.float64, requires_grad=True)
    (sat,) = torch.autograd.grad(gan.generator_loss(logit, saturating=True), logit)
    (non_sat,) = torch.autograd.grad(gan.generator_loss(logit), logit)
    p = torch.sigmoid(logit.detach())
    torch.testing.assert_close(sat, -p)        # d/dl log(1 - σ(l)) = -σ(l) ≈ 0
    torch.testing.assert_close(non_sat, p - 1)  # d/dl -log σ(l) = σ(l) - 1 ≈ -1
    assert sat.abs() < 1e-3 < 0.99 < non_sat.abs()


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("mode", ["transpose", "resize"])
def test_dcgan_shapes_and_range(size, mode):
    G = dcgan.Generator(z_dim=16, width=8, image_size=size, upsample=mode)
    D = dcgan.Discriminator(width=8, image_size=size)
    images = G(torch.randn(5, 16))
    assert images.shape == (5, 1, size, size)
    assert images.abs().max() <= 1
    assert D(images).shape == (5,)


def test_dcgan_rejects_other_sizes():
    with pytest.raises(ValueError, match="image_size"):
        dcgan.Generator(image_size=64)


def test_dcgan_init_std():
    G = dcgan.Generator(z_dim=100, width=64)
    w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002


def _tiny_gan(seed=0):
    torch.manual_seed(seed)
    return dcgan.Generator(z_dim=8, width=8), dcgan.Discriminator(width=8)


def test_gan_step_lowers_d_loss_and_leaves_g_to_its_own_step():
    G, D = _tiny_gan()
    real = torch.rand(16, 1, 28, 28) * 2 - 1
    gen = torch.Generator().manual_seed(1)
    fake = G(gan.sample_noise(16, 8, generator=torch.Generator().manual_seed(1))).detach()
    before = gan.discriminator_loss(D(real), D(fake)).item()
    opt_D = torch.optim.SGD(D.parameters(), lr=0.05)
    opt_G = torch.optim.SGD(G.parameters(), lr=0.0)  # G frozen: only D's step acts
    g_before = [p.detach().clone() for p in G.parameters()]
    stats = gan.gan_step(G, D, real, opt_G, opt_D, z_dim=8, generator=gen)
    after = gan.discriminator_loss(D(real), D(fake)).item()
    assert after < before, f"D's loss on the same batch went from {before:.4f} to {after:.4f}"
    assert all(torch.equal(a, b) for a, b in zip(g_before, G.parameters()))
    torch.testing.assert_close(torch.tensor(stats["d_loss"]), torch.tensor(before), atol=1e-5, rtol=1e-5)
    assert 0 <= stats["d_real_acc"] <= 1 and 0 <= stats["d_fake_acc"] <= 1


def test_gan_step_generator_update_fools_a_fixed_d():
    G, D = _tiny_gan(seed=2)
    real = torch.rand(16, 1, 28, 28) * 2 - 1
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(3))
    before = gan.generator_loss(D(G(z))).item()
    opt_G = torch.optim.SGD(G.parameters(), lr=0.05)
    opt_D = torch.optim.SGD(D.parameters(), lr=0.0)  # D frozen
    gan.gan_step(G, D, real, opt_G, opt_D, z_dim=8, generator=torch.Generator().manual_seed(3))
    after = gan.generator_loss(D(G(z))).item()
    assert after < before, f"G's loss against a fixed D went from {before:.4f} to {after:.4f}"


def test_train_gan_records_a_grid_per_epoch():
    G, D = _tiny_gan()
    images = torch.rand(40, 1, 28, 28)
    hist = gan.train_gan(G, D, images, epochs=2, batch_size=16, n_samples=4, device="cpu", progress=False)
    assert len(hist.samples) == 2 and hist.samples[0].shape == (4, 1, 28, 28)
    assert len(hist.d_loss) == 2 * (40 // 16) and len(hist.seconds) == 2
    assert 0 <= hist.samples[-1].min() and hist.samples[-1].max() <= 1


def test_checkerboard_energy_on_known_patterns():
    i, j = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    board = ((i + j) % 2).float() * 2 - 1
    ramp = (i + j).float()
    stack = torch.stack([board, torch.ones(16, 16), ramp]).unsqueeze(1)  # (3, 1, 16, 16)
    energy = gan.checkerboard_energy(stack, border=0)[:, 0]
    torch.testing.assert_close(energy[:2], torch.tensor([1.0, 0.0]))
    assert energy[2] < 0.05  # a smooth ramp barely depends on the 2x2 phase


def test_transposed_conv_checkers_a_constant_input_resize_conv_does_not():
    torch.manual_seed(0)
    energies = {}
    for mode in ("transpose", "resize"):
        G = dcgan.Generator(z_dim=8, width=8, upsample=mode).eval()
        with torch.no_grad():
            out = G.upsample(torch.ones(1, 16, 7, 7))
        energies[mode] = gan.checkerboard_energy(out).item()
    assert energies["transpose"] > 0.1 and energies["resize"] < 1e-6, energies


@pytest.mark.cuda
def test_gan_step_on_cuda():
    G, D = _tiny_gan()
    G, D = G.cuda(), D.cuda()
    real = torch.rand(16, 1, 28, 28, device="cuda") * 2 - 1
    opt_G, opt_D = (torch.optim.Adam(m.parameters(), 2e-4, betas=(0.5, 0.999)) for m in (G, D))
    stats = gan.gan_step(G, D, real, opt_G, opt_D, z_dim=8, generator=torch.Generator().manual_seed(0))
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
