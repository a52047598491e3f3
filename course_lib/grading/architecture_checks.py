"""Checks for assignment 2's architecture parts: residual blocks, the Inception module, the
depthwise-separable convolution and its cost, and a trained network loaded from a weight file.

References are independent of the student's code: torchvision's ``BasicBlock`` / ``Bottleneck``
(the student's block gets the reference's random weights and BatchNorm statistics, then both run
in float64), functional ``F.conv2d`` / ``F.max_pool2d`` / ``F.batch_norm`` pipelines for the
Inception module and the separable convolution, parameter counts by formula
(:func:`course_lib.counting.conv2d_num_params`) and mult-adds measured by
:func:`course_lib.counting.count_mult_adds` on real ``nn.Conv2d`` layers. Every check raises
:class:`~course_lib.grading.compare.CheckFailure` naming the case, its inputs, expected vs got.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.counting import conv2d_num_params, count_mult_adds, count_parameters
from course_lib.data import load_fashion_mnist
from course_lib.grading.compare import call_student, describe_difference, each_case, fail, passed, refuse, sandbox_ready
from course_lib.grading.weights import load_state_dict_file
from course_lib.train import predict


# --------------------------------------------------------------------------- residual blocks
@dataclass(frozen=True)
class BlockCase:
    """A residual block ``Block(in_channels, channels, stride)`` on a seeded input ``(N, in_channels, H, W)``."""

    name: str
    in_channels: int
    channels: int
    stride: int = 1
    batch: int = 2
    size: tuple[int, int] = (8, 8)
    seed: int = 0

    def describe(self) -> str:
        return (f"in_channels={self.in_channels}, channels={self.channels}, stride={self.stride}, "
                f"input ({self.batch}, {self.in_channels}, {self.size[0]}, {self.size[1]}), seed={self.seed}")


BASIC_CASES = (
    BlockCase("same shape: identity shortcut", 16, 16, 1),
    BlockCase("stride 2 and more channels: projection shortcut", 16, 32, 2, seed=1),
)
BOTTLENECK_CASES = (
    BlockCase("same shape (in_channels = 4 * channels): identity shortcut", 64, 16, 1),
    BlockCase("stride 2 and more channels: projection shortcut", 32, 16, 2, seed=1),
)


def _randomize(module: nn.Module, seed: int) -> None:
    """Seeded weights and BatchNorm statistics far from the defaults (γ=1, β=0, μ=0, σ²=1), so that a
    misplaced or missing layer changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if not tensor.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            if tensor.dim() > 1:  # a weight matrix or kernel, scaled by its fan-in
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif leaf in ("running_var", "weight"):
                tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
            else:  # biases, running means
                tensor.copy_(torch.randn(tensor.shape, generator=g) * 0.2)


def _reference_block(kind: str, case: BlockCase) -> nn.Module:
    from torchvision.models.resnet import BasicBlock, Bottleneck

    block = BasicBlock if kind == "basic" else Bottleneck
    out_channels = case.channels * block.expansion
    downsample = None
    if case.stride != 1 or case.in_channels != out_channels:  # the paper's option B: 1x1 conv + BN
        downsample = nn.Sequential(nn.Conv2d(case.in_channels, out_channels, 1, case.stride, bias=False),
                                   nn.BatchNorm2d(out_channels))
    return block(case.in_channels, case.channels, case.stride, downsample)


