"""Checks for assignment 5's GAN parts: architectures, losses, one alternating step, a short run.

* :func:`check_generator` / :func:`check_discriminator` — output shapes ``(N, 1, 28, 28)`` in
  ``[-1, 1]`` and ``(N,)``, and every (transposed) convolution's output size against the formulas
  ``L_out = (L_in + 2p - d(k-1) - 1) // s + 1`` and ``L_out = (L_in - 1)s - 2p + d(k-1) + p_out + 1``;
  no pooling layers (DCGAN); then the stated architecture, layer by layer (:mod:`~course_lib.grading.gan_spec`).
* :func:`check_gan_losses` — against ``F.binary_cross_entropy_with_logits``: the discriminator's
  loss is the BCE of real logits with targets 1 plus that of fake logits with targets 0; the
  non-saturating generator loss is the BCE of fake logits with targets 1, i.e. ``mean(-log D(G(z)))``.
* :func:`check_train_step` — three steps in a row of the student's ``train_step`` on copies of small
  seeded DCGAN networks (float64, plain SGD) against the same step written here: after each, every
  parameter of both networks and both returned losses must match (gradients left over show).
* :func:`check_short_training` — the student's networks and step, seeded: with the generator frozen
  (learning rate 0) a few steps must raise the discriminator's accuracy on real vs fake images; then
  with the discriminator frozen a few steps must lower its accuracy on fresh fakes.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.data import load_fashion_mnist
from course_lib.grading.compare import call_student, describe_difference, each_case, fail, refuse, sandbox_ready
from course_lib.grading.gan_spec import (conv_size, discriminator_spec, generator_spec, spec_problem,
                                         transposed_conv_size)
from course_lib.models.dcgan import Discriminator, Generator


@dataclass(frozen=True)
class NetCase:
    """A generator ``build_generator(z_dim, width)`` or discriminator ``build_discriminator(width)``
    run on a batch of ``batch`` seeded inputs."""

    name: str
    batch: int
    z_dim: int = 16
    width: int = 8
    seed: int = 0

    def describe(self, kind: str) -> str:
        if kind == "generator":
            return f"build_generator(z_dim={self.z_dim}, width={self.width}), z {(self.batch, self.z_dim)}"
        return f"build_discriminator(width={self.width}), images {(self.batch, 1, 28, 28)}"


NET_CASES = (NetCase("batch of 4", 4), NetCase("batch of 2, z_dim 32, width 16", 2, z_dim=32, width=16, seed=1))


def _run_with_hooks(check, case, params, model, x):
    """The model's output, and for every (transposed) convolution: (module, input shape, output shape)."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, tuple(i[0].shape), tuple(o.shape))))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            out = call_student(check, case.name, params, (), model, x)
    finally:
        for h in hooks:
            h.remove()
    for m, shape_in, shape_out in seen:
        size = transposed_conv_size if isinstance(m, nn.ConvTranspose2d) else conv_size
        formula = tuple(size(shape_in[2 + a], m, a) for a in (0, 1))
        if len(shape_in) == 4 and formula != shape_out[2:]:
            raise fail(check, case.name, params, f"{type(m).__name__} with kernel_size={m.kernel_size}, "
                       f"stride={m.stride}, padding={m.padding}: the formula gives {formula}, the layer "
                       f"returned {shape_out[2:]}")
    return out, seen


