"""The "write it yourself" guard (issue 14, points 3 and 4): :mod:`course_lib.grading.forbidden_ops`.

FROM_SCRATCH patches dotted names; every test here reaches a forbidden kernel, autograd or one of the
course library's answers by another route (a reference captured before the check, ``torch.ops.aten``,
``torch._C._nn``, a subclass, a saved code object), which scored full marks before the guard. The
checks are called directly, as a student's self-check does; the last tests serve the same calls in
the worker's code (in this process, without the jail), which never lets the library's answers run.
"""
from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

import course_lib.imbalance
import course_lib.rnn
from course_lib import conv, rnn_gradients
from course_lib.grading import (FROM_SCRATCH, RNN_FROM_SCRATCH, CheckFailure, check_class_weights, check_conv2d,
                                check_conv2d_backward, check_conv_output_size, check_im2col, check_lstm_cell,
                                check_avg_pool2d, check_max_pool2d_backward, check_rnn_cell, forbidden_ops)
from course_lib.grading.autograder import protocol, worker
from course_lib.grading.compare import ForbiddenCall, forbidding
from course_lib.models import resnet

_conv = F.conv2d          # captured at definition time, as a student's cell does
_grad = torch.autograd.grad
_rnn_tanh_cell = torch.rnn_tanh_cell
_library_loops = conv.conv2d_loops
_saved_code = rnn_gradients.clip_grad_norm_.__code__  # rebuilt into a function inside the call


def failure(check, *args, **kwargs) -> str:
    with pytest.raises(CheckFailure) as info:
        check(*args, **kwargs)
    return str(info.value)


def honest_conv(input, weight, bias=None, stride=1, padding=0, dilation=1):
    """F.pad, indexing, Tensor.unfold, matmul and sum: all allowed."""
    N, C, H, W = input.shape
    C_out, _, kH, kW = weight.shape
    x = F.pad(input, (padding,) * 4)
    span_h, span_w = dilation * (kH - 1) + 1, dilation * (kW - 1) + 1
    windows = x.unfold(2, span_h, stride).unfold(3, span_w, stride)[..., ::dilation, ::dilation]
    out = torch.einsum("nchwab,ocab->nohw", windows, weight)
    return out if bias is None else out + bias.view(1, C_out, 1, 1)


def test_every_forbidden_name_maps_to_real_aten_ops_and_every_answer_exists():
    for name in FROM_SCRATCH + RNN_FROM_SCRATCH:
        assert name in forbidden_ops.ATEN_OPS, f"{name} has no ATen ops in forbidden_ops.ATEN_OPS"
    ops = forbidden_ops.ops_for(FROM_SCRATCH + RNN_FROM_SCRATCH) - {forbidden_ops.AUTOGRAD}
    known = [op for op in ops if hasattr(torch.ops.aten, op)]
    assert {"convolution", "convolution_backward", "im2col", "col2im", "max_pool2d_with_indices",
            "max_pool2d_with_indices_backward", "avg_pool2d_backward", "lstm_cell", "gru"} <= set(known)
    assert forbidden_ops.AUTOGRAD in forbidden_ops.ops_for(FROM_SCRATCH)
    for names in forbidden_ops.ANSWERS.values():
        for name in names:
            assert name.startswith("course_lib.") and forbidden_ops.resolve(name) is not None


def captured_conv(x, w, b=None, stride=1, padding=0, dilation=1):
    return _conv(x, w, b, stride=stride, padding=padding, dilation=dilation)


def aten_convolution(x, w, b=None, stride=1, padding=0, dilation=1):
    return torch.ops.aten.convolution(x, w, b, [stride] * 2, [padding] * 2, [dilation] * 2, False, [0, 0], 1)


def nn_im2col(x, kernel_size, dilation=1, padding=0, stride=1):
    return torch._C._nn.im2col(x, list(kernel_size), [dilation] * 2, [padding] * 2, [stride] * 2)


def aten_max_backward(grad_output, x, k, s=None):
    s = k if s is None else s
    _, indices = torch.ops.aten.max_pool2d_with_indices(x, [k, k], [s, s])
    return torch.ops.aten.max_pool2d_with_indices_backward(grad_output, x, [k, k], [s, s], [0, 0], [1, 1], False,
                                                           indices)


def nn_avg_pool(x, k, s=None):
    return torch._C._nn.avg_pool2d(x, [k, k], [k if s is None else s] * 2)


def aten_conv_backward(grad_output, x, w, stride=1, padding=0, dilation=1):
    return torch.ops.aten.convolution_backward(grad_output, x, w, [w.shape[0]], [stride] * 2, [padding] * 2,
                                               [dilation] * 2, False, [0, 0], 1, [True, True, True])


