"""conv_nd against PyTorch's own 1-D, 2-D and 3-D convolutions, and its parameter formula against nn.ConvNd."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.conv_nd import conv_nd, conv_nd_num_params

TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@pytest.mark.parametrize("d, size, kernel, stride, padding", [
    (1, (50,), (7,), 1, 3),              # a signal, 'same' padding
    (1, (50,), (4,), 3, 0),              # stride that does not divide: catches an off-by-one in out_size
    (2, (11, 9), (3, 2), (2, 1), (1, 0)),  # non-square kernel, per-axis stride: catches swapped axes
    (3, (6, 10, 8), (3, 3, 3), 1, 1),    # video: (T, H, W)
    (3, (5, 9, 7), (2, 3, 1), (1, 2, 2), (0, 1, 0)),
])
def test_conv_nd_matches_torch(d, size, kernel, stride, padding):
    g = torch.Generator().manual_seed(d)
    x = torch.randn(2, 3, *size, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, *kernel, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    expected = TORCH_CONV[d](x, w, b, stride=stride, padding=padding)
    torch.testing.assert_close(conv_nd(x, w, b, stride=stride, padding=padding), expected)


def test_conv_nd_refuses_mismatched_channels():
    with pytest.raises(ValueError, match="does not fit weight"):
        conv_nd(torch.zeros(1, 2, 10), torch.zeros(4, 3, 3))


@pytest.mark.parametrize("layer, kernel", [(nn.Conv1d(8, 16, 5), (5,)), (nn.Conv2d(8, 16, 5), (5, 5)),
                                           (nn.Conv3d(8, 16, (3, 5, 5)), (3, 5, 5))])
def test_num_params_matches_torch_layers(layer, kernel):
    assert conv_nd_num_params(8, 16, kernel) == sum(p.numel() for p in layer.parameters())
