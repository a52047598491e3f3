"""LeCun/Xavier/He initialisation against torch.nn.init and the variance argument."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_lib.init import activation_stds, fans, init_, init_std


@pytest.mark.parametrize("shape", [(30, 20), (16, 8, 3, 3), (7, 5, 2, 4)])
def test_fans_match_torch(shape):
    expected = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert fans(torch.empty(shape)) == expected


@pytest.mark.parametrize("shape", [(400, 300), (64, 32, 3, 3)])
def test_std_matches_torch_init(shape):
    fan_in, fan_out = fans(torch.empty(shape))
    # torch.nn.init's documented std: kaiming_normal_ gain/sqrt(fan_in), xavier_normal_ sqrt(2/(in+out))
    assert init_std("he", fan_in, fan_out) == pytest.approx(nn.init.calculate_gain("relu") / math.sqrt(fan_in))
    assert init_std("lecun", fan_in, fan_out) == pytest.approx(nn.init.calculate_gain("linear") / math.sqrt(fan_in))
    assert init_std("xavier", fan_in, fan_out) == pytest.approx(math.sqrt(2.0 / (fan_in + fan_out)))
    torch.manual_seed(0)
    for scheme, torch_init in [("he", lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")),
                               ("xavier", nn.init.xavier_normal_)]:
        ours = init_(torch.empty(shape), scheme)
        theirs = torch_init(torch.empty(shape))
        assert ours.std().item() == pytest.approx(theirs.std().item(), rel=0.03), scheme
        assert abs(ours.mean().item()) < 0.05 * ours.std().item()


@pytest.mark.parametrize("scheme", ["lecun", "xavier", "he"])
def test_uniform_has_the_same_variance_and_torch_bound(scheme):
    w = init_(torch.empty(500, 400), scheme, "uniform", generator=torch.Generator().manual_seed(1))
    std = init_std(scheme, 400, 500)
    assert w.std().item() == pytest.approx(std, rel=0.02)
    assert w.abs().max().item() <= math.sqrt(3) * std
    if scheme == "xavier":  # torch: a = gain * sqrt(6 / (fan_in + fan_out))
        assert math.sqrt(3) * std == pytest.approx(math.sqrt(6 / 900))


def test_bad_scheme_is_named():
    with pytest.raises(ValueError, match="kaiming"):
        init_(torch.empty(3, 3), "kaiming")


def test_activation_variance_through_depth():
    """Theory: Var z_l = n Var w E[x^2]. He+ReLU and LeCun+identity keep it; LeCun+ReLU halves it per layer."""
    depth = 20
    he_relu = activation_stds("he", nn.ReLU(), depth=depth)
    lecun_linear = activation_stds("lecun", nn.Identity(), depth=depth)
    lecun_relu = activation_stds("lecun", nn.ReLU(), depth=depth)
    assert 0.6 < he_relu[-1] / he_relu[0] < 1.6, he_relu
    assert 0.6 < lecun_linear[-1] / lecun_linear[0] < 1.6, lecun_linear
    expected = math.sqrt(0.5) ** (depth - 1)  # std shrinks by 1/sqrt(2) per ReLU layer
    assert 0.5 * expected < (lecun_relu[-1] / lecun_relu[0]).item() < 2 * expected, lecun_relu
