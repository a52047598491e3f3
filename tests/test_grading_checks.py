"""course_lib.grading's checks: they accept correct code (course_lib's own, independent of the torch
reference they compare with) and reject each plausible student bug with a message that names the
case, its inputs and what is wrong. Also: one tolerance table, stderr that costs no points, and the one
loader of submitted weights, which never unpickles."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import conv, pool
from course_lib.grading import (CONV_CASES, FROM_SCRATCH, POOL_CASES, TOLERANCES, CheckFailure, ConvCase, PoolCase, SizeCase,
                                check_avg_pool2d, check_avg_pool2d_backward, check_conv2d, check_conv2d_backward,
                                check_conv_output_size, check_im2col, check_max_pool2d, check_max_pool2d_backward,
                                describe_difference, load_state_dict_file, tolerance)

HARD_CONV = [ConvCase("stride, dilation, padding, non-square", (2, 3, 9, 11), (4, 3, 3, 2), stride=2, padding=1,
                      dilation=2, seed=5),
             ConvCase("batch 1, one channel, no bias", (1, 1, 4, 4), (1, 1, 4, 4), bias=False, seed=6)]
HARD_POOL = [PoolCase("overlapping, non-square", (2, 2, 7, 10), 3, stride=2, seed=7)]


pytestmark = pytest.mark.usefixtures("library_answers_allowed")  # the checks, fed the library's answers


def im2col(input, kernel_size, dilation=1, padding=0, stride=1):
    return conv.im2col(input, kernel_size, dilation, padding, stride)


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1):
    return conv.conv2d_backward(grad_output, input, weight, stride, padding, dilation)


def failure(check, *args, **kwargs) -> str:
    with pytest.raises(CheckFailure) as info:
        check(*args, **kwargs)
    return str(info.value)


def test_correct_implementations_pass_every_check(capsys):
    check_conv_output_size(conv.conv_output_size, cases=[SizeCase(10, 3, 2, 2, 2), SizeCase(227, 11, 4)])
    for cases in (CONV_CASES, HARD_CONV):  # course_lib writes them from scratch: nothing forbidden is called
        check_im2col(im2col, cases, forbidden=FROM_SCRATCH)
        check_conv2d(conv.conv2d_loops, cases, forbidden=FROM_SCRATCH)
        check_conv2d(conv.conv2d, cases, forbidden=FROM_SCRATCH)
        check_conv2d_backward(conv2d_backward, cases, forbidden=FROM_SCRATCH)
    for cases in (POOL_CASES, HARD_POOL):
        check_max_pool2d(pool.max_pool2d, cases, forbidden=FROM_SCRATCH)
        check_avg_pool2d(pool.avg_pool2d, cases, forbidden=FROM_SCRATCH)
        check_max_pool2d_backward(pool.max_pool2d_backward, cases, forbidden=FROM_SCRATCH)
        check_avg_pool2d_backward(pool.avg_pool2d_backward, cases, forbidden=FROM_SCRATCH)
    assert "check_conv2d: all 5 cases passed" in capsys.readouterr().out


def test_output_size_bugs_are_named():
    def no_plus_one(size, kernel_size, stride=1, padding=0, dilation=1):
        return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride

    message = failure(check_conv_output_size, no_plus_one)
    assert "size=7, kernel_size=3, stride=1, padding=0, dilation=1" in message
    assert "wrong output size: expected 5, got 4" in message

    def true_division(size, kernel_size, stride=1, padding=0, dilation=1):
        return (size + 2 * padding - dilation * (kernel_size - 1) - 1) / stride + 1

    assert "expected an int, got float 5.0 (use // for the floor division)" in failure(check_conv_output_size,
                                                                                        true_division)
    # A footprint of d*k is right for d = 1: only a dilated case exposes it.
    check_conv_output_size(lambda n, k, stride=1, padding=0, dilation=1: (n + 2 * padding - dilation * k) // stride + 1)
    assert "dilation=2" in failure(check_conv_output_size,
                                   lambda n, k, stride=1, padding=0, dilation=1: (n + 2 * padding - dilation * k) // stride + 1,
                                   cases=[SizeCase(10, 3, dilation=2)])


def test_flipped_kernel_reports_values_like_assert_close():
    message = failure(check_conv2d, lambda x, w, b, **kw: F.conv2d(x, w.flip(-2, -1), b, **kw))
    assert message.startswith("check_conv2d failed on case '3x3 kernel, no padding'")
    assert "input (2, 3, 6, 6), weight (4, 3, 3, 3), bias (4,), stride=1, padding=0, dilation=1" in message
    assert "seed=0" in message and "torch.float32" in message
    assert re.search(r"Mismatched elements: \d+ / 128 \(\d+\.\d%\)", message)
    assert re.search(r"Greatest absolute difference: [\d.]+ at index \(\d, \d, \d, \d\): expected [-\d.]+, got "
                     r"[-\d.]+ \(up to 1e-05 allowed\)", message)
    assert "Greatest relative difference" in message and "(up to 1.3e-06 allowed)" in message


def test_shape_dtype_type_and_exceptions_are_reported_first():
    no_padding = failure(check_conv2d, lambda x, w, b, stride=1, padding=0, dilation=1: F.conv2d(x, w, b, stride))
    assert "case '3x3 kernel, padding 1'" in no_padding and "padding=1" in no_padding
    assert "wrong shape: expected (2, 4, 6, 6), got (2, 4, 4, 4)" in no_padding
    assert "wrong dtype: expected torch.float32, got torch.float64" in failure(
        check_conv2d, lambda x, w, b, **kw: F.conv2d(x.double(), w.double(), None if b is None else b.double(), **kw))
    assert "expected a torch.Tensor, got ndarray" in failure(
        check_conv2d, lambda x, w, b, **kw: F.conv2d(x, w, b, **kw).numpy())
    crash = failure(check_im2col, lambda x, k, **kw: x.view(-1, 5))
    assert "your function raised RuntimeError" in crash and "kernel_size=(3, 3)" in crash


def test_not_implemented_passes_through_unchanged():
    def blank(*args, **kwargs):
        raise NotImplementedError()

    for check in (check_conv_output_size, check_conv2d, check_max_pool2d, check_conv2d_backward):
        with pytest.raises(NotImplementedError):
            check(blank)


def test_pooling_bugs_are_caught():
    def avg_backward_without_division(grad_output, input, kernel_size, stride=None):
        return pool.avg_pool2d_backward(grad_output, input, kernel_size, stride) * kernel_size ** 2

    assert "grad_input: tensors are not close" in failure(check_avg_pool2d_backward, avg_backward_without_division)

    def max_backward_to_window_corner(grad_output, input, kernel_size, stride=None):
        grad = torch.zeros_like(input)
        s = stride or kernel_size
        grad[:, :, : s * grad_output.shape[2]: s, : s * grad_output.shape[3]: s] += grad_output
        return grad

    assert "check_max_pool2d_backward failed" in failure(check_max_pool2d_backward, max_backward_to_window_corner)
    # Ignoring the stride argument passes side-by-side windows and fails only overlapping ones.
    ignores_stride = lambda x, k, stride=None: F.max_pool2d(x, k)  # noqa: E731
    assert "stride 1 (overlapping)" in failure(check_max_pool2d, ignores_stride)


def test_conv_gradient_bugs_are_caught():
    swapped = lambda g, x, w, **kw: conv2d_backward(g, x, w, **kw)[::-1]  # noqa: E731
    assert "grad_input: wrong shape" in failure(check_conv2d_backward, swapped)
    weight_not_summed_over_batch = lambda g, x, w, **kw: (conv2d_backward(g, x, w, **kw)[0],  # noqa: E731
                                                          conv2d_backward(g[:1], x[:1], w, **kw)[1],
                                                          conv2d_backward(g, x, w, **kw)[2])
    message = failure(check_conv2d_backward, weight_not_summed_over_batch)
    assert "grad_weight: tensors are not close" in message and "torch.float64" in message
    assert "expected a triple (grad_input, grad_weight, grad_bias)" in failure(
        check_conv2d_backward, lambda g, x, w, **kw: conv2d_backward(g, x, w, **kw)[:2])
    bias_not_summed_over_batch = lambda g, x, w, **kw: (*conv2d_backward(g, x, w, **kw)[:2],  # noqa: E731
                                                        g[0].sum(dim=(1, 2)))
    assert "grad_bias: tensors are not close" in failure(check_conv2d_backward, bias_not_summed_over_batch)


def test_calling_the_reference_op_is_caught_and_undone():
    original, original_backward = F.conv2d, torch.Tensor.backward
    message = failure(check_conv2d, lambda x, w, b, **kw: F.conv2d(x, w, b, **kw), forbidden=FROM_SCRATCH)
    assert "ForbiddenCall: torch.nn.functional.conv2d is what this part asks you to write yourself" in message
    assert "ForbiddenCall" in failure(check_conv2d, lambda x, w, b, **kw: torch.conv2d(x, w, b, **kw),
                                      forbidden=FROM_SCRATCH)
    layer = torch.nn.Conv2d(3, 4, 3)
    assert "ForbiddenCall" in failure(check_conv2d, lambda x, w, b, **kw: layer(x), forbidden=FROM_SCRATCH)
    assert "torch.nn.functional.max_pool2d" in failure(check_max_pool2d, lambda x, k, s=None: F.max_pool2d(x, k, s),
                                                       forbidden=FROM_SCRATCH)

    def autograd_backward(grad_output, input, weight, **kw):
        x, w = input.clone().requires_grad_(), weight.clone().requires_grad_()
        (conv.conv2d(x, w, **kw) * grad_output).sum().backward()
        return x.grad, w.grad, grad_output.sum(dim=(0, 2, 3))

    check_conv2d_backward(autograd_backward)  # right, and allowed without `forbidden`
    assert "torch.Tensor.backward" in failure(check_conv2d_backward, autograd_backward, forbidden=FROM_SCRATCH)
    assert F.conv2d is original and torch.Tensor.backward is original_backward and F.conv2d(
        torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1)).sum() == 4, "the ops must be restored after the check"


def test_tolerances_are_one_table_and_decide_closeness():
    assert tolerance(torch.float32, "cpu") == TOLERANCES[(torch.float32, "cpu")] == (1.3e-6, 1e-5)
    assert tolerance(torch.float64, torch.device("cpu")) == (1e-7, 1e-7)
    with pytest.raises(ValueError, match="int64"):
        tolerance(torch.int64, "cpu")
    expected = torch.zeros(3)
    assert describe_difference(expected + 0.9e-5, expected) is None
    assert "up to 1e-05 allowed" in describe_difference(expected + 1.1e-5, expected)
    nan = describe_difference(torch.tensor([0.0, float("nan"), 0.0]), expected)
    assert "Mismatched elements: 1 / 3" in nan and "index (1,)" in nan


def test_checks_keep_no_state_between_calls():
    calls = []

    def spy(x, w, b, **kw):
        calls.append((x.clone(), kw))
        return F.conv2d(x, w, b, **kw)

    check_conv2d(spy, CONV_CASES[:1])
    check_conv2d(spy, CONV_CASES[:1])
    assert torch.equal(calls[0][0], calls[1][0]) and calls[0][1] == calls[1][1], "inputs must be seeded, not drawn"


def test_stderr_in_a_test_cell_costs_no_points():
    """nbgrader gives 0 to a test cell with any stderr output; our autograde pipeline prevents it."""
    from nbformat.v4 import new_code_cell, new_output
    from nbgrader.utils import determine_grade

    from course_lib.grading.autograder.nbgrader_plugins import StderrToStdout, autograde_preprocessors

    cell = new_code_cell("check_conv2d(conv2d_loops)", metadata={"nbgrader": {
        "grade": True, "solution": False, "locked": True, "points": 3, "grade_id": "t", "schema_version": 3}})
    cell.outputs = [new_output("stream", name="stdout", text="check_conv2d: all 4 cases passed\n"),
                    new_output("stream", name="stderr", text="UserWarning: to copy construct from a tensor\n")]
    assert determine_grade(cell)[0] == 0, "nbgrader's default scores stderr as a failure"
    cell, _ = StderrToStdout().preprocess_cell(cell, {}, 0)
    assert determine_grade(cell) == (3, 3)
    assert "[stderr] UserWarning: to copy construct from a tensor" in cell.outputs[1].text
    assert StderrToStdout in autograde_preprocessors()
    cell.outputs.append(new_output("error", ename="CheckFailure", evalue="...", traceback=[]))
    assert determine_grade(cell)[0] == 0, "exceptions must still cost the points"


class _Evil:
    def __reduce__(self):  # unpickling this would create a file
        return (Path.touch, (Path(_Evil.marker),))


def _whole_models():
    """What ``torch.save(model, path)`` writes for a model of assignments 2, 4 and 6: a whole pickled module."""
    from course_lib.grading.segmentation_checks import SEGMENTATION_TASK
    from course_lib.models.row_rnn import RowRNNClassifier
    from course_lib.models.unet import UNet

    return [nn.Linear(2, 2), UNet(**SEGMENTATION_TASK.unet_kwargs()), RowRNNClassifier("gru", hidden_size=4)]


@pytest.mark.parametrize("whole_model", _whole_models(), ids=["linear", "unet", "row_rnn"])
def test_submitted_weights_are_never_unpickled(tmp_path, whole_model):
    """The one loader every check reads a submitted file with (``course_lib.grading.weights``)."""
    _Evil.marker = str(tmp_path / "pwned")
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"w": _Evil()}, f)
    with pytest.raises(CheckFailure, match=r"not a plain state_dict: it cannot be read with torch.load\(weights_only=True\)"):
        load_state_dict_file(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists(), "the grader executed code from a submitted file"
    torch.save(whole_model, tmp_path / "model.pt")
    with pytest.raises(CheckFailure, match=r"weights_only=True\), so it is not graded \(the grader never unpickles code\)"
                                           r".*torch.save\(model.state_dict\(\), path\)"):
        load_state_dict_file(tmp_path / "model.pt")
    with pytest.raises(CheckFailure, match="no weights file missing.pt next to the notebook"):
        load_state_dict_file(tmp_path / "missing.pt")


def test_submitted_weights_load_from_a_state_dict_or_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = {"w": torch.arange(3.0)}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        assert torch.equal(load_state_dict_file(tmp_path / name)["w"], state["w"])
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckFailure, match="must hold a state_dict"):
        load_state_dict_file(tmp_path / "list.pt")
