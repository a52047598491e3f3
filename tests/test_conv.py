"""course_lib.conv against torch.nn.functional on random shapes and the lectures' examples."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.gradcheck import GradcheckError

from course_lib import conv

# (N, C_in, H, W, C_out, kH, kW, stride, padding, dilation, groups)
CASES = [
    (1, 1, 5, 5, 1, 3, 3, 1, 0, 1, 1),
    (2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1),
    (2, 4, 9, 11, 6, 3, 2, (2, 1), (1, 2), (2, 1), 2),
    (3, 2, 7, 6, 5, 5, 5, 2, 2, 1, 1),
    (1, 6, 10, 7, 6, 3, 3, 1, 1, 2, 6),  # depthwise
    (2, 3, 6, 9, 2, 1, 1, 3, 0, 1, 1),   # 1x1
    (1, 2, 4, 4, 3, 4, 4, 1, 0, 1, 1),   # kernel covers the whole input
]


def _make(case, dtype=torch.float64, device="cpu", seed=0):
    N, C_in, H, W, C_out, kH, kW, s, p, d, g = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C_in, H, W, generator=gen, dtype=dtype).to(device)
    w = torch.randn(C_out, C_in // g, kH, kW, generator=gen, dtype=dtype).to(device)
    b = torch.randn(C_out, generator=gen, dtype=dtype).to(device)
    return x, w, b, dict(stride=s, padding=p, dilation=d, groups=g)


@pytest.mark.parametrize("fn", [conv.conv2d, conv.conv2d_loops], ids=["im2col", "loops"])
@pytest.mark.parametrize("case", CASES)
def test_conv2d_matches_torch(fn, case):
    x, w, b, kw = _make(case)
    torch.testing.assert_close(fn(x, w, b, **kw), F.conv2d(x, w, b, **kw))
    torch.testing.assert_close(fn(x, w, None, **kw), F.conv2d(x, w, None, **kw))


def test_conv2d_random_shapes_float32():
    gen = torch.Generator().manual_seed(1)
    for _ in range(25):
        r = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=gen))  # noqa: E731
        g = r(1, 2)
        case = (r(1, 3), g * r(1, 3), r(5, 12), r(5, 12), g * r(1, 3), r(1, 3), r(1, 3), r(1, 3), r(0, 1), r(1, 2), g)
        x, w, b, kw = _make(case, dtype=torch.float32)
        torch.testing.assert_close(conv.conv2d(x, w, b, **kw), F.conv2d(x, w, b, **kw), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_conv2d_backward_matches_autograd(case):
    x, w, b, kw = _make(case)
    xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
    out = F.conv2d(xr, wr, br, **kw)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    gx, gw, gb = conv.conv2d_backward(grad_out, x, w, **kw)
    torch.testing.assert_close(gx, xr.grad)
    torch.testing.assert_close(gw, wr.grad)
    torch.testing.assert_close(gb, br.grad)


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("case", CASES)
def test_conv2d_gradcheck_through_its_own_backward(case, with_bias):
    # Centred differences in float64 against Conv2dFunction.backward (conv2d_backward): catches a
    # wrong gradient for any of stride, padding, dilation, groups, non-square shapes, N > 1, C > 1.
    x, w, b, kw = _make(case)
    inputs = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_() if with_bias else None)
    assert torch.autograd.gradcheck(lambda x, w, b: conv.conv2d(x, w, b, **kw), inputs, fast_mode=True)


def test_conv2d_is_one_autograd_node_and_differentiable_twice():
    # One node: autograd does not trace im2col's copies (the slow path this Function replaces).
    # Twice: its backward is made of differentiable ops, so gradient penalties work through it.
    x, w, b, kw = _make((2, 2, 5, 4, 2, 2, 3, (2, 1), (1, 0), 1, 2))
    x, w, b = (t.requires_grad_() for t in (x, w, b))
    assert type(conv.conv2d(x, w, b, **kw).grad_fn).__name__ == "Conv2dFunctionBackward"
    assert torch.autograd.gradgradcheck(lambda x, w, b: conv.conv2d(x, w, b, **kw), (x, w, b), fast_mode=True)


def test_gradcheck_catches_a_wrong_backward(monkeypatch):
    # The gradcheck above really checks conv2d_backward: with the kernel flipped in the input
    # gradient (a plausible mix-up of convolution and cross-correlation) it must fail.
    correct = conv._input_grad

    def flipped_kernel(grad_output, weight, *args):
        return correct(grad_output, weight.flip(-1, -2), *args)

    monkeypatch.setattr(conv, "_input_grad", flipped_kernel)
    x, w, b, kw = _make(CASES[0])  # small: a failing gradcheck recomputes the full Jacobians to report
    inputs = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    with pytest.raises(GradcheckError, match="Jacobian mismatch"):
        torch.autograd.gradcheck(lambda x, w, b: conv.conv2d(x, w, b, **kw), inputs, fast_mode=True)


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_im2col_of_a_strided_input_matches_unfold(layout):
    # im2col reads the input through its strides and storage offset (as_strided): a version that
    # assumed a contiguous tensor starting at offset 0 would read the wrong pixels here.
    x = torch.randn(2, 5, 9, 8, dtype=torch.float64)
    x = {"channels_last": x.contiguous(memory_format=torch.channels_last),
         "transposed": x.transpose(2, 3), "sliced": x[:, 1:4, 1:, :-1]}[layout]
    for padding in (0, 1):
        torch.testing.assert_close(conv.im2col(x, (3, 2), 2, padding, (2, 1)),
                                   F.unfold(x, (3, 2), dilation=2, padding=padding, stride=(2, 1)))


def test_im2col_and_col2im_match_unfold_and_fold():
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    for k, d, p, s in itertools.product([(2, 3), 3], [1, 2], [0, 1], [1, (2, 1)]):
        cols = conv.im2col(x, k, d, p, s)
        torch.testing.assert_close(cols, F.unfold(x, k, dilation=d, padding=p, stride=s))
        torch.testing.assert_close(conv.col2im(cols, (9, 8), k, d, p, s),
                                   F.fold(cols, (9, 8), k, dilation=d, padding=p, stride=s))


@pytest.mark.parametrize("stride,padding,output_padding,dilation,groups",
                         [(1, 0, 0, 1, 1), (2, 1, 1, 1, 1), (3, 0, 2, 2, 1), (2, 1, 0, 1, 2), ((2, 1), (0, 1), (1, 0), 1, 1)])
def test_conv_transpose2d_matches_torch(stride, padding, output_padding, dilation, groups):
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    w = torch.randn(4, 6 // groups, 3, 3, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    torch.testing.assert_close(
        conv.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation),
        F.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation))


@pytest.mark.parametrize("size,k,s,p,d", [(28, 5, 1, 0, 1), (28, 3, 1, 1, 1), (224, 11, 4, 2, 1),
                                          (32, 3, 2, 1, 2), (7, 7, 1, 0, 1), (10, 3, 3, 0, 1), (13, 4, 2, 3, 3)])
def test_output_size_formula_matches_nn_conv2d(size, k, s, p, d):
    layer = torch.nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
    expected = layer(torch.zeros(1, 1, size, size)).shape[-1]
    assert conv.conv_output_size(size, k, s, p, d) == expected


def test_output_size_rejects_kernel_larger_than_input():
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv.conv_output_size(4, 3, dilation=2)
    with pytest.raises(ValueError, match="stride"):
        conv.conv_output_size(8, 3, stride=0)


def test_conv2d_rejects_channel_mismatch_with_a_clear_message():
    with pytest.raises(ValueError, match="C_in=3"):
        conv.conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(2, 2, 3, 3))
    with pytest.raises(ValueError, match="groups=2"):
        conv.conv2d(torch.zeros(1, 3, 5, 5), torch.zeros(2, 1, 3, 3), groups=2)


def test_conv_matrix_is_the_lectures_matrix():
    # Lecture 3 (HSE): a 2x2 kernel on a 3x3 image, written as a 4x9 matrix.
    k1, k2, k3, k4 = 1.0, 2.0, 3.0, 4.0
    expected = torch.tensor([
        [k1, k2, 0, k3, k4, 0, 0, 0, 0],
        [0, k1, k2, 0, k3, k4, 0, 0, 0],
        [0, 0, 0, k1, k2, 0, k3, k4, 0],
        [0, 0, 0, 0, k1, k2, 0, k3, k4],
    ])
    assert torch.equal(conv.conv_matrix(torch.tensor([[k1, k2], [k3, k4]]), (3, 3)), expected)


def test_conv_matrix_transpose_is_the_input_gradient():
    kernel = torch.randn(3, 3, dtype=torch.float64)
    x = torch.randn(1, 1, 6, 5, dtype=torch.float64, requires_grad=True)
    y = F.conv2d(x, kernel[None, None], stride=2, padding=1)
    g = torch.randn_like(y)
    y.backward(g)
    C = conv.conv_matrix(kernel, (6, 5), stride=2, padding=1)
    torch.testing.assert_close(C @ x.detach().flatten(), y.detach().flatten())
    torch.testing.assert_close(C.T @ g.flatten(), x.grad.flatten())


@pytest.mark.cuda
def test_conv2d_on_cuda_matches_cpu():
    x, w, b, kw = _make(CASES[2], dtype=torch.float32, device="cuda")
    torch.testing.assert_close(conv.conv2d(x, w, b, **kw), F.conv2d(x, w, b, **kw), rtol=1e-4, atol=1e-4)
    gx, gw, gb = conv.conv2d_backward(torch.ones_like(F.conv2d(x, w, b, **kw)), x, w, **kw)
    assert gx.device.type == gw.device.type == gb.device.type == "cuda"
    ours, ref = (t.clone().requires_grad_() for t in (x, x))
    wo, wr = (t.clone().requires_grad_() for t in (w, w))
    grad_out = torch.randn_like(F.conv2d(x, w, b, **kw))
    conv.conv2d(ours, wo, b, **kw).backward(grad_out)
    F.conv2d(ref, wr, b, **kw).backward(grad_out)
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(wo.grad, wr.grad, rtol=1e-4, atol=1e-4)