def _check_block(kind: str, student_cls: Callable, cases: Sequence[BlockCase]) -> None:
    check = "check_basic_block" if kind == "basic" else "check_bottleneck"
    torchvision_name = "BasicBlock" if kind == "basic" else "Bottleneck"
    layers = "conv1, bn1, conv2, bn2" + (", conv3, bn3" if kind == "bottleneck" else "")
    for case in each_case(check, cases):
        params = case.describe()
        student = call_student(check, case.name, params, (), student_cls, case.in_channels, case.channels,
                               stride=case.stride)
        if not isinstance(student, nn.Module):
            raise fail(check, case.name, params, f"expected an nn.Module, got {type(student).__name__}")
        reference = _reference_block(kind, case)
        expected_n, got_n = count_parameters(reference), count_parameters(student)
        if got_n != expected_n:
            shortcut = "a projection (1x1 conv + BatchNorm)" if reference.downsample is not None else "the identity"
            raise fail(check, case.name, params,
                       f"wrong number of parameters: expected {expected_n:,} (torchvision's {torchvision_name}, "
                       f"shortcut: {shortcut}, convolutions without bias), got {got_n:,}")
        # Give the student's block the reference's random weights: its layers are named as torchvision's.
        _randomize(reference, case.seed)
        reference_state, names = reference.state_dict(), set(student.state_dict())
        missing, unexpected = sorted(set(reference_state) - names), sorted(names - set(reference_state))
        if missing or unexpected:
            raise fail(check, case.name, params,
                       f"the block's layers are not named as in torchvision's {torchvision_name}: missing "
                       f"{missing}, unexpected {unexpected}. Name them {layers} and the projection "
                       "`downsample = nn.Sequential(conv 1x1, BatchNorm2d)`")
        state = dict(reference_state)
        try:
            student.load_state_dict(state)
        except RuntimeError as err:
            raise fail(check, case.name, params, f"torchvision's weights do not fit your layers: {err}") from err
        g = torch.Generator().manual_seed(case.seed + 1000)
        x = torch.randn(case.batch, case.in_channels, *case.size, generator=g, dtype=torch.float64)
        for mode in ("eval", "train"):  # running statistics, then batch statistics
            reference.double().train(mode == "train")
            student.double().train(mode == "train")
            with torch.no_grad():
                expected = reference(x.clone())
                got = call_student(check, case.name, params, (), student, x.clone())
            problem = describe_difference(got, expected, f"output in {mode}() mode")
            refuse(check, case.name, params, problem)


@sandbox_ready
def check_basic_block(BasicBlock: Callable, cases: Sequence[BlockCase] = BASIC_CASES) -> None:
    """``BasicBlock(in_channels, channels, stride)`` against torchvision's ``BasicBlock`` (with a
    projection shortcut where the shape changes): parameter count, then outputs in eval and train mode."""
    _check_block("basic", BasicBlock, cases)


@sandbox_ready
def check_bottleneck(Bottleneck: Callable, cases: Sequence[BlockCase] = BOTTLENECK_CASES) -> None:
    """``Bottleneck(in_channels, channels, stride)`` (output ``4 * channels``, stride on the 3x3 conv)
    against torchvision's ``Bottleneck``."""
    _check_block("bottleneck", Bottleneck, cases)


# --------------------------------------------------------------------------- Inception module
@dataclass(frozen=True)
class InceptionCase:
    """``Inception(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)`` on ``(N, in_channels, H, W)``.
    All seven channel numbers differ, so that every weight is found by its shape."""

    name: str
    in_channels: int
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    size: tuple[int, int] = (7, 7)
    batch: int = 2
    seed: int = 0

    def convs(self) -> dict[str, tuple[int, int, int]]:
        """Each convolution of the module: ``(in, out, kernel)``."""
        return {"branch 1: 1x1": (self.in_channels, self.ch1x1, 1),
                "branch 2: 1x1 reduce": (self.in_channels, self.ch3x3red, 1),
                "branch 2: 3x3": (self.ch3x3red, self.ch3x3, 3),
                "branch 3: 1x1 reduce": (self.in_channels, self.ch5x5red, 1),
                "branch 3: 5x5": (self.ch5x5red, self.ch5x5, 5),
                "branch 4: pool projection 1x1": (self.in_channels, self.pool_proj, 1)}

    def describe(self) -> str:
        return (f"Inception({self.in_channels}, ch1x1={self.ch1x1}, ch3x3red={self.ch3x3red}, ch3x3={self.ch3x3}, "
                f"ch5x5red={self.ch5x5red}, ch5x5={self.ch5x5}, pool_proj={self.pool_proj}), input "
                f"({self.batch}, {self.in_channels}, {self.size[0]}, {self.size[1]}), seed={self.seed}")


