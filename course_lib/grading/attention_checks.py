"""Checks for assignment 4's attention parts: squeeze-excitation and spatial (softmax) attention.

* :func:`check_squeeze_excitation` builds the student's module, copies into it the weights of a
  seeded ``torchvision.ops.SqueezeExcitation`` (same parameter names ``fc1``/``fc2``) and compares
  the outputs, in float64.
* :func:`check_spatial_softmax` and :func:`check_attention_pool` compare with the formulas
  evaluated in NumPy (float64): weights ``a = exp(s) / sum_{i,j} exp(s)`` over the ``H·W``
  positions of each map, and the pooled vector ``z_{n,c} = sum_{i,j} a_{n,i,j} x_{n,c,i,j}``.

Like the other checks, each raises :class:`~course_lib.grading.compare.CheckFailure` naming the
case, its inputs and the difference, and prints one line when every case passes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from course_lib.grading.compare import call_student, describe_difference, each_case, fail, refuse, sandbox_ready


@dataclass(frozen=True)
class SECase:
    """``SqueezeExcitation(channels, squeeze_channels)`` on a seeded input ``(N, channels, H, W)``."""

    name: str
    input_shape: tuple[int, int, int, int]
    squeeze_channels: int
    seed: int = 0

    def describe(self) -> str:
        return (f"SqueezeExcitation(input_channels={self.input_shape[1]}, squeeze_channels={self.squeeze_channels}), "
                f"input {self.input_shape}, torch.float64, seed={self.seed}")


@dataclass(frozen=True)
class AttentionCase:
    """Seeded scores ``(N, 1, H, W)`` (times ``scale``) and features ``(N, C, H, W)``."""

    name: str
    features_shape: tuple[int, int, int, int]
    scale: float = 1.0
    seed: int = 0

    def describe(self) -> str:
        N, C, H, W = self.features_shape
        return (f"scores {(N, 1, H, W)} (standard normal x {self.scale:g}), features {self.features_shape}, "
                f"torch.float64, seed={self.seed}")

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        N, C, H, W = self.features_shape
        scores = torch.randn(N, 1, H, W, generator=g, dtype=torch.float64) * self.scale
        features = torch.randn(N, C, H, W, generator=g, dtype=torch.float64)
        return scores, features


SE_CASES = (
    SECase("8 channels squeezed to 2", (2, 8, 5, 5), 2),
    SECase("16 channels squeezed to 4, non-square map", (3, 16, 4, 6), 4, seed=1),
)

ATTENTION_CASES = (
    AttentionCase("one image, 4x4 map", (1, 3, 4, 4)),
    AttentionCase("batch of 3, non-square map", (3, 2, 3, 5), seed=1),
)


@sandbox_ready
def check_squeeze_excitation(squeeze_excitation: Callable, cases: Sequence[SECase] = SE_CASES) -> None:
    """``squeeze_excitation(input_channels, squeeze_channels)`` (a class or a builder returning an
    ``nn.Module`` with sub-modules ``fc1``, ``fc2`` as in torchvision) against
    ``torchvision.ops.SqueezeExcitation`` with the same weights."""
    from torchvision.ops import SqueezeExcitation as Reference

    check = "check_squeeze_excitation"
    for case in each_case(check, cases):
        params = case.describe()
        C = case.input_shape[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(case.seed)
            reference = Reference(C, case.squeeze_channels).double()
            # torchvision initialises the biases to small values; make them matter
            for p in reference.parameters():
                nn.init.normal_(p, std=0.5)
        g = torch.Generator().manual_seed(case.seed + 100)
        x = torch.randn(case.input_shape, generator=g, dtype=torch.float64)
        module = call_student(check, case.name, params, (), squeeze_excitation, C, case.squeeze_channels)
        if not isinstance(module, nn.Module):
            raise fail(check, case.name, params, f"expected an nn.Module, got {type(module).__name__}")
        module = module.double()
        try:
            module.load_state_dict(reference.state_dict())
        except RuntimeError as err:
            expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
            got = {k: tuple(v.shape) for k, v in module.state_dict().items()}
            raise fail(check, case.name, params,
                       f"its parameters are not those of torchvision's SqueezeExcitation "
                       f"(two 1x1 convolutions named fc1 and fc2):\n  expected {expected}\n  got      {got}") from err
        with torch.no_grad():
            expected_out = reference(x)
            got = call_student(check, case.name, params, (), module, x)
        problem = describe_difference(got, expected_out)
        refuse(check, case.name, params, problem)


def _softmax_positions(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last two axes (all positions of each map), from the definition."""
    e = np.exp(scores - scores.max(axis=(2, 3), keepdims=True))
    return e / e.sum(axis=(2, 3), keepdims=True)


@sandbox_ready
def check_spatial_softmax(spatial_softmax: Callable, cases: Sequence[AttentionCase] = ATTENTION_CASES) -> None:
    """``spatial_softmax(scores (N, 1, H, W)) -> weights (N, 1, H, W)``, summing to 1 over ``(H, W)``."""
    check = "check_spatial_softmax"
    for case in each_case(check, cases):
        scores, _ = case.tensors()
        expected = torch.from_numpy(_softmax_positions(scores.numpy()))
        got = call_student(check, case.name, case.describe(), (), spatial_softmax, scores.clone())
        problem = describe_difference(got, expected, "weights")
        if problem and isinstance(got, torch.Tensor) and got.shape == expected.shape:
            sums = got.detach().sum(dim=(2, 3)).flatten()
            problem += f"\n  your weights sum to {[round(float(s), 4) for s in sums]} over (H, W); they must sum to 1"
        refuse(check, case.name, case.describe(), problem)


@sandbox_ready
def check_attention_pool(attention_pool: Callable, cases: Sequence[AttentionCase] = ATTENTION_CASES) -> None:
    """``attention_pool(features (N, C, H, W), scores (N, 1, H, W)) -> (N, C)``: the softmax-weighted
    sum of the feature vectors over positions."""
    check = "check_attention_pool"
    for case in each_case(check, cases):
        scores, features = case.tensors()
        a = _softmax_positions(scores.numpy())  # (N, 1, H, W)
        expected = torch.from_numpy(np.einsum("nhw,nchw->nc", a[:, 0], features.numpy()))
        got = call_student(check, case.name, case.describe(), (), attention_pool, features.clone(), scores.clone())
        problem = describe_difference(got, expected, "pooled")
        refuse(check, case.name, case.describe(), problem)
