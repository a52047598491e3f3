"""course_lib.attention against torchvision's SqueezeExcitation, torch.softmax and the papers' formulas."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from course_lib import attention


def test_spatial_softmax_is_softmax_over_positions():
    scores = torch.randn(3, 2, 5, 7, dtype=torch.float64)
    weights = attention.spatial_softmax(scores)
    ref = torch.softmax(scores.flatten(2), dim=-1).view_as(scores)
    torch.testing.assert_close(weights, ref)
    # a softmax over one axis only (a plausible bug) would not sum to 1 over the whole map
    torch.testing.assert_close(weights.sum(dim=(2, 3)), torch.ones(3, 2, dtype=torch.float64))


def test_attention_pool_with_constant_scores_is_global_average_pooling():
    pool = attention.AttentionPool2d(6).double()
    nn.init.zeros_(pool.score.weight)  # equal scores -> weights 1/(HW)
    x = torch.randn(4, 6, 5, 3, dtype=torch.float64)
    torch.testing.assert_close(pool(x), F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_attention_pool_matches_the_formula_and_can_select_one_position():
    torch.manual_seed(0)
    pool = attention.AttentionPool2d(3).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    s = torch.einsum("c,nchw->nhw", pool.score.weight.view(3), x) + pool.score.bias  # s_ij = w.x_ij + b
    a = torch.softmax(s.flatten(1), dim=1).view(2, 4, 4)
    torch.testing.assert_close(pool(x), torch.einsum("nhw,nchw->nc", a, x))
    # a strongly peaked score picks the vector at the marked position
    x = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    x[0, 0, 2, 1] = 1.0  # marker channel
    x[0, 1:, 2, 1] = torch.tensor([5.0, -7.0])
    with torch.no_grad():
        pool.score.weight.zero_()
        pool.score.weight[0, 0] = 50.0
    torch.testing.assert_close(pool(x)[0], x[0, :, 2, 1], atol=1e-12, rtol=0)
    assert sum(p.numel() for p in pool.parameters()) == 3 + 1


@pytest.mark.parametrize("C,S", [(16, 4), (24, 8), (40, 10)])
def test_squeeze_excitation_equals_torchvision(C, S):
    ours = attention.SqueezeExcitation(C, S)
    ref = torchvision.ops.SqueezeExcitation(C, S)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, C, 7, 5)
    torch.testing.assert_close(ours(x), ref(x))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


def test_squeeze_excitation_custom_activations_and_gate_range():
    ours = attention.SqueezeExcitation(8, 2, activation=nn.SiLU, scale_activation=nn.Hardsigmoid)
    ref = torchvision.ops.SqueezeExcitation(8, 2, activation=nn.SiLU, scale_activation=nn.Hardsigmoid)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 8, 4, 4)
    torch.testing.assert_close(ours(x), ref(x))
    s = attention.SqueezeExcitation(8, 2).scale(x)
    assert s.shape == (3, 8, 1, 1) and bool(((s > 0) & (s < 1)).all())


def test_cbam_matches_the_paper_equations():
    torch.manual_seed(0)
    C, r = 32, 8
    block = attention.CBAM(C, reduction=r, kernel_size=7).double()
    x = torch.randn(2, C, 9, 6, dtype=torch.float64)
    fc1, _, fc2 = block.channel.mlp

    def mlp(v):  # (N, C) -> (N, C), shared weights as in Woo et al. eq. 2
        return F.linear(F.relu(F.linear(v, fc1.weight.flatten(1), fc1.bias)), fc2.weight.flatten(1), fc2.bias)

    m_c = torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.flatten(2).max(dim=2).values))
    x1 = m_c[:, :, None, None] * x
    desc = torch.stack([x1.mean(dim=1), x1.max(dim=1).values], dim=1)
    m_s = torch.sigmoid(F.conv2d(desc, block.spatial.conv.weight, block.spatial.conv.bias, padding=3))
    torch.testing.assert_close(block(x), m_s * x1)
    # parameters: MLP C*C/r + C/r + C/r*C + C, spatial conv 2*7*7 + 1
    assert sum(p.numel() for p in block.parameters()) == 2 * C * (C // r) + C // r + C + 2 * 49 + 1


def test_gates_keep_the_shape_and_reject_bad_arguments():
    x = torch.randn(2, 16, 5, 5)
    assert attention.ChannelAttention(16, 4)(x).shape == (2, 16, 1, 1)
    assert attention.SpatialAttention(3)(x).shape == (2, 1, 5, 5)
    with pytest.raises(ValueError, match="kernel_size"):
        attention.SpatialAttention(4)
    with pytest.raises(ValueError, match="reduction"):
        attention.ChannelAttention(4, 16)
    with pytest.raises(ValueError, match="shape"):
        attention.spatial_softmax(torch.randn(3, 4))


@pytest.mark.parametrize("kind", ["none", "pool", "se", "cbam"])
def test_attention_cnn_variants(kind):
    from course_lib.models.attention_cnn import AttentionCNN

    model = AttentionCNN(attention=kind, widths=(8, 16, 32)).eval()
    x = torch.randn(3, 1, 28, 28)
    assert model(x).shape == (3, 10)
    assert model.features(x).shape == (3, 32, 7, 7)
    blocks = {"se": attention.SqueezeExcitation, "cbam": attention.CBAM}
    if kind in blocks:
        assert sum(isinstance(m, blocks[kind]) for m in model.modules()) == 3  # one per stage
    with pytest.raises(ValueError, match="attention"):
        AttentionCNN(attention="spatial")


def test_attention_cnn_gap_head_makes_cam_exact():
    from course_lib.cam import class_activation_map
    from course_lib.models.attention_cnn import AttentionCNN

    model = AttentionCNN(widths=(8, 16, 32)).double().eval()
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    maps = class_activation_map(model.features(x), model.fc.weight, 7)
    torch.testing.assert_close(maps.mean(dim=(1, 2)), model(x)[:, 7] - model.fc.bias[7])