INCEPTION_CASES = (
    InceptionCase("small module", 8, 4, 3, 6, 2, 5, 7),
    InceptionCase("GoogLeNet's 3a, channels / 8", 24, 8, 12, 16, 2, 4, 5, size=(6, 6), seed=1),
)


@sandbox_ready
def check_inception(Inception: Callable, cases: Sequence[InceptionCase] = INCEPTION_CASES) -> None:
    """The Inception module of GoogLeNet (Szegedy et al., 2015, Figure 2b): convolutions with bias,
    each followed by ReLU, ``[1x1 | 1x1 → 3x3 | 1x1 → 5x5 | 3x3 max pool (stride 1) → 1x1]``
    concatenated along the channels, spatial size kept.

    Reference: the parameter count by formula, then ``F.conv2d``/``F.max_pool2d`` with the student's
    (randomised) weights, each found by its shape.
    """
    check = "check_inception"
    for case in each_case(check, cases):
        params = case.describe()
        student = call_student(check, case.name, params, (), Inception, case.in_channels, case.ch1x1, case.ch3x3red,
                               case.ch3x3, case.ch5x5red, case.ch5x5, case.pool_proj)
        if not isinstance(student, nn.Module):
            raise fail(check, case.name, params, f"expected an nn.Module, got {type(student).__name__}")
        convs = case.convs()
        expected_n = sum(conv2d_num_params(i, o, k) for i, o, k in convs.values())
        got_n = count_parameters(student)
        if got_n != expected_n:
            raise fail(check, case.name, params,
                       f"wrong number of parameters: expected {expected_n:,} (six convolutions with bias, no "
                       f"BatchNorm: " + ", ".join(f"{n} {i}->{o}" for n, (i, o, _) in convs.items()) + f"), got {got_n:,}")
        _randomize(student, case.seed)
        student.double().eval()
        by_shape = {tuple(p.shape): p.detach() for p in student.parameters()}
        weights = {}
        for what, (i, o, k) in convs.items():
            w, b = by_shape.get((o, i, k, k)), by_shape.get((o,))
            if w is None or b is None:
                raise fail(check, case.name, params, f"{what}: no convolution with weight ({o}, {i}, {k}, {k}) "
                           f"and bias ({o},) among your parameters {sorted(by_shape)}")
            weights[what] = (w, b)

        def conv(x, what, padding=0):
            return F.relu(F.conv2d(x, *weights[what], padding=padding))

        g = torch.Generator().manual_seed(case.seed + 1000)
        x = torch.randn(case.batch, case.in_channels, *case.size, generator=g, dtype=torch.float64)
        expected = torch.cat([
            conv(x, "branch 1: 1x1"),
            conv(conv(x, "branch 2: 1x1 reduce"), "branch 2: 3x3", padding=1),
            conv(conv(x, "branch 3: 1x1 reduce"), "branch 3: 5x5", padding=2),
            conv(F.max_pool2d(x, 3, stride=1, padding=1), "branch 4: pool projection 1x1"),
        ], dim=1)
        with torch.no_grad():
            got = call_student(check, case.name, params, (), student, x)
        problem = describe_difference(got, expected, "output (branches concatenated in the order 1x1, 3x3, 5x5, pool)")
        refuse(check, case.name, params, problem)


# --------------------------------------------------------------------------- depthwise-separable convolution
@dataclass(frozen=True)
class SeparableCase:
    """``DepthwiseSeparableConv(in_channels, out_channels, stride)`` on ``(N, in_channels, H, W)``."""

    name: str
    in_channels: int
    out_channels: int
    stride: int = 1
    size: tuple[int, int] = (8, 8)
    batch: int = 2
    seed: int = 0

    def describe(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, stride={self.stride}, input "
                f"({self.batch}, {self.in_channels}, {self.size[0]}, {self.size[1]}), seed={self.seed}")


SEPARABLE_CASES = (
    SeparableCase("stride 1", 8, 16),
    SeparableCase("stride 2", 6, 4, stride=2, seed=1),
)