def _build(check, case, params, builder, *args, **kwargs) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case.seed)
        model = call_student(check, case.name, params, (), builder, *args, **kwargs)
    if not isinstance(model, nn.Module):
        raise fail(check, case.name, params, f"expected an nn.Module, got {type(model).__name__}")
    pools = [type(m).__name__ for m in model.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d,
                                                                        nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
    if pools:
        raise fail(check, case.name, params, f"DCGAN uses strided convolutions, no pooling; found {pools}")
    return model


@sandbox_ready
def check_generator(build_generator: Callable, cases: Sequence[NetCase] = NET_CASES) -> None:
    """``build_generator(z_dim, width)(z (N, z_dim))`` -> images ``(N, 1, 28, 28)`` in ``[-1, 1]``, made
    by transposed convolutions, different for different ``z``."""
    check = "check_generator"
    for case in each_case(check, cases):
        params = case.describe("generator") + ", eval mode"
        model = _build(check, case, params, build_generator, z_dim=case.z_dim, width=case.width).eval()
        z = torch.randn(case.batch, case.z_dim, generator=torch.Generator().manual_seed(case.seed))
        out, seen = _run_with_hooks(check, case, params, model, z)
        expected = (case.batch, 1, 28, 28)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise fail(check, case.name, params, f"wrong output shape: expected {expected}, got {got}")
        ups = [s for m, _, s in seen if isinstance(m, nn.ConvTranspose2d)]
        if len(ups) < 2:
            raise fail(check, case.name, params, "expected at least two nn.ConvTranspose2d layers "
                       f"(7x7 -> 14x14 -> 28x28), got {len(ups)}")
        if out.abs().max() > 1 + 1e-6:
            raise fail(check, case.name, params, f"images must lie in [-1, 1] (a tanh output), got values in "
                       f"[{out.min().item():.3g}, {out.max().item():.3g}]")
        if case.batch > 1 and torch.allclose(out[0], out[1]):
            raise fail(check, case.name, params, "two different z gave the same image")
        problem = spec_problem(model, generator_spec(case.z_dim, case.width), z, case.seed)
        refuse(check, case.name, params, problem)


@sandbox_ready
def check_discriminator(build_discriminator: Callable, cases: Sequence[NetCase] = NET_CASES) -> None:
    """``build_discriminator(width)(images (N, 1, 28, 28))`` -> one logit per image, ``(N,)``."""
    check = "check_discriminator"
    for case in each_case(check, cases):
        params = case.describe("discriminator") + ", eval mode"
        model = _build(check, case, params, build_discriminator, width=case.width).eval()
        x = torch.rand(case.batch, 1, 28, 28, generator=torch.Generator().manual_seed(case.seed)) * 2 - 1
        out, seen = _run_with_hooks(check, case, params, model, x)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (case.batch,):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise fail(check, case.name, params, f"wrong output shape: expected {(case.batch,)} (one logit per "
                       f"image; flatten the last map), got {got}")
        if not any(m.stride != (1, 1) for m, _, _ in seen if isinstance(m, nn.Conv2d)):
            raise fail(check, case.name, params, "expected strided convolutions (stride 2) to down-sample")
        problem = spec_problem(model, discriminator_spec(case.width), x, case.seed)
        refuse(check, case.name, params, problem)


# ---------------------------------------------------------------------------------------------------
# Losses


@dataclass(frozen=True)
class LossCase:
    """Seeded logits ``real (n_real,)`` and ``fake (n_fake,)``: standard normal times ``scale`` plus ``shift``."""

    name: str
    n_real: int
    n_fake: int
    scale: float = 1.0
    shift: float = 0.0
    seed: int = 0

    def describe(self) -> str:
        return (f"real_logits ({self.n_real},), fake_logits ({self.n_fake},), N(0, 1) x {self.scale:g} + "
                f"{self.shift:g}, torch.float64, seed={self.seed}")

    def logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        real = torch.randn(self.n_real, generator=g, dtype=torch.float64) * self.scale + self.shift
        fake = torch.randn(self.n_fake, generator=g, dtype=torch.float64) * self.scale - self.shift
        return real, fake


LOSS_CASES = (LossCase("8 of each", 8, 8), LossCase("D confident: real high, fake low", 5, 7, shift=3.0, seed=1))


@sandbox_ready
def check_gan_losses(discriminator_loss: Callable, generator_loss: Callable,
                     cases: Sequence[LossCase] = LOSS_CASES) -> None:
    """``discriminator_loss(real_logits, fake_logits)`` and the non-saturating
    ``generator_loss(fake_logits)`` against ``F.binary_cross_entropy_with_logits``, with gradients."""
    check = "check_gan_losses"
    bce = F.binary_cross_entropy_with_logits
    for case in each_case(check, cases):
        params = case.describe()
        real, fake = case.logits()
        # references, and their gradients with respect to the logits
        r, f = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
        d_ref = bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))
        d_grads = torch.autograd.grad(d_ref, (r, f))
        f = fake.clone().requires_grad_(True)
        g_ref = bce(f, torch.ones_like(f))
        (g_grad,) = torch.autograd.grad(g_ref, f)
        for what, fn, args, ref, grads in (
                ("discriminator_loss", discriminator_loss, (real, fake), d_ref, d_grads),
                ("generator_loss", generator_loss, (fake,), g_ref, (g_grad,))):
            inputs = [a.clone().requires_grad_(True) for a in args]
            got = call_student(check, case.name, params, (), fn, *inputs)
            problem = describe_difference(got, ref.detach(), what)
            if problem is None:
                if not got.requires_grad:
                    problem = f"{what}: not differentiable with respect to the logits"
                else:
                    got_grads = torch.autograd.grad(got, inputs, allow_unused=True)
                    for name, g_got, g_exp in zip(("real_logits", "fake_logits") if len(args) == 2 else
                                                  ("fake_logits",), got_grads, grads):
                        problem = problem or describe_difference(
                            g_got if g_got is not None else torch.zeros_like(g_exp), g_exp,
                            f"gradient of {what} with respect to {name}")
            refuse(check, case.name, params, problem)


