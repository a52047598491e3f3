"""course_lib.models against torchvision's parameter counts and the papers' tables.

Parameter and mult-add counts are taken on the ``meta`` device (shapes without memory or
arithmetic), so even VGG-16 costs nothing; a few real forward passes check the numbers flow.
"""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from course_lib import models
from course_lib.counting import count_mult_adds, count_parameters
from course_lib.models.efficientnet import EFFICIENTNET_CONFIGS

META = torch.device("meta")


def params_on_meta(builder, *args, **kwargs) -> int:
    with META:
        return count_parameters(builder(*args, **kwargs))


def mult_adds_on_meta(model_builder, input_shape) -> int:
    with META:
        return count_mult_adds(model_builder(), input_shape)


# (ours, torchvision's builder with its arguments): architectures that are the same
SAME_AS_TORCHVISION = {
    "alexnet": (lambda: models.alexnet("torchvision"), lambda: torchvision.models.alexnet()),
    "vgg16": (models.vgg16, lambda: torchvision.models.vgg16()),
    "vgg16_bn": (lambda: models.vgg16(batch_norm=True), lambda: torchvision.models.vgg16_bn()),
    "googlenet": (lambda: models.googlenet(branch5_kernel=3, norm_layer=nn.BatchNorm2d),
                  lambda: torchvision.models.googlenet(aux_logits=True, init_weights=False)),
    "resnet18": (models.resnet18, lambda: torchvision.models.resnet18()),
    "resnet34": (models.resnet34, lambda: torchvision.models.resnet34()),
    "resnet50": (models.resnet50, lambda: torchvision.models.resnet50()),
    "densenet121": (models.densenet121, lambda: torchvision.models.densenet121()),
    "efficientnet_b0": (models.efficientnet_b0, lambda: torchvision.models.efficientnet_b0()),
    "efficientnet_b1": (lambda: models.efficientnet("b1"), lambda: torchvision.models.efficientnet_b1()),
}


@pytest.mark.parametrize("name", SAME_AS_TORCHVISION)
def test_parameter_count_equals_torchvision(name):
    ours, theirs = SAME_AS_TORCHVISION[name]
    assert params_on_meta(ours) == params_on_meta(theirs), f"{name}: parameter count differs from torchvision"


def test_parameter_tensors_have_torchvision_shapes_resnet50():
    # same total could hide a wrong layer compensated by another: compare the sorted shapes too
    with META:
        ours = sorted(tuple(p.shape) for p in models.resnet50().parameters())
        theirs = sorted(tuple(p.shape) for p in torchvision.models.resnet50().parameters())
    assert ours == theirs


# The papers' and lectures' figures: (builder, reference count, relative tolerance, source)
PAPER_PARAMETERS = {
    "lenet5": (models.lenet5, 60_000, 0.05, "LeCun et al. 1998 / lecture: about 60 000"),
    "alexnet": (models.alexnet, 60_965_224, 0.0, "Krizhevsky et al. 2012 with the two-GPU groups: 60 965 224"),
    "vgg16": (models.vgg16, 138e6, 0.005, "Simonyan & Zisserman / lecture: 138 M"),
    "googlenet": (lambda: models.googlenet(aux_logits=False), 6.8e6, 0.05, "Szegedy et al. 2015 Table 1 / MobileNet Table 8: 6.8 M"),
    "resnet50": (models.resnet50, 25.6e6, 0.01, "He et al. 2016 / lecture: about 25 M (25.6 M)"),
    "mobilenet_v1": (models.mobilenet_v1, 4.2e6, 0.01, "Howard et al. 2017 Table 8: 4.2 M"),
    "efficientnet_b0": (models.efficientnet_b0, 5.3e6, 0.01, "Tan & Le 2019 Table 2: 5.3 M"),
}


@pytest.mark.parametrize("name", PAPER_PARAMETERS)
def test_parameter_count_matches_paper(name):
    builder, reference, rtol, source = PAPER_PARAMETERS[name]
    count = params_on_meta(builder)
    assert abs(count - reference) <= rtol * reference, f"{name}: {count:,} parameters, {source}"


def test_lenet5_layers_match_the_paper():
    net = models.lenet5()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    counts = [count_parameters(m) for m in convs + linears]
    # paper section II.B: C1 156, C5 48 120, F6 10 164; C3 fully connected: 16·(6·25+1); output 10·(84+1)
    assert counts == [156, 2416, 48_120, 10_164, 850]


def test_googlenet_modules_match_table1_in_units_of_1024():
    # Table 1 of the paper lists parameters in K = 1024 (weights only), e.g. 3a: 163 328 / 1024 = 159.5
    table = {"3a": 159, "3b": 380, "4a": 364, "4b": 437, "4d": 580, "4e": 840, "5b": 1388}
    with META:
        net = models.googlenet(aux_logits=False)
    for name, k in table.items():
        weights = sum(p.numel() for n, p in net.blocks[name].named_parameters() if n.endswith("weight"))
        assert abs(weights / 1024 - k) <= 0.02 * k, f"Inception {name}: {weights / 1024:.1f}K, Table 1 says {k}K"