@sandbox_ready
def check_depthwise_separable(DepthwiseSeparableConv: Callable, cases: Sequence[SeparableCase] = SEPARABLE_CASES) -> None:
    """MobileNet's block (Howard et al., 2017, Figure 3): depthwise 3x3 conv (``groups=in_channels``,
    padding 1, the stride) → BN → ReLU → pointwise 1x1 conv → BN → ReLU, convolutions without bias.

    Reference: the parameter count ``9 M + 2 M + M N + 2 N`` and the same pipeline written with
    ``F.conv2d(groups=M)`` and ``F.batch_norm`` (eval mode) on the student's randomised weights.
    """
    check = "check_depthwise_separable"
    for case in each_case(check, cases):
        params = case.describe()
        M, N = case.in_channels, case.out_channels
        student = call_student(check, case.name, params, (), DepthwiseSeparableConv, M, N, stride=case.stride)
        if not isinstance(student, nn.Module):
            raise fail(check, case.name, params, f"expected an nn.Module, got {type(student).__name__}")
        expected_n = 9 * M + 2 * M + M * N + 2 * N
        got_n = count_parameters(student)
        if got_n != expected_n:
            hint = ""
            if got_n - expected_n == 9 * M * (M - 1):
                hint = " — your 3x3 convolution mixes channels: a depthwise convolution needs groups=in_channels"
            raise fail(check, case.name, params,
                       f"wrong number of parameters: expected {expected_n:,} = depthwise 3*3*{M} + BN 2*{M} + "
                       f"pointwise {M}*{N} + BN 2*{N}, got {got_n:,}{hint}")
        _randomize(student, case.seed)
        student.double().eval()
        by_shape = {tuple(p.shape): p.detach() for p in student.parameters() if p.dim() == 4}
        depthwise, pointwise = by_shape.get((M, 1, 3, 3)), by_shape.get((N, M, 1, 1))
        norms = {m.num_features: m for m in student.modules() if isinstance(m, nn.BatchNorm2d)}
        if depthwise is None or pointwise is None or M not in norms or N not in norms:
            raise fail(check, case.name, params,
                       f"expected conv weights ({M}, 1, 3, 3) and ({N}, {M}, 1, 1) and BatchNorm2d({M}), "
                       f"BatchNorm2d({N}); found weights {sorted(by_shape)} and BatchNorm2d {sorted(norms)}")

        def bn(x, m):
            return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

        g = torch.Generator().manual_seed(case.seed + 1000)
        x = torch.randn(case.batch, M, *case.size, generator=g, dtype=torch.float64)
        y = F.relu(bn(F.conv2d(x, depthwise, stride=case.stride, padding=1, groups=M), norms[M]))
        expected = F.relu(bn(F.conv2d(y, pointwise), norms[N]))
        with torch.no_grad():
            got = call_student(check, case.name, params, (), student, x)
        problem = describe_difference(got, expected)
        refuse(check, case.name, params, problem)


#: ``(M, N, D_K, D_F)``: input and output channels, kernel size, output feature-map size.
COST_CASES = ((8, 16, 3, 8), (32, 64, 3, 14), (3, 5, 5, 7))


