"""Assignment 2 (architectures): its checks against independent references, and the homework round
trip's assignment-specific part; its bank of submissions is graded in ``test_banks.py``.

The solution's and the release's papermill runs are in ``test_grading_pipeline.py`` (they cover
every assignment).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent / "banks"))

import a2_architectures as bank  # noqa: E402
from course_lib.grading import (BlockCase, CheckFailure, InceptionCase, SeparableCase, check_basic_block,  # noqa: E402
                                check_bottleneck, check_conv_costs, check_depthwise_separable, check_inception,
                                check_model_file)
from course_lib.models.googlenet import Inception  # noqa: E402
from course_lib.models.mobilenet import DepthwiseSeparableConv  # noqa: E402
from course_lib.models.resnet import BasicBlock, Bottleneck  # noqa: E402

pytestmark = pytest.mark.usefixtures("library_answers_allowed")  # the checks, fed the library's answers


# ------------------------------------------------------------------ the checks, on the course's own blocks
def test_checks_pass_the_course_library_blocks():
    """course_lib.models is written independently of the checks' references (torchvision, F.conv2d)."""
    check_basic_block(BasicBlock, cases=[BlockCase("c", 8, 24, 1), BlockCase("s", 24, 24, 2, size=(7, 7))])
    check_bottleneck(Bottleneck, cases=[BlockCase("p", 16, 8, 1), BlockCase("s", 64, 16, 2, size=(7, 7))])
    check_inception(Inception)
    check_depthwise_separable(DepthwiseSeparableConv, cases=[SeparableCase("s", 4, 10, stride=2, size=(7, 7))])
    check_conv_costs(lambda M, N, K, D: K * K * M * N * D * D, lambda M, N, K, D: K * K * M * D * D + M * N * D * D,
                     lambda M, N, K: K * K * M + M * N)


class _NoBN2(BasicBlock):
    """A plausible bug: the second BatchNorm is defined but never applied."""

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.conv2(out) + self.downsample(x))


class _ReluBeforeAdd(BasicBlock):
    """A plausible bug: ReLU on the residual branch before the addition (no final ReLU)."""

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out))) + self.downsample(x)


@pytest.mark.parametrize("wrong, message", [
    (_NoBN2, "output in eval() mode: tensors are not close"),
    (_ReluBeforeAdd, "tensors are not close"),
    (lambda i, c, stride=1: BasicBlock(i, c, stride, residual=False), "tensors are not close"),  # plain block
])
def test_basic_block_check_catches_plausible_bugs(wrong, message):
    with pytest.raises(CheckFailure, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_basic_block(wrong)


def test_inception_check_catches_wrong_padding_and_kernel():
    class WrongPool(Inception):  # average instead of max pooling
        def __init__(self, *args):
            super().__init__(*args)
            self.branch4[0] = nn.AvgPool2d(3, stride=1, padding=1)

    with pytest.raises(CheckFailure, match="tensors are not close"):
        check_inception(WrongPool)
    with pytest.raises(CheckFailure, match="wrong number of parameters: expected 567"):
        check_inception(lambda *a: Inception(*a, branch5_kernel=3))  # torchvision's 3x3 "5x5" branch


def test_cost_check_names_the_wrong_formula():
    with pytest.raises(CheckFailure, match=r"conv_mult_adds\(M, N, D_K, D_F\): expected 73,728 .* got 8,192"):
        check_conv_costs(lambda M, N, K, D: M * N * D * D, lambda M, N, K, D: 0, lambda M, N, K: 0)


def test_weights_load_from_state_dict_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    for name in ("m.pt", "m.safetensors"):
        check_model_file(lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), tmp_path / name)
    with pytest.raises(CheckFailure, match="the saved weights do not fit build_model"):
        check_model_file(lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 5)), tmp_path / "m.pt")
    with pytest.raises(CheckFailure, match="does not use your BasicBlock"):
        check_model_file(lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), tmp_path / "m.pt", contains=BasicBlock)


# ------------------------------------------------------------------ this bank's reference and release (graded: test_banks.py)
def test_the_threshold_stays_90_percent():
    assert "min_accuracy=0.90" in bank.BANK.solution.read_text(encoding="utf-8"), "the threshold must stay 90%"
