"""course_lib.cam: CAM against its definition, Grad-CAM against a direct autograd computation."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib import cam


class GapNet(nn.Module):
    """conv features -> global average pooling -> linear: the architecture CAM needs."""

    def __init__(self, K=5, C=6):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, C, 3, padding=1), nn.ReLU(), nn.Conv2d(C, C, 3, padding=1))
        self.fc = nn.Linear(C, K)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def test_cam_mean_is_logit_minus_bias_and_equals_a_1x1_convolution():
    torch.manual_seed(0)
    net = GapNet().double()
    x = torch.randn(3, 1, 8, 7, dtype=torch.float64)
    A = net.features(x)
    logits = net(x)
    for k in range(5):
        maps = cam.class_activation_map(A, net.fc.weight, k)
        torch.testing.assert_close(maps.mean(dim=(1, 2)), logits[:, k] - net.fc.bias[k])
        ref = F.conv2d(A, net.fc.weight[k].view(1, -1, 1, 1))[:, 0]  # the classifier as a 1x1 conv
        torch.testing.assert_close(maps, ref)
    per_image = cam.class_activation_map(A, net.fc.weight, torch.tensor([4, 0, 2]))
    torch.testing.assert_close(per_image[1], cam.class_activation_map(A, net.fc.weight, 0)[1])


def test_grad_cam_equals_relu_cam_over_area_for_a_gap_linear_head():
    torch.manual_seed(1)
    net = GapNet().double().eval()
    x = torch.randn(2, 1, 6, 5, dtype=torch.float64)
    maps, logits = cam.grad_cam(net, net.features, x, class_idx=3)
    expected = F.relu(cam.class_activation_map(net.features(x), net.fc.weight, 3)) / (6 * 5)
    torch.testing.assert_close(maps, expected)
    torch.testing.assert_close(logits, net(x))


def test_grad_cam_matches_direct_autograd_for_a_nonlinear_head():
    torch.manual_seed(2)
    body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3))
    head = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4 * 4, 16), nn.Tanh(), nn.Linear(16, 7))
    net = nn.Sequential(body, head).double()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    maps, logits = cam.grad_cam(net, body, x)  # default class: the argmax
    A = body(x).detach().requires_grad_()
    out = head(A)
    top = out.argmax(dim=1)
    ref = []
    for n in range(3):  # one image at a time, straight from Selvaraju et al. eq. 1-2
        (g,) = torch.autograd.grad(out[n, top[n]], A, retain_graph=True)
        alpha = g[n].mean(dim=(1, 2))
        ref.append(F.relu((alpha[:, None, None] * A[n]).sum(0)))
    torch.testing.assert_close(maps, torch.stack(ref).detach())
    assert maps.shape == (3, 4, 4)


def test_grad_cam_works_under_no_grad_with_frozen_weights_and_removes_its_hook():
    net = GapNet().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        maps, _ = cam.grad_cam(net, net.features, x, class_idx=1)
    assert maps.shape == (2, 6, 6) and bool((maps >= 0).all())
    assert not net.features._forward_hooks
    with pytest.raises(ValueError, match="sub-module"):
        cam.grad_cam(net, nn.Conv2d(1, 1, 1), x)


def test_upsample_map_size_and_range():
    maps = torch.rand(2, 4, 4)
    maps[1] = 3.0  # a flat map must not become NaN
    up = cam.upsample_map(maps, (28, 28))
    assert up.shape == (2, 28, 28) and not up.isnan().any()
    assert up[0].min().item() == 0.0 and abs(up[0].max().item() - 1.0) < 1e-6
    # the maximum stays where it was (upper-left block -> upper-left region)
    peaked = torch.zeros(1, 4, 4)
    peaked[0, 0, 0] = 1
    up = cam.upsample_map(peaked, (16, 16))[0]
    assert up[:4, :4].mean() > up[12:, 12:].mean()