def captured_autograd(grad_output, x, w, stride=1, padding=0, dilation=1):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    with torch.enable_grad():
        out = honest_conv(x, w, None, stride, padding, dilation)
        gx, gw = _grad(out, (x, w), grad_output)
    return gx, gw, grad_output.sum(dim=(0, 2, 3))


@pytest.mark.parametrize("check, student, op", [
    (check_conv2d, captured_conv, "aten.convolution"),
    (check_conv2d, aten_convolution, "aten.convolution"),
    (check_im2col, nn_im2col, "aten.im2col"),
    (check_max_pool2d_backward, aten_max_backward, "aten.max_pool2d_with_indices"),
    (check_avg_pool2d, nn_avg_pool, "aten.avg_pool2d"),
    (check_conv2d_backward, aten_conv_backward, "aten.convolution_backward"),
    (check_conv2d_backward, captured_autograd, "autograd"),
], ids=["captured F.conv2d", "aten.convolution", "_C._nn.im2col", "aten max-pool backward", "_C._nn.avg_pool2d",
        "aten.convolution_backward", "captured autograd.grad"])
def test_routes_around_the_patched_names_are_caught(check, student, op):
    message = failure(check, student, forbidden=FROM_SCRATCH)
    assert f"ForbiddenCall: {student.__name__} used {op}" in message
    assert "asks you to write yourself" in message or "your own gradient" in message


def test_the_fused_recurrent_kernels_are_caught():
    def rnn_cell(x, h, p):
        return _rnn_tanh_cell(x, h, p["W_xh"], p["W_hh"], p["b"], None)

    def lstm_cell(x, state, p):
        W = torch.cat([p[f"W_{g}"] for g in ("i", "f", "C", "o")])  # rows (i, f, g, o), columns [h, x]
        H = state[0].shape[1]
        b = torch.cat([p[f"b_{g}"] for g in ("i", "f", "C", "o")])
        return torch.ops.aten.lstm_cell(x, list(state), W[:, H:], W[:, :H], b, None)

    assert "rnn_cell used aten.rnn_tanh_cell" in failure(check_rnn_cell, rnn_cell, forbidden=RNN_FROM_SCRATCH)
    assert "lstm_cell used aten.lstm_cell" in failure(check_lstm_cell, lstm_cell, forbidden=RNN_FROM_SCRATCH)
    check_rnn_cell(rnn_cell)  # the same code is right, and allowed where nothing is forbidden


def test_a_caught_call_fails_even_when_the_student_swallows_the_error():
    def sly(x, w, b=None, **kw):
        try:
            return _conv(x, w, b, **kw)
        except Exception:  # noqa: BLE001 - the cheat tries the kernel, then falls back
            return honest_conv(x, w, b, **kw)

    check_conv2d(honest_conv, forbidden=FROM_SCRATCH)
    assert "sly used aten.convolution" in failure(check_conv2d, sly, forbidden=FROM_SCRATCH)


def test_the_course_librarys_answers_are_caught_however_they_are_reached():
    def from_library(x, w, b=None, **kw):
        return _library_loops(x, w, b, **kw)

    class LibraryLSTM(course_lib.rnn.LSTMCell):
        pass

    def lstm_cell(x, state, p):
        cell = LibraryLSTM(x.shape[1], state[0].shape[1])
        return cell(x, state)

    assert "used course_lib.conv.conv2d_loops, the course library's own answer" in failure(check_conv2d, from_library)
    parameter = torch.ones(3, requires_grad=True)
    parameter.grad = torch.full((3,), 10.0)
    with pytest.raises(ForbiddenCall, match="rebuilt used course_lib.rnn_gradients.clip_grad_norm_"):
        with forbidding(forbidden_ops.answers_for("course_lib.grading.rnn_checks"), "rebuilt"):
            types.FunctionType(_saved_code, vars(rnn_gradients))([parameter], 1.0)
    assert "used course_lib.conv.conv_output_size" in failure(check_conv_output_size, conv.conv_output_size)
    assert "lstm_cell used course_lib.rnn.LSTMCell" in failure(check_lstm_cell, lstm_cell)
    assert rnn_gradients.clip_grad_norm_.__code__ is _saved_code, "the answer's code must be restored after the check"
    assert torch._C._len_torch_dispatch_stack() == 0, "the dispatch mode must be gone after the check"


def test_helpers_that_are_not_answers_stay_allowed_and_answers_only_where_graded():
    def class_weights(labels, K):  # A3's set-up imports course_lib.imbalance: its helpers may be used
        counts = course_lib.imbalance.class_counts(labels, K).float()
        return len(labels) / (K * counts)

    check_class_weights(class_weights)
    assert "used course_lib.imbalance.class_weights" in failure(
        check_class_weights, lambda labels, K: course_lib.imbalance.class_weights(labels, K))
    names = forbidden_ops.answers_for("course_lib.grading.training_checks")
    with forbidding(names):
        course_lib.imbalance.imbalanced_indices(torch.arange(10) % 2, [3, 2])
        conv.conv2d_loops(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2))  # not an answer of A3