@sandbox_ready
def check_conv_costs(conv_mult_adds: Callable, separable_mult_adds: Callable, separable_num_params: Callable,
                     cases: Sequence[tuple[int, int, int, int]] = COST_CASES) -> None:
    """The cost formulas of MobileNet (section 3.1) against counts measured on real layers.

    ``conv_mult_adds(M, N, D_K, D_F)`` = ``D_K² M N D_F²`` (a standard convolution),
    ``separable_mult_adds(M, N, D_K, D_F)`` = ``D_K² M D_F² + M N D_F²``,
    ``separable_num_params(M, N, D_K)`` = ``D_K² M + M N`` (no bias) — measured with
    :func:`~course_lib.counting.count_mult_adds` / ``count_parameters`` on ``nn.Conv2d`` layers with
    "same" padding on a ``D_F x D_F`` input.
    """
    check = "check_conv_costs"
    for number, (M, N, K, D) in enumerate(each_case(check, cases), 1):
        label, params = f"{number} of {len(cases)}", f"M={M}, N={N}, D_K={K}, D_F={D}"
        standard = nn.Conv2d(M, N, K, padding=K // 2, bias=False)
        separable = nn.Sequential(nn.Conv2d(M, M, K, padding=K // 2, groups=M, bias=False), nn.Conv2d(M, N, 1, bias=False))
        expected = {
            "conv_mult_adds(M, N, D_K, D_F)": (conv_mult_adds, (M, N, K, D), count_mult_adds(standard, (M, D, D))),
            "separable_mult_adds(M, N, D_K, D_F)": (separable_mult_adds, (M, N, K, D), count_mult_adds(separable, (M, D, D))),
            "separable_num_params(M, N, D_K)": (separable_num_params, (M, N, K), count_parameters(separable)),
        }
        for what, (fn, args, value) in expected.items():
            got = call_student(check, label, params, (), fn, *args)
            if isinstance(got, bool) or not hasattr(got, "__index__") and not (isinstance(got, float) and got.is_integer()):
                raise fail(check, label, params, f"{what}: expected an int, got {type(got).__name__} {got!r}")
            if int(got) != value:
                raise fail(check, label, params, f"{what}: expected {value:,} (measured on real nn.Conv2d layers), "
                           f"got {int(got):,} (off by a factor {int(got) / value:.4g})")


# --------------------------------------------------------------------------- a trained model from a file
def build_from_file(build_model: Callable, path: str | Path, check: str, contains: type | None = None) -> nn.Module:
    """``build_model()`` with the weights of ``path`` loaded strictly, in eval mode."""
    params = f"path={str(path)!r}"
    # build first: an unanswered build_model raises NotImplementedError, not "no file"
    model = call_student(check, str(path), params, (), build_model)
    if not isinstance(model, nn.Module):
        raise fail(check, str(path), params, f"build_model() must return an nn.Module, got {type(model).__name__}")
    if contains is not None and not any(isinstance(m, contains) for m in model.modules()):
        raise fail(check, str(path), params, f"the network does not use your {contains.__name__}")
    state = load_state_dict_file(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise fail(check, str(path), params, f"the saved weights do not fit build_model(): {err}") from None
    return model.float().eval()


@sandbox_ready
def check_model_file(build_model: Callable, path: str | Path, contains: type | None = None,
                     input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10) -> None:
    """The saved weights load safely into a fresh ``build_model()`` and it maps ``(N, *input_shape)``
    images to ``(N, num_classes)`` logits."""
    check = "check_model_file"
    model = build_from_file(build_model, path, check, contains)
    x = torch.rand(3, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = call_student(check, str(path), f"input {tuple(x.shape)}", (), model, x)
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != (3, num_classes):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise fail(check, str(path), f"input {tuple(x.shape)}", f"expected logits of shape (3, {num_classes}), got {shape}")
    passed(check, 1)


@sandbox_ready
def check_test_accuracy(build_model: Callable, path: str | Path, min_accuracy: float, contains: type | None = None) -> None:
    """Accuracy of the saved model on the whole Fashion-MNIST test set (10 000 images) must reach
    ``min_accuracy``. Returns nothing: nbgrader would take a number left as a test cell's value for
    its (partial) score."""

    check = "check_test_accuracy"
    model = build_from_file(build_model, path, check, contains)
    images, labels = load_fashion_mnist("test")
    accuracy = int((predict(model, images, batch_size=1000).argmax(1) == labels).sum()) / len(labels)
    if accuracy < min_accuracy:
        raise fail(check, "Fashion-MNIST test set", f"path={str(path)!r}, 10000 images",
                   f"test accuracy {accuracy:.2%} is below the required {min_accuracy:.0%}")
    print(f"test accuracy {accuracy:.2%} (required {min_accuracy:.0%})")
    passed(check, 1)
