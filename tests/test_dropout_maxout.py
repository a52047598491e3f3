"""Spatial dropout against nn.Dropout2d/3d (same seed, same masks); maxout against max pooling over channels."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.dropout import spatial_dropout
from course_lib.pool import maxout


@pytest.mark.parametrize("shape, torch_layer", [((8, 16, 5, 5), nn.Dropout2d), ((4, 6, 3, 5, 5), nn.Dropout3d)])
def test_spatial_dropout_equals_torch_with_the_same_seed(shape, torch_layer):
    # catches a per-pixel mask, a missing 1/(1-p) scale, or p used as the keep probability
    x = torch.randn(shape)
    torch.manual_seed(0)
    ours = spatial_dropout(x, p=0.3)
    torch.manual_seed(0)
    expected = torch_layer(p=0.3).train()(x)
    torch.testing.assert_close(ours, expected)


def test_spatial_dropout_drops_whole_maps_and_keeps_the_mean():
    torch.manual_seed(1)
    y = spatial_dropout(torch.ones(200, 64, 4, 4), p=0.25)
    per_map = y.flatten(2)
    assert torch.all(per_map.amin(2) == per_map.amax(2)), "a map was partly dropped"
    assert abs((per_map[..., 0] == 0).float().mean().item() - 0.25) < 0.02
    assert abs(y.mean().item() - 1.0) < 0.03


def test_spatial_dropout_is_identity_in_eval_and_rejects_bad_p():
    x = torch.randn(2, 3, 4, 4)
    assert spatial_dropout(x, 0.5, training=False) is x
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        spatial_dropout(x, 1.5)


def test_maxout_is_max_pooling_across_channels():
    # independent reference: 3-D max pooling whose window spans k consecutive channels
    x = torch.randn(2, 12, 5, 7)
    expected = F.max_pool3d(x[:, None], kernel_size=(3, 1, 1))[:, 0]  # (2, 4, 5, 7)
    torch.testing.assert_close(maxout(x, 3), expected)


def test_maxout_groups_consecutive_channels_not_strided_ones():
    x = torch.zeros(1, 4, 1, 1)
    x[0, 1] = 5.0  # channel 1 belongs to group 0 = channels {0, 1}
    assert maxout(x, 2).flatten().tolist() == [5.0, 0.0]
    with pytest.raises(ValueError, match="groups of 3"):
        maxout(x, 3)
