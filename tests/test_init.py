"""LeCun/Xavier/He initialisation against torch.nn.init and the variance argument."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from course_lib.init import activation_stds, deep_mlp, fans, init_, init_std, layer_gradient_norms


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


def _loss(model, x, y):
    return nn.functional.cross_entropy(model(x), y)


def test_layer_gradient_norms_match_centred_differences():
    """Independent of autograd: each ∂L/∂w by (L(w + h) - L(w - h)) / 2h, in float64 on a small network.
    Catches a norm of the wrong layer (the output layer's, or shifted by one) or of the wrong quantity."""
    torch.manual_seed(0)
    model = deep_mlp(nn.Tanh, depth=3, width=4, in_features=6, num_classes=3, scheme="xavier").double()
    x, y = torch.randn(5, 2, 3, dtype=torch.float64), torch.tensor([0, 2, 1, 1, 0])
    expected, h = [], 1e-6
    for linear in [m for m in model if isinstance(m, nn.Linear)][:-1]:
        grad = torch.zeros_like(linear.weight)
        with torch.no_grad():
            for index in itertools.product(*map(range, linear.weight.shape)):
                saved = linear.weight[index].item()
                linear.weight[index] = saved + h
                up = _loss(model, x, y).item()
                linear.weight[index] = saved - h
                down = _loss(model, x, y).item()
                linear.weight[index] = saved
                grad[index] = (up - down) / (2 * h)
        expected.append(grad.norm().item())
    got = layer_gradient_norms(model, x, y)
    assert len(got) == 3
    assert got == pytest.approx(expected, rel=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_deep_mlp_layers_and_initialisation():
    torch.manual_seed(0)
    net = deep_mlp(nn.ReLU, depth=4, width=300, in_features=784, scheme="he")
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert isinstance(net[0], nn.Flatten) and [m.in_features for m in linears] == [784, 300, 300, 300, 300]
    assert linears[-1].out_features == 10 and all(float(m.bias.abs().sum()) == 0 for m in linears[:-1])
    assert float(linears[1].weight.std()) == pytest.approx(math.sqrt(2 / 300), rel=0.02)  # He: Var w = 2/n_in
    plain = deep_mlp(nn.Sigmoid, depth=2, width=8, scheme=0.5)
    assert not isinstance(plain[0], nn.Flatten) and float(plain[0].bias.abs().sum()) > 0