# ---------------------------------------------------------------------------------------------------
# One alternating step


@dataclass(frozen=True)
class StepCase:
    """Small seeded DCGAN networks (float64) and ``steps`` batches; plain SGD with learning rate ``lr``."""

    name: str
    batch: int = 8
    z_dim: int = 8
    width: int = 4
    lr: float = 0.1
    seed: int = 0
    steps: int = 3  # in a row, on the same networks and optimisers: gradients left from a step show

    def describe(self) -> str:
        return (f"course_lib DCGAN Generator(z_dim={self.z_dim}, width={self.width}) and Discriminator(width="
                f"{self.width}), float64, train mode, SGD(lr={self.lr:g}) for each, {self.steps} steps in a row, "
                f"each on real {(self.batch, 1, 28, 28)}, z_d and z_g {(self.batch, self.z_dim)}, seed={self.seed}")


STEP_CASES = (StepCase("batch of 8"),)


def _reference_step(G, D, opt_G, opt_D, real, z_d, z_g):
    bce = F.binary_cross_entropy_with_logits
    fake = G(z_d).detach()
    real_logits, fake_logits = D(real), D(fake)
    d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    fake_logits = D(G(z_g))
    g_loss = bce(fake_logits, torch.ones_like(fake_logits))
    opt_G.zero_grad()
    g_loss.backward()
    opt_G.step()
    return d_loss.item(), g_loss.item()