# MobileNet paper: Table 6 (width multiplier) and Table 7 (resolution), million mult-adds and parameters
@pytest.mark.parametrize("width, mult_adds, params", [(1.0, 569, 4.2), (0.75, 325, 2.6), (0.5, 149, 1.3),
                                                      (0.25, 41, 0.5)])
def test_mobilenet_width_multiplier_matches_table6(width, mult_adds, params):
    with META:
        net = models.mobilenet_v1(width=width)
        assert count_mult_adds(net, (3, 224, 224)) / 1e6 == pytest.approx(mult_adds, rel=0.01)
        assert count_parameters(net) / 1e6 == pytest.approx(params, abs=0.05)


@pytest.mark.parametrize("side, mult_adds", [(192, 418), (160, 290), (128, 186)])
def test_mobilenet_resolution_multiplier_matches_table7(side, mult_adds):
    assert mult_adds_on_meta(models.mobilenet_v1, (3, side, side)) / 1e6 == pytest.approx(mult_adds, rel=0.01)


@pytest.mark.parametrize("builder, million, source", [
    (lambda: models.googlenet(aux_logits=False), 1550, "MobileNet Table 8"),
    (models.vgg16, 15300, "MobileNet Table 8"),
    (models.efficientnet_b0, 390, "EfficientNet Table 2: 0.39 B FLOPS"),
])
def test_mult_adds_match_papers(builder, million, source):
    assert mult_adds_on_meta(builder, (3, 224, 224)) / 1e6 == pytest.approx(million, rel=0.025), source


def test_mobilenet_mult_adds_on_a_real_forward_pass():
    torch.manual_seed(0)
    assert count_mult_adds(models.mobilenet_v1(), (3, 224, 224)) == pytest.approx(569e6, rel=0.001)


def test_separable_cost_ratio_equals_counted_mult_adds():
    M, N, k, side = 32, 64, 3, 14
    standard = nn.Conv2d(M, N, k, padding=1, bias=False)
    separable = models.DepthwiseSeparableConv(M, N, norm_layer=None)
    ratio = count_mult_adds(separable, (M, side, side)) / count_mult_adds(standard, (M, side, side))
    assert ratio == pytest.approx(1 / N + 1 / k ** 2, rel=1e-12)
    assert models.separable_cost_ratio(N, k) == pytest.approx(ratio, rel=1e-12)


def test_plain_resnet_has_no_shortcut_parameters():
    with META:
        tv = torchvision.models.resnet18()
        projections = sum(count_parameters(getattr(tv, f"layer{i}")[0].downsample) for i in (2, 3, 4))
        plain = models.resnet18(residual=False)
    assert count_parameters(plain) == count_parameters(tv) - projections


def test_efficientnet_compound_scaling():
    depth, width, side = models.compound_scaling(1.0)
    assert (depth, width, side) == (pytest.approx(1.2), pytest.approx(1.1), 258)  # 224·1.15
    assert depth * width ** 2 * (side / 224) ** 2 == pytest.approx(2.0, abs=0.1)  # α·β²·γ² ≈ 2
    assert models.compound_scaling(0.0) == (1.0, 1.0, 224)
    assert EFFICIENTNET_CONFIGS["b1"][2] == 240


# ImageNet forward shapes, on meta (no arithmetic)
IMAGENET = {
    "alexnet": models.alexnet, "vgg16": models.vgg16, "googlenet": models.googlenet,
    "resnet18": models.resnet18, "resnet50": models.resnet50, "densenet121": models.densenet121,
    "mobilenet_v1": models.mobilenet_v1, "efficientnet_b0": models.efficientnet_b0,
}


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_output_shape(name):
    with META:
        net = IMAGENET[name]().eval()
        assert net(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)


