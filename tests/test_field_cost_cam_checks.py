"""The checks of issue 16's extensions: A2's receptive field and network cost, A4's CAM and Grad-CAM.

Their references are measured (a gradient's support, ``numel``, ``FlopCounterMode``, hooks on a whole
model); here they are held against independent numbers (the papers' tables, torchvision's model
tables, the course library's formulas), the checks accept correct code and reject each plausible
bug with a message that names it, and the course library's own answers are refused to a student.
"""
from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from course_lib import cam, counting
from course_lib import receptive_field as rf
from course_lib.grading import (CheckFailure, check_class_activation_map, check_grad_cam, check_layer_costs,
                                check_layers_to_cover, check_network_cost, check_receptive_field)
from course_lib.grading.cam_checks import CamCase, cam_model, reference_cam, reference_grad_cam
from course_lib.grading.network_cost_checks import _measure, describe_layers, network
from course_lib.grading.receptive_field_checks import ALEXNET, VGG16, FieldCase, measured_fields


def failure(check, *args, **kwargs) -> str:
    with pytest.raises(CheckFailure) as info:
        check(*args, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- the references
def test_measured_fields_are_the_published_ones_and_the_recurrence():
    # Araujo, Norris and Sim (2019), Table 1: AlexNet 195, VGG-16 212 (to pool5).
    assert measured_fields(ALEXNET)[-1] == 195
    assert measured_fields(VGG16)[-1] == 212
    rng = random.Random(0)
    for _ in range(20):
        layers = [(rng.randint(1, 5), rng.randint(1, 3), rng.randint(1, 3)) for _ in range(rng.randint(1, 5))]
        assert measured_fields(layers) == rf.receptive_fields([rf.Layer(*layer) for layer in layers]), layers


@pytest.mark.parametrize("name, params, mult_adds", [
    # torchvision's model tables ("GFLOPS" there are multiply-adds), and the papers' 138 M / 11.7 M.
    ("vgg16", 138_357_544, 15.47e9), ("resnet18", 11_689_512, 1.81e9), ("alexnet", 61_100_840, 0.71e9)])
def test_measured_network_costs_are_the_published_ones(name, params, mult_adds):
    model = network(name)
    got_params, got_macs = _measure(model, torch.zeros(1, 3, 224, 224, device="meta"))
    assert got_params == params
    assert round(got_macs / 1e9, 2) == pytest.approx(mult_adds / 1e9)
    # The layer list the student gets holds every parameter of the network.
    layers = describe_layers(model, (3, 224, 224))
    total = sum(counting.conv2d_num_params(l["in_channels"], l["out_channels"], l["kernel_size"], l["bias"], l["groups"])
                if l["type"] == "conv2d" else counting.linear_num_params(l["in_features"], l["out_features"], l["bias"])
                if l["type"] == "linear" else 2 * l["num_features"] for l in layers)
    assert total == params


def test_reference_cam_and_grad_cam_agree_with_the_library_and_each_other():
    for case in (CamCase("gap", class_idx=(1, 3)), CamCase("conv", head="conv_gap_linear", batch=3, seed=2),
                 CamCase("gmp", head="gmp_linear", class_idx=(0, 3), seed=12)):
        body, head, images = cam_model(case)
        with torch.no_grad():
            features = body(images)
            classes = head(features).argmax(1)
        expected = reference_grad_cam(body, head, images, classes)
        library, _ = cam.grad_cam(nn.Sequential(body, head), body, images, classes)
        torch.testing.assert_close(expected, library)
        assert bool((expected == 0).any()) and bool((expected > 0).any())  # the ReLU matters on these cases
        if case.head == "gap_linear":  # CAM's identity: its mean is the logit minus the bias; Grad-CAM = ReLU(CAM)/hw
            maps = reference_cam(features, head[-1].weight, classes)
            logits = head(features)[torch.arange(len(classes)), classes]
            torch.testing.assert_close(maps.mean((1, 2)), logits - head[-1].bias[classes])
            torch.testing.assert_close(expected, torch.relu(maps) / maps[0].numel())


# --------------------------------------------------------------------------- correct code passes
def receptive_field(layers):
    return rf.receptive_fields([rf.Layer(*layer) for layer in layers])


def layers_to_cover(target, kernel_size, stride=1, dilation=1):
    return rf.layers_to_cover(target, rf.Layer(kernel_size, stride, dilation))


def conv2d_cost(in_channels, out_channels, kernel_size, input_size, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                groups=1, bias=True):
    layer = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
    return (counting.conv2d_num_params(in_channels, out_channels, kernel_size, bias, groups),
            counting.count_mult_adds(layer, (in_channels, *input_size)))


def linear_cost(in_features, out_features, bias=True):
    return counting.linear_num_params(in_features, out_features, bias), in_features * out_features


def network_cost(layers, conv=conv2d_cost, linear=linear_cost, bn=lambda c: 2 * c):
    total = [0, 0]
    for layer in layers:
        args = {k: v for k, v in layer.items() if k != "type"}
        cost = (conv(**args) if layer["type"] == "conv2d" else linear(**args) if layer["type"] == "linear"
                else (bn(args["num_features"]), 0))
        total = [total[0] + cost[0], total[1] + cost[1]]
    return tuple(total)


def library_grad_cam(features, head, class_idx):
    model = nn.Sequential(nn.Identity(), head)
    return cam.grad_cam(model, model[0], features, class_idx)[0]


HIDDEN_FIELDS = [FieldCase("AlexNet", ALEXNET, 195), FieldCase("VGG-16", VGG16, 212),
                 FieldCase("mixed", ((7, 2, 1), (3, 1, 3), (3, 2, 1), (5, 1, 2)))]
HIDDEN_CAM = [CamCase("gmp", head="gmp_linear", class_idx=(0, 3), seed=12),
              CamCase("top class, 10 classes", head="conv_gap_linear", classes=10, batch=3, seed=14)]


@pytest.mark.usefixtures("library_answers_allowed")
def test_correct_implementations_pass(capsys):
    check_receptive_field(receptive_field)
    check_receptive_field(receptive_field, cases=HIDDEN_FIELDS)
    check_layers_to_cover(layers_to_cover)
    check_layers_to_cover(layers_to_cover, cases=[(101, 3, 1, 1), (50, 3, 1, 2), (64, 2, 2, 1), (2, 3, 1, 1)])
    check_layer_costs(conv2d_cost, linear_cost)
    check_network_cost(network_cost, networks=("resnet18", "alexnet"))
    check_class_activation_map(cam.class_activation_map)
    check_grad_cam(library_grad_cam)
    check_grad_cam(library_grad_cam, cases=HIDDEN_CAM)
    out = capsys.readouterr().out
    assert "check_receptive_field: all 3 cases passed" in out and "check_grad_cam: all 2 cases passed" in out


# --------------------------------------------------------------------------- bugs are caught and named
@pytest.mark.usefixtures("library_answers_allowed")
def test_receptive_field_bugs_are_caught():
    def no_dilation(layers):
        return receptive_field([(k, s, 1) for k, s, _ in layers])

    def jump_ignores_stride(layers):
        return receptive_field([(k, 1, d) for k, _, d in layers])

    def starts_at_zero(layers):
        return [r - 1 for r in receptive_field(layers)]

    assert "after layer 2 of 3 (kernel_size=3, stride=1, dilation=2): expected a receptive field of 7 pixels, got 5" \
        in failure(check_receptive_field, no_dilation)
    assert "after layer 3 of 3 (kernel_size=3, stride=1, dilation=1): expected a receptive field of 8 pixels, got 6" \
        in failure(check_receptive_field, jump_ignores_stride)
    assert "expected a receptive field of 3 pixels, got 2" in failure(check_receptive_field, starts_at_zero)
    assert "expected 3 fields (one after each layer), got 1" in failure(check_receptive_field, lambda l: [7])
    assert "expected 50 layers (their field: 101 pixels), got 49" in failure(
        check_layers_to_cover, lambda t, k, s=1, d=1: (t - 1) // (k - 1))  # floor, not ceiling


@pytest.mark.usefixtures("library_answers_allowed")
def test_cost_bugs_are_caught():
    def no_bias(*args, bias=True, **kwargs):
        return conv2d_cost(*args, bias=False, **kwargs)

    def flops(*args, **kwargs):
        params, macs = conv2d_cost(*args, **kwargs)
        return params, 2 * macs

    assert "parameters: expected 224 (measured on real layers), got 216" in failure(check_layer_costs, no_bias, linear_cost)
    assert "mult-adds: expected 21,600 (measured on real layers), got 43,200 (off by a factor 2)" in failure(
        check_layer_costs, flops, linear_cost)
    message = failure(check_network_cost, lambda layers: network_cost(layers, bn=lambda c: 0))
    assert "parameters: expected 11,689,512 (measured on real layers), got 11,679,912" in message
    assert "expected a pair (parameters, mult_adds), got 5" in failure(check_network_cost, lambda layers: 5)


@pytest.mark.usefixtures("library_answers_allowed")
def test_cam_bugs_are_caught():
    def no_relu(features, head, class_idx):
        A = features.clone().requires_grad_(True)
        (grads,) = torch.autograd.grad(head(A)[torch.arange(len(class_idx)), class_idx].sum(), A)
        return (grads.mean((2, 3), keepdim=True) * A).sum(1).detach()

    def summed_gradient(features, head, class_idx):
        return library_grad_cam(features, head, class_idx) * features[0, 0].numel()

    def with_bias(features, weight, class_idx):
        return cam.class_activation_map(features, weight, class_idx) + 0.5

    assert "Grad-CAM: tensors are not close!" in failure(check_grad_cam, no_relu)
    assert "Grad-CAM: tensors are not close!" in failure(check_grad_cam, summed_gradient)
    assert "CAM: tensors are not close!" in failure(check_class_activation_map, with_bias)
    assert "wrong shape: expected (2, 5, 5), got (2, 4, 5, 5)" in failure(
        check_class_activation_map, lambda f, w, k: torch.einsum("kc,nchw->nkhw", w, f))


# --------------------------------------------------------------------------- the library's answers are refused
def test_the_librarys_answers_are_refused_to_a_student():
    assert "used course_lib.receptive_field.receptive_fields, the course library's own answer" in failure(
        check_receptive_field, receptive_field)
    assert "used course_lib.counting.conv2d_num_params" in failure(check_layer_costs, conv2d_cost, linear_cost)
    assert "used course_lib.cam.class_activation_map" in failure(check_class_activation_map, cam.class_activation_map)
    assert "used course_lib.cam.grad_cam" in failure(check_grad_cam, library_grad_cam)