def _step_setup(case: StepCase) -> tuple[dict, list]:
    """``{"reference": (G, D, opt_G, opt_D), "student": (...)}``, equal copies, and the steps' batches."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case.seed)
        G0 = Generator(z_dim=case.z_dim, width=case.width).double()
        D0 = Discriminator(width=case.width).double()
    g = torch.Generator().manual_seed(case.seed + 1)
    batches = [(torch.rand(case.batch, 1, 28, 28, generator=g, dtype=torch.float64) * 2 - 1,
                torch.randn(case.batch, case.z_dim, generator=g, dtype=torch.float64),
                torch.randn(case.batch, case.z_dim, generator=g, dtype=torch.float64)) for _ in range(case.steps)]
    runs = {}
    for who in ("reference", "student"):
        G, D = copy.deepcopy(G0).train(), copy.deepcopy(D0).train()
        runs[who] = (G, D, torch.optim.SGD(G.parameters(), lr=case.lr), torch.optim.SGD(D.parameters(), lr=case.lr))
    return runs, batches


def _compare_step(check, case, params, step: str, losses, expected, nets, before) -> None:
    """The student's losses and parameters after one step against the reference's."""
    if not isinstance(losses, (tuple, list)) or len(losses) != 2:
        raise fail(check, case.name, params, f"expected a pair (d_loss, g_loss) of floats, got {losses!r}")
    for what, got, exp in zip((f"d_loss{step}", f"g_loss{step}"), losses, expected):
        value = got.item() if isinstance(got, torch.Tensor) and got.numel() == 1 else got
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value - exp) <= 1e-6 * (1 + abs(exp)):
            raise fail(check, case.name, params, f"{what}: expected {exp:.6f}, got {value!r}")
    for net, ref, got in (("generator", *nets["generator"]), ("discriminator", *nets["discriminator"])):
        for (name, p_ref), (_, p_got) in zip(ref.named_parameters(), got.named_parameters()):
            problem = describe_difference(p_got.detach(), p_ref.detach(), f"{net} parameter {name} after the step{step}")
            if problem:
                moved = (p_got.detach() - before[net][name]).abs().max().item()
                wanted = (p_ref.detach() - before[net][name]).abs().max().item()
                raise fail(check, case.name, params, problem + f"\n  (your step changed it by up to {moved:.3g}, "
                           f"the reference step by up to {wanted:.3g})")


@sandbox_ready
def check_train_step(train_step: Callable, cases: Sequence[StepCase] = STEP_CASES) -> None:
    """``train_step(G, D, opt_G, opt_D, real, z_d, z_g) -> (d_loss, g_loss)``, ``steps`` times in a row: after
    each, both networks' parameters and the two losses (floats, before the updates) against the reference."""
    check = "check_train_step"
    for case in each_case(check, cases):
        params = case.describe()
        runs, batches = _step_setup(case)
        (G_ref, D_ref, *opts_ref), (G_got, D_got, *opts_got) = runs["reference"], runs["student"]
        nets = {"generator": (G_ref, G_got), "discriminator": (D_ref, D_got)}
        for number, batch in enumerate(batches, 1):
            before = {net: {n: p.detach().clone() for n, p in pair[0].named_parameters()} for net, pair in nets.items()}
            expected = _reference_step(G_ref, D_ref, *opts_ref, *(t.clone() for t in batch))
            losses = call_student(check, case.name, params, (), train_step, G_got, D_got, *opts_got,
                                  *(t.clone() for t in batch))
            step = "" if number == 1 else f" (step {number} of {case.steps})"
            _compare_step(check, case, params, step, losses, expected, nets, before)


# ---------------------------------------------------------------------------------------------------
# A short training run


@dataclass(frozen=True)
class TrainingCase:
    """The student's networks (``z_dim``, ``width``) and step on ``batch`` real Fashion-MNIST images."""

    name: str
    d_steps: int = 5
    g_steps: int = 5
    batch: int = 32
    z_dim: int = 16
    width: int = 8
    lr: float = 2e-3
    seed: int = 0

    def describe(self) -> str:
        return (f"build_generator(z_dim={self.z_dim}, width={self.width}), build_discriminator(width={self.width}), "
                f"Adam(lr={self.lr:g}, betas=(0.5, 0.999)); {self.d_steps} steps with the generator frozen "
                f"(lr 0), then {self.g_steps} with the discriminator frozen; batches of {self.batch} "
                f"Fashion-MNIST training images, seed={self.seed}")


TRAINING_CASES = (TrainingCase("5 + 5 steps, batch 32"),)