def test_the_answers_of_a4_a5_a7_fail_their_parts():
    # Bug caught (issue 14, point 4): A4, A5 and A7 had no answers listed; each of these scored full marks.
    from course_lib import attention, gan, init, losses, segmentation
    from course_lib.grading import (check_gan_losses, check_generator, check_init_std, check_mean_iou,
                                    check_smoothed_cross_entropy, check_spatial_softmax, check_squeeze_excitation,
                                    check_train_step, check_unet_shapes)
    from course_lib.models import dcgan, unet

    class SqueezeExcitation(attention.SqueezeExcitation):  # a subclass runs the answer's methods
        pass

    cases = [
        (check_squeeze_excitation, (SqueezeExcitation,), "course_lib.attention.SqueezeExcitation"),
        (check_spatial_softmax, (attention.spatial_softmax,), "course_lib.attention.spatial_softmax"),
        (check_unet_shapes, (lambda **kwargs: unet.UNet(**kwargs),), "course_lib.models.unet.UNet"),
        (check_mean_iou, (segmentation.mean_iou,), "course_lib.segmentation.mean_iou"),
        (check_generator, (lambda z_dim=100, width=64: dcgan.Generator(z_dim, width=width),),
         "course_lib.models.dcgan.Generator.__init__"),
        (check_gan_losses, (gan.discriminator_loss, gan.generator_loss), "course_lib.gan.discriminator_loss"),
        (check_init_std, (lambda shape: init.fans(torch.empty(shape)), lambda shape, gain=1.0: gain * init.init_std(
            "xavier", *init.fans(torch.empty(shape))), lambda shape, *args, **kwargs: 0.0), "course_lib.init.fans"),
        (check_smoothed_cross_entropy, (losses.label_smoothing_cross_entropy,),
         "course_lib.losses.label_smoothing_cross_entropy"),
    ]
    for check, args, answer in cases:
        assert f"used {answer}, the course library's own answer" in failure(check, *args), answer
        with forbidden_ops.checking_the_library():  # the same answers pass: the guard is what fails them
            if check is not check_init_std:
                check(*args)

    def train_step(G, D, opt_G, opt_D, real, z_d, z_g):  # honest: runs the forward of the check's DCGAN networks
        d_loss = F.softplus(-D(real)).mean() + F.softplus(D(G(z_d).detach())).mean()
        opt_D.zero_grad()
        d_loss.backward()
        opt_D.step()
        g_loss = F.softplus(-D(G(z_g))).mean()
        opt_G.zero_grad()
        g_loss.backward()
        opt_G.step()
        return d_loss.item(), g_loss.item()

    check_train_step(train_step)


def test_the_librarys_own_tests_may_check_its_answers_only_outside_the_worker():
    with forbidden_ops.checking_the_library():
        check_conv2d(conv.conv2d_loops, forbidden=FROM_SCRATCH)
        with pytest.raises(ForbiddenCall, match="block used course_lib.models.resnet.BasicBlock"):
            with forbidding(("course_lib.models.resnet.BasicBlock",), "block", strict=True):
                resnet.BasicBlock(4, 4)


def _serve(cells: str, call: str, args: list, forbidden) -> protocol.Reply:
    namespace, ready = worker._run_cells([cells])
    assert not ready.errors, ready.errors
    request = protocol.Request(call=call, args=protocol.encode(args), forbidden=list(forbidden))
    return worker.serve(worker.Objects(namespace), request)


def test_the_worker_guards_the_students_call():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    cells = ("import torch\nimport torch.nn.functional as F\nfrom course_lib.conv import conv2d_loops, im2col\n"
             "_conv = F.conv2d\ndef mine(x, w):\n    return _conv(x, w)\n"
             "def honest(x, w):\n    return (x[:, None, :, :3, :3] * w[None]).sum(dim=(2, 3, 4))\n")
    answers = FROM_SCRATCH + forbidden_ops.answers_for("course_lib.grading.conv_checks")
    with forbidden_ops.checking_the_library():  # never in effect in the worker
        reply = _serve(cells, "conv2d_loops", [x, w], answers)
    assert reply.raised == "ForbiddenCall" and "conv2d_loops used course_lib.conv.conv2d_loops" in reply.message
    reply = _serve(cells, "mine", [x, w], answers)
    assert reply.raised == "ForbiddenCall" and reply.message.startswith("mine used aten.convolution")
    reply = _serve(cells, "honest", [x, w], answers)
    assert reply.returned and reply.raised is None
