"""Translation and equivariance, against torch.roll and hand-shifted arrays."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_lib import filters
from course_lib.translation import equivariance_error, translate


def test_translate_zero_fill_matches_manual_shift():
    x = torch.arange(1.0, 26.0).reshape(1, 5, 5)
    y = translate(x, 1, -2)
    expected = torch.zeros(1, 5, 5)
    expected[:, 1:, :3] = x[:, :4, 2:]
    assert torch.equal(y, expected)
    assert torch.equal(translate(x, 2, 3, circular=True), torch.roll(x, (2, 3), (-2, -1)))
    with pytest.raises(ValueError, match="larger than the image"):
        translate(x, 5, 0)


def test_circular_convolution_is_exactly_equivariant_and_dense_layer_is_not():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular")
    assert equivariance_error(conv, x, 3, -5) < 1e-6
    strided = nn.Conv2d(3, 4, 2, stride=2)  # equivariant for shifts that are multiples of the stride
    assert equivariance_error(strided, x, 4, 2, scale=2) < 1e-6
    dense = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4 * 16 * 16), nn.Unflatten(1, (4, 16, 16)))
    assert equivariance_error(dense, x, 3, -5) > 0.5
    with pytest.raises(ValueError, match="multiple of the stride"):
        equivariance_error(strided, x, 3, 0, scale=2)


def test_gabor_prefers_the_grating_of_its_orientation():
    kernel = filters.gabor_kernel(21, theta=math.pi / 4, wavelength=6)
    responses = [abs((kernel * filters.grating(21, t, 6)).sum()).item() for t in torch.linspace(0, math.pi, 9)[:-1]]
    assert max(range(8), key=responses.__getitem__) == 2  # theta = pi/4 is the third of 8 angles
