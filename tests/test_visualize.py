"""course_lib.visualize: feature maps, top-activating images, gradients and the Zeiler–Fergus deconvnet.

References: slicing the network by hand, brute-force sorting, the analytic gradient of a
convolution, and autograd (a deconvnet through convolutions and max pools *is* the gradient; with
ReLUs it is the gradient with the ReLU rule replaced by rectifying the backward signal).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.visualize import activation_gradient, deconvnet, feature_maps, top_activating


def small_net(seed=0, relu=True):
    torch.manual_seed(seed)
    act = (lambda: nn.ReLU()) if relu else (lambda: nn.Identity())
    return nn.Sequential(nn.Conv2d(1, 4, 5, padding=2), act(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, stride=2), act(), nn.MaxPool2d(3, stride=2, ceil_mode=True),
                         nn.Flatten(), nn.LazyLinear(3)).double()


def test_feature_maps_equal_the_sliced_network():
    net = small_net()
    x = torch.randn(5, 1, 29, 29, dtype=torch.float64)
    net(x)  # materialise the lazy layer
    torch.testing.assert_close(feature_maps(net, net[4], x), net[:5](x))


def test_feature_maps_survive_an_inplace_relu():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(inplace=True))
    x = torch.randn(2, 1, 8, 8)
    maps = feature_maps(net, net[0], x)
    assert (maps < 0).any(), "the conv output was overwritten by the in-place ReLU"
    torch.testing.assert_close(maps, net[0](x).detach())
    grad = activation_gradient(net, net[0], x, channel=1)  # must not fail on the in-place ReLU
    assert grad.shape == x.shape


def test_top_activating_sorts_channel_maxima():
    net = small_net()
    x = torch.randn(40, 1, 20, 20, dtype=torch.float64)
    net(x)
    maxima = net[:2](x)[:, 3].amax(dim=(1, 2))
    indices, values = top_activating(net, net[1], x, channel=3, k=5, batch_size=7)
    assert indices.tolist() == maxima.argsort(descending=True)[:5].tolist()
    torch.testing.assert_close(values, maxima.sort(descending=True).values[:5])


def test_activation_gradient_of_a_convolution_is_its_kernel_at_the_argmax():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3).double()  # no padding: output (i, j) sees x[:, i:i+3, j:j+3]
    x = torch.randn(4, 2, 9, 9, dtype=torch.float64)
    grad = activation_gradient(conv, conv, x, channel=1)
    out = conv(x)[:, 1].detach()
    for n in range(4):
        i, j = divmod(out[n].argmax().item(), out.shape[-1])
        expected = torch.zeros(2, 9, 9, dtype=torch.float64)
        expected[:, i:i + 3, j:j + 3] = conv.weight[1].detach()
        torch.testing.assert_close(grad[n], expected)


def test_deconvnet_without_relu_is_the_gradient():
    # transposed conv = conv's backward, unpooling with switches = max pool's backward (lecture seed 000)
    net = small_net(relu=False)
    x = torch.randn(3, 1, 29, 29, dtype=torch.float64, requires_grad=True)  # odd size: stride-2 leftovers
    layer, channel = 5, 2
    out = net[:layer + 1](x)[:, channel].flatten(1)  # (N, h·w)
    strongest = out.max(dim=1).values
    (grad,) = torch.autograd.grad((strongest.detach() * strongest).sum(), x)
    torch.testing.assert_close(deconvnet(net, x, layer, channel), grad)


class _DeconvReLU(torch.autograd.Function):
    """ReLU forward; backward rectifies the incoming signal instead of gating it (Zeiler–Fergus)."""

    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


class _Rule(nn.Module):
    def forward(self, x):
        return _DeconvReLU.apply(x)


def test_deconvnet_with_relu_rectifies_the_backward_signal():
    net = small_net(relu=True)
    reference = nn.Sequential(*[_Rule() if isinstance(m, nn.ReLU) else m for m in net])
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    layer, channel = 4, 5
    out = reference[:layer + 1](x)[:, channel].flatten(1)
    strongest = out.max(dim=1).values
    (expected,) = torch.autograd.grad((strongest.detach() * strongest).sum(), x)
    result = deconvnet(net, x, layer, channel)
    torch.testing.assert_close(result, expected)
    plain_grad = activation_gradient(net, net[layer], x, channel)  # differs: the ReLU rule matters
    assert not torch.allclose(result, plain_grad * strongest.detach().view(-1, 1, 1, 1))


def test_deconvnet_on_alexnet_features_keeps_the_input_shape():
    from course_lib.models import alexnet

    net = alexnet("torchvision", width=0.125).eval()
    x = torch.randn(1, 3, 224, 224)
    assert deconvnet(net.features, x, layer_index=len(net.features) - 1, channel=0).shape == x.shape


def test_deconvnet_rejects_unsupported_layers():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    with pytest.raises(ValueError, match="BatchNorm2d"):
        deconvnet(net, torch.randn(1, 1, 8, 8), 1, 0)
