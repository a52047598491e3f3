"""Hand-made filters, receptive fields and parameter counts against independent references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from course_lib import counting, filters
from course_lib.conv import conv2d
from course_lib.receptive_field import Layer, layers_to_cover, receptive_fields


def test_sobel_matches_scipy():
    from scipy import ndimage
    img = torch.rand(12, 13, dtype=torch.float64)
    gx = conv2d(img[None, None], filters.sobel_kernels(torch.float64)[0][None, None])[0, 0]
    # scipy's sobel along axis 1 is the same derivative (it correlates [-1, 0, 1] x [1, 2, 1]).
    ref = ndimage.sobel(img.numpy(), axis=1, mode="constant")[1:-1, 1:-1]
    np.testing.assert_allclose(gx.numpy(), ref)


def test_gaussian_and_laplacian():
    g = filters.gaussian_kernel(7, 1.5, torch.float64)
    assert math.isclose(g.sum().item(), 1.0) and torch.equal(g, g.T)
    ramp = torch.arange(25, dtype=torch.float64).reshape(5, 5)  # a linear image has no curvature
    lap = conv2d(ramp[None, None], filters.laplacian_kernel(torch.float64)[None, None])
    assert torch.allclose(lap, torch.zeros_like(lap))
    with pytest.raises(ValueError, match="odd"):
        filters.gaussian_kernel(4, 1.0)


def test_gabor_matches_skimage():
    from skimage.filters import gabor_kernel
    # skimage's complex kernel: exp(-(x'^2 + y'^2 gamma^2)/(2 sigma^2)) * exp(i(2 pi f x' + offset)) / (2 pi sigma_x sigma_y)
    sigma, wavelength = 3.0, 6.0
    ref = gabor_kernel(1 / wavelength, theta=0, sigma_x=sigma, sigma_y=sigma / 0.5, n_stds=3).real
    size = max(ref.shape)
    ours = filters.gabor_kernel(size, theta=0, wavelength=wavelength, sigma=sigma, gamma=0.5, dtype=torch.float64)
    top, left = (size - ref.shape[0]) // 2, (size - ref.shape[1]) // 2  # skimage's kernel is not square
    ours = ours[top: top + ref.shape[0], left: left + ref.shape[1]]
    ours, ref = ours - ours.mean(), ref - ref.mean()
    cos = (ours.flatten() @ torch.from_numpy(ref).flatten()) / (ours.norm() * np.linalg.norm(ref))
    assert cos > 0.999  # the same shape up to skimage's normalising constant


def test_receptive_field_of_stacked_3x3():
    assert receptive_fields([Layer(3)] * 3) == [3, 5, 7]  # VGG: three 3x3 see what one 7x7 sees
    assert receptive_fields([Layer(3), Layer(2, 2), Layer(3)]) == [3, 4, 8]
    assert receptive_fields([Layer(3, dilation=2)]) == [5]
    assert layers_to_cover(100, Layer(3)) == 50  # the lecture's 100 px cat: "around 50"


def test_receptive_field_by_gradient():
    # Independent check: the input pixels that influence one output unit, found by autograd.
    # Average pooling (not max) so that every pixel of every window passes some gradient back.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.AvgPool2d(2), nn.Conv2d(1, 1, 3, dilation=2))
    for p in net.parameters():
        nn.init.constant_(p, 1.0)
    x = torch.rand(1, 1, 40, 40, requires_grad=True)
    y = net(x)
    y[0, 0, 3, 3].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    expected = receptive_fields([Layer(3), Layer(2, 2), Layer(3, dilation=2)])[-1]
    assert rows.max() - rows.min() + 1 == expected


def test_parameter_formulas_match_torch_modules():
    conv = nn.Conv2d(32, 64, 3)
    assert counting.conv2d_num_params(32, 64, 3) == counting.count_parameters(conv) == 3 * 3 * 32 * 64 + 64
    assert counting.conv2d_num_params(32, 64, 3, groups=32, bias=False) == counting.count_parameters(
        nn.Conv2d(32, 64, 3, groups=32, bias=False))
    assert counting.linear_num_params(784, 10) == counting.count_parameters(nn.Linear(784, 10))


def test_mult_adds_of_a_convolution():
    # D_K * D_K * M * N * D_F * D_F (MobileNet, Howard et al. 2017)
    net = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.Flatten(), nn.Linear(16 * 10 * 10, 5))
    assert counting.count_mult_adds(net, (8, 10, 10)) == 3 * 3 * 8 * 16 * 10 * 10 + 1600 * 5