def test_lenet5_and_googlenet_training_outputs():
    assert models.lenet5()(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    with META:
        out = models.googlenet().train()(torch.zeros(2, 3, 224, 224))
    assert isinstance(out, models.GoogLeNetOutputs)
    assert out.logits.shape == out.aux1.shape == out.aux2.shape == (2, 1000)


def test_resnet18_real_forward_at_224():
    torch.manual_seed(0)
    net = models.resnet18().eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


def test_googlenet_loss_adds_weighted_aux_terms():
    torch.manual_seed(0)
    logits, aux1, aux2 = torch.randn(3, 4, 5).unbind(0)
    target = torch.tensor([0, 1, 2, 4])
    outputs = models.GoogLeNetOutputs(logits, aux1, aux2)
    expected = sum(w * nn.CrossEntropyLoss()(z, target) for w, z in ((1, logits), (0.3, aux1), (0.3, aux2)))
    torch.testing.assert_close(models.googlenet_loss(outputs, target), expected)
    torch.testing.assert_close(models.googlenet_loss(logits, target), nn.CrossEntropyLoss()(logits, target))


# Small variants for 28×28 Fashion-MNIST: shapes, and one optimisation step lowers the loss
SMALL = {
    "lenet5": lambda: models.lenet5(small=True),
    "alexnet": lambda: models.alexnet(num_classes=10, in_channels=1, small=True, width=0.125),
    "vgg16": lambda: models.vgg16(num_classes=10, in_channels=1, small=True, width=0.125, batch_norm=True),
    "googlenet": lambda: models.googlenet(num_classes=10, in_channels=1, small=True, width=0.125,
                                          norm_layer=nn.BatchNorm2d),
    "resnet18": lambda: models.resnet18(num_classes=10, in_channels=1, small=True, width=0.25),
    "resnet50": lambda: models.resnet50(num_classes=10, in_channels=1, small=True, width=0.125),
    "densenet121": lambda: models.densenet121(num_classes=10, in_channels=1, small=True, width=0.25),
    "mobilenet_v1": lambda: models.mobilenet_v1(num_classes=10, in_channels=1, small=True, width=0.25),
    "efficientnet_b0": lambda: models.efficientnet_b0(num_classes=10, in_channels=1, small=True),
}


@pytest.fixture(scope="module")
def fashion_batch():
    from course_lib.data import load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    return images[:8], labels[:8]


def _loss(net, images, labels, seed):
    torch.manual_seed(seed)  # the same dropout / stochastic-depth masks before and after the step
    return models.googlenet_loss(net(images), labels)


@pytest.mark.parametrize("name", SMALL)
def test_small_variant_learns_in_one_step(name, fashion_batch):
    images, labels = fashion_batch
    torch.manual_seed(0)
    net = SMALL[name]().train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    before = _loss(net, images, labels, seed=1)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = _loss(net, images, labels, seed=1)
    assert after < before, f"{name}: loss {before.item():.4f} → {after.item():.4f} after one Adam step"
    net.eval()
    with torch.no_grad():
        assert net(images[:2]).shape == (2, 10)


def test_bad_arguments_raise_value_error_naming_them():
    with pytest.raises(ValueError, match="variant='vgg'"):
        models.alexnet("vgg")
    with pytest.raises(ValueError, match="config='Z'"):
        models.vgg("Z")
    with pytest.raises(ValueError, match="width"):
        models.resnet18(width=0)
    with pytest.raises(ValueError, match="variant='b9'"):
        models.efficientnet("b9")
    with pytest.raises(ValueError, match="n=4"):
        models.FactorizedConv2d(8, 8, 4)


def test_factorized_conv_is_a_rank_one_square_conv():
    torch.manual_seed(0)
    n = 5
    factorized = models.FactorizedConv2d(1, 1, n, norm_layer=None, activation=None).double()
    row, column = factorized[0][0], factorized[1][0]  # 1×n then n×1
    nn.init.zeros_(row.bias)
    nn.init.zeros_(column.bias)
    x = torch.randn(2, 1, 12, 12, dtype=torch.float64)
    kernel = column.weight[0, 0] @ row.weight[0, 0]  # (n, 1) @ (1, n): the outer product v uᵀ
    expected = F.conv2d(x, kernel.view(1, 1, n, n), padding=n // 2)
    torch.testing.assert_close(factorized(x), expected)


@pytest.mark.parametrize("n", [3, 7])
def test_factorized_conv_parameters(n):
    C = 16
    square = nn.Conv2d(C, C, n, bias=False)
    factorized = models.FactorizedConv2d(C, C, n, norm_layer=nn.BatchNorm2d)
    conv_weights = sum(m.weight.numel() for m in factorized.modules() if isinstance(m, nn.Conv2d))
    assert conv_weights / square.weight.numel() == pytest.approx(2 / n)


@pytest.mark.parametrize("n, field", [(None, 5), (7, 13)])
def test_inception_factorized_keeps_the_receptive_field(n, field):
    # the "5×5" branch is two stacked k×k convs: its centre output sees a (2k-1)² window
    torch.manual_seed(0)
    block = models.InceptionFactorized(4, 2, 2, 2, 2, 2, 2, n=n, norm_layer=None)
    for p in block.parameters():  # positive weights on a positive input: no ReLU is ever off
        nn.init.constant_(p, 0.1)
    x = torch.rand(1, 4, 21, 21, requires_grad=True)
    block.branch3(x)[0, :, 10, 10].sum().backward()
    rows, cols = x.grad[0].abs().sum(0).nonzero().unbind(1)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (field, field)
    assert block(x).shape == (1, block.out_channels, 21, 21)


def test_make_divisible_matches_torchvision():
    from torchvision.models._utils import _make_divisible

    for value in [3.2, 16, 24 * 1.1, 40 * 1.1, 44.8, 320 * 1.4, 1000]:
        assert models.make_divisible(value) == _make_divisible(value, 8), value


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_resnet_state_dict_loads_strictly(name):
    """Layers named as torchvision's (``conv1``, ``layer1``, a block's ``downsample``): its randomly initialised
    state_dict loads with ``strict=True`` and both networks compute the same logits. Catches a renamed layer
    (``shortcut``, ``stem``) or a block wired differently."""
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)().eval()
    ours = getattr(models, name)().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
    assert ours.stem[0] is ours.conv1 and ours.stages[1] is ours.layer2
