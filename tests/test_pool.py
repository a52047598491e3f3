"""course_lib.pool against torch.nn.functional and the lecture's 4x4 worked example."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib import pool

LECTURE_INPUT = torch.tensor([[0, 1, 2, 1], [4, 1, 0, 1], [2, 0, 1, 1], [1, 2, 3, 1]], dtype=torch.float32)


def test_lecture_worked_example():
    # Lecture 1 (Nikolenko): max-pooling 2x2 of the 4x4 map (a) with stride 1 gives (б), with stride 2 (в).
    x = LECTURE_INPUT[None, None]
    assert pool.max_pool2d(x, 2, stride=1)[0, 0].tolist() == [[4, 2, 2], [4, 1, 1], [2, 3, 3]]
    assert pool.max_pool2d(x, 2)[0, 0].tolist() == [[4, 2], [2, 3]]


CASES = [  # kernel, stride, padding, dilation
    (2, None, 0, 1), (3, 2, 1, 1), (3, 1, 1, 2), ((2, 3), (1, 2), (1, 1), 1), (4, 4, 2, 1),
]


@pytest.mark.parametrize("k,s,p,d", CASES)
def test_max_pool_forward_indices_and_backward(k, s, p, d):
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    out, idx = pool.max_pool2d(x, k, s, p, d, return_indices=True)
    ref, ref_idx = F.max_pool2d(x, k, s, p, d, return_indices=True)
    torch.testing.assert_close(out, ref)
    assert torch.equal(idx, ref_idx)
    xr = x.clone().requires_grad_()
    g = torch.randn_like(ref)
    F.max_pool2d(xr, k, s, p, d).backward(g)
    torch.testing.assert_close(pool.max_pool2d_backward(g, x, k, s, p, d), xr.grad)


@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1)), (3, 1, 0)])
def test_avg_pool_forward_and_backward(k, s, p):
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    torch.testing.assert_close(pool.avg_pool2d(x, k, s, p), F.avg_pool2d(x, k, s, p))
    xr = x.clone().requires_grad_()
    out = F.avg_pool2d(xr, k, s, p)
    g = torch.randn_like(out)
    out.backward(g)
    torch.testing.assert_close(pool.avg_pool2d_backward(g, x, k, s, p), xr.grad)


def test_global_pools():
    x = torch.randn(3, 5, 7, 6)
    torch.testing.assert_close(pool.global_avg_pool2d(x), F.adaptive_avg_pool2d(x, 1).flatten(1))
    torch.testing.assert_close(pool.global_max_pool2d(x), F.adaptive_max_pool2d(x, 1).flatten(1))


def test_max_pool_gradient_goes_only_to_the_maximum():
    x = LECTURE_INPUT[None, None]
    grad = pool.max_pool2d_backward(torch.ones(1, 1, 2, 2), x, 2)
    # The bottom-left window holds two 2s: like PyTorch, the first one (in row-major order) wins.
    assert grad[0, 0].tolist() == [[0, 0, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]]
    xr = x.clone().requires_grad_()
    F.max_pool2d(xr, 2).sum().backward()
    assert torch.equal(grad, xr.grad)


def test_padding_larger_than_half_kernel_is_rejected():
    with pytest.raises(ValueError, match="padding"):
        pool.max_pool2d(torch.zeros(1, 1, 5, 5), 2, padding=2)
