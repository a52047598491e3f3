"""VGG-16's forward activations per layer against the table worked out by hand from the paper's
configuration D (CS231n's "VGGNet in detail": every row is H·W·C)."""
from __future__ import annotations

import torch
from torch import nn

from course_lib import models
from course_lib.memory import layer_outputs

# (H, W, C) of every conv / pool / fc output of VGG-16 on a 224x224 image, written out from the paper
VGG16_BY_HAND = ([(224, 224, 64)] * 2 + [(112, 112, 64)] + [(112, 112, 128)] * 2 + [(56, 56, 128)]
                 + [(56, 56, 256)] * 3 + [(28, 28, 256)] + [(28, 28, 512)] * 3 + [(14, 14, 512)]
                 + [(14, 14, 512)] * 3 + [(7, 7, 512)] + [(1, 1, 4096), (1, 1, 4096), (1, 1, 1000)])


def test_vgg16_activations_per_layer_match_the_hand_table():
    with torch.device("meta"):
        vgg = models.vgg16()
    outputs = layer_outputs(vgg, (3, 224, 224))
    assert [kind for _, kind, _, _ in outputs].count("Conv2d") == 13, "VGG-16 has 13 convolutions"
    assert [values for *_, values in outputs] == [h * w * c for h, w, c in VGG16_BY_HAND]
    # 15.09 M values written by the layers; with the 150 528 input values, 15.24 M (61 MB in float32)
    assert sum(values for *_, values in outputs) == 15_087_080


def test_inplace_relu_is_not_counted_and_hooks_are_removed():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    outputs = layer_outputs(net, (1, 8, 8))
    assert [(kind, shape) for _, kind, shape, _ in outputs] == [("Conv2d", (4, 6, 6)), ("Linear", (10,))]
    assert all(not m._forward_hooks for m in net.modules()), "layer_outputs left a hook behind"
