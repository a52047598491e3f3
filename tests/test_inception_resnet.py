"""Inception-ResNet's block A against the paper's figures (Szegedy et al., 2017, Figures 10 and 16)."""
from __future__ import annotations

import torch
from torch import nn

from course_lib.models import InceptionResNetA
from course_lib.models.inception_resnet import V1_BRANCHES


def conv_bn(c_in, c_out, k):
    """A convolution without bias followed by BatchNorm (γ, β): the paper's conv layers."""
    return c_in * c_out * k * k + 2 * c_out


def test_v2_block_count_from_figure_16():
    # 35x35x384 input; 1x1 32 | 1x1 32 -> 3x3 32 | 1x1 32 -> 3x3 48 -> 3x3 64; 1x1 (linear, with bias) 128 -> 384
    by_hand = (conv_bn(384, 32, 1)
               + conv_bn(384, 32, 1) + conv_bn(32, 32, 3)
               + conv_bn(384, 32, 1) + conv_bn(32, 48, 3) + conv_bn(48, 64, 3)
               + 128 * 384 + 384)
    assert by_hand == 137_568
    assert sum(p.numel() for p in InceptionResNetA().parameters()) == by_hand


def test_v1_block_count_from_figure_10():
    by_hand = (conv_bn(256, 32, 1) + conv_bn(256, 32, 1) + conv_bn(32, 32, 3)
               + conv_bn(256, 32, 1) + 2 * conv_bn(32, 32, 3) + 96 * 256 + 256)
    block = InceptionResNetA(256, V1_BRANCHES)
    assert sum(p.numel() for p in block.parameters()) == by_hand


def test_block_keeps_the_shape_and_is_relu_of_x_plus_scaled_residual():
    torch.manual_seed(0)
    block = InceptionResNetA(64, ((8,), (8, 8), (8, 12, 16)), scale=0.2).eval()
    x = torch.randn(2, 64, 9, 9)
    residual = block.project(torch.cat([b(x) for b in block.branches], 1))
    torch.testing.assert_close(block(x), torch.relu(x + 0.2 * residual))
    assert block(x).shape == x.shape
    block.scale = 0.0  # catches a scale applied after the addition, or a missing shortcut
    torch.testing.assert_close(block(x), torch.relu(x))