@torch.no_grad()
def _accuracy(D, real, fake) -> tuple[float, float]:
    """Shares of real images with logit > 0 and of fakes with logit < 0, measured as in training (a copy
    of D in train mode, real and fake batches apart), so that the nets' BatchNorm buffers stay as they were."""
    D = copy.deepcopy(D).train()
    return (D(real) > 0).double().mean().item(), (D(fake) < 0).double().mean().item()


@sandbox_ready
def check_short_training(train_step: Callable, build_generator: Callable, build_discriminator: Callable,
                         cases: Sequence[TrainingCase] = TRAINING_CASES) -> None:
    """A seeded run of the student's step: freezing G, D's accuracy (real and fake together) must rise
    by at least 0.2 and end above 0.75; then freezing D, its accuracy on fresh fakes must fall by at
    least 0.2."""

    check = "check_short_training"
    images, _ = load_fashion_mnist("train")
    for case in each_case(check, cases):
        _short_training(check, case, images, train_step, build_generator, build_discriminator)


def _short_training(check: str, case: TrainingCase, images: torch.Tensor, train_step: Callable,
                    build_generator: Callable, build_discriminator: Callable) -> None:
    """One case of :func:`check_short_training`: D learns with G frozen, then G fools the frozen D."""
    params = case.describe()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case.seed)
        G = call_student(check, case.name, params, (), build_generator, z_dim=case.z_dim, width=case.width)
        D = call_student(check, case.name, params, (), build_discriminator, width=case.width)
    g = torch.Generator().manual_seed(case.seed)
    order = torch.randperm(len(images), generator=g)[: (case.d_steps + case.g_steps + 1) * case.batch]
    batches = images[order].reshape(-1, case.batch, 1, 28, 28) * 2 - 1  # [-1, 1]
    z_eval = torch.randn(256, case.z_dim, generator=g)
    real_eval = batches[-1]

    def accuracy():  # of D on held-out real images and on fresh fakes
        with torch.no_grad():
            fakes = copy.deepcopy(G).train()(z_eval)
        return _accuracy(D, real_eval, fakes)

    opt_G = torch.optim.Adam(G.parameters(), lr=case.lr, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=case.lr, betas=(0.5, 0.999))

    def run(n, first, frozen, trained):
        for group in frozen.param_groups:
            group["lr"] = 0.0
        for group in trained.param_groups:
            group["lr"] = case.lr
        for b in range(first, first + n):
            z_d = torch.randn(case.batch, case.z_dim, generator=g)
            z_g = torch.randn(case.batch, case.z_dim, generator=g)
            call_student(check, case.name, params, (), train_step, G, D, opt_G, opt_D, batches[b], z_d, z_g)

    real0, fake0 = accuracy()
    before = (real0 + fake0) / 2
    run(case.d_steps, 0, frozen=opt_G, trained=opt_D)  # phase 1: the generator is frozen
    real1, fake1 = accuracy()
    after = (real1 + fake1) / 2
    if not (after >= before + 0.2 and after >= 0.75):
        raise fail(check, case.name, params,
                   f"with the generator frozen, {case.d_steps} steps should teach the discriminator to tell real "
                   f"from fake (accuracy up by 0.2 or more, to 0.75 or more): its accuracy went from {before:.3f} "
                   f"(real {real0:.2f}, fake {fake0:.2f}) to {after:.3f} (real {real1:.2f}, fake {fake1:.2f})")
    run(case.g_steps, case.d_steps, frozen=opt_D, trained=opt_G)  # phase 2: the discriminator is frozen
    _, fake2 = accuracy()
    if not fake2 <= fake1 - 0.2:
        raise fail(check, case.name, params,
                   f"with the discriminator frozen, {case.g_steps} generator steps should fool it more often "
                   f"(its accuracy on fakes down by 0.2 or more): it went from {fake1:.3f} to {fake2:.3f}")
    print(f"  accuracy of D: {before:.2f} -> {after:.2f} with G frozen; on fakes {fake1:.2f} -> {fake2:.2f} "
          "with D frozen")
