"""Gradient checkpointing (same gradients, less saved memory) and transfer-learning helpers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.memory import CheckpointedSequential, saved_tensor_bytes
from course_lib.models.fashion_cnn import FashionCNN, fashion_cnn_best, fashion_cnn_large, fashion_cnn_small
from course_lib.transfer import FrozenBatchNormModel, count_trainable, replace_head, set_trainable


def layers(depth=12, width=256):
    torch.manual_seed(0)
    return [nn.Sequential(nn.Linear(width, width), nn.Tanh()) for _ in range(depth)]


def test_saved_bytes_of_a_plain_chain():
    net = nn.Sequential(*layers())
    x = torch.randn(64, 256)
    nbytes, _ = saved_tensor_bytes(lambda: net(x), exclude=net.parameters())
    # each Linear saves its input, each Tanh its output (= the next Linear's input, the same storage):
    # x and the 12 Tanh outputs, 64 x 256 float32 each
    one = 64 * 256 * 4
    assert nbytes == 13 * one, f"{nbytes / one} activations saved, expected 13"


def test_checkpointing_gives_the_same_gradients_with_less_memory():
    net = nn.Sequential(*layers())
    ckpt = CheckpointedSequential(list(net.children()), segments=4)  # shares the very same layers
    x = torch.randn(64, 256, requires_grad=True)
    plain_bytes, out_plain = saved_tensor_bytes(lambda: net(x), exclude=net.parameters())
    grads_plain = torch.autograd.grad(out_plain.square().sum(), [x, *net.parameters()])
    ckpt_bytes, out_ckpt = saved_tensor_bytes(lambda: ckpt(x), exclude=ckpt.parameters())
    grads_ckpt = torch.autograd.grad(out_ckpt.square().sum(), [x, *ckpt.parameters()])
    torch.testing.assert_close(out_ckpt, out_plain)
    for a, b in zip(grads_ckpt, grads_plain):
        torch.testing.assert_close(a, b)
    one = 64 * 256 * 4
    assert ckpt_bytes == 4 * one, f"{ckpt_bytes / one} activations saved, expected the 4 segment inputs"
    assert plain_bytes == 13 * one


@pytest.mark.parametrize("builder, widths, per", [(fashion_cnn_small, (32, 64), 1), (fashion_cnn_best, (32, 64), 2),
                                                  (fashion_cnn_large, (64, 128), 2)])
def test_fashion_cnn_shapes_and_parameter_count(builder, widths, per):
    model = builder()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # count by the formulas: conv k*k*C_in*C_out (no bias), BN 2*C, linear (in+1)*out
    expected, c = 0, 1
    for w in widths:
        for _ in range(per):
            expected += 9 * c * w + 2 * w
            c = w
    expected += (c * 7 * 7 + 1) * 10
    assert sum(p.numel() for p in model.parameters()) == expected
    with pytest.raises(ValueError, match="divisible"):
        FashionCNN(widths=(8, 8, 8), image_size=28)


def test_freeze_and_replace_head():
    model = fashion_cnn_small()
    set_trainable(model.features, False)
    replace_head(model, 5)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 5)
    trainable, total = count_trainable(model)
    assert trainable == 64 * 7 * 7 * 5 + 5 and total > trainable
    loss = model(torch.randn(3, 1, 28, 28)).sum()
    loss.backward()
    assert all(p.grad is None for p in model.features.parameters())


def test_frozen_batchnorm_keeps_running_stats():
    model = fashion_cnn_small()
    before = model.features[0][1].running_mean.clone()
    wrapped = FrozenBatchNormModel(model, "features").train()
    wrapped(torch.randn(8, 1, 28, 28) + 3)
    torch.testing.assert_close(model.features[0][1].running_mean, before)
    assert model.classifier.training
