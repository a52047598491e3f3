"""Hand-written backprop against autograd; pruning against torch.nn.utils.prune and a known Hessian."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from course_lib import backprop, pruning


def test_softmax_and_cross_entropy_match_torch():
    Z = torch.randn(7, 5, dtype=torch.float64) * 10
    y = torch.randint(0, 5, (7,))
    torch.testing.assert_close(backprop.softmax(Z), torch.softmax(Z, -1))
    Zr = Z.clone().requires_grad_()
    ref = F.cross_entropy(Zr, y)
    ref.backward()
    loss, dZ = backprop.cross_entropy(Z, y)
    torch.testing.assert_close(loss, ref.detach())
    torch.testing.assert_close(dZ, Zr.grad)


def test_two_layer_net_gradients_match_autograd():
    gen = torch.Generator().manual_seed(0)
    net = backprop.TwoLayerNet(6, 9, 4, generator=gen, dtype=torch.float64)
    X, y = torch.randn(11, 6, generator=gen, dtype=torch.float64), torch.randint(0, 4, (11,), generator=gen)
    loss, grads = net.loss_and_grads(X, y)
    params = {k: v.clone().requires_grad_() for k, v in net.params.items()}
    logits = torch.relu(X @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    ref = F.cross_entropy(logits, y)
    ref.backward()
    torch.testing.assert_close(loss, ref.detach())
    for name in params:
        torch.testing.assert_close(grads[name], params[name].grad, msg=f"gradient of {name}")


def test_sigmoid_backward_matches_autograd():
    Z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    A = torch.sigmoid(Z)
    dA = torch.randn_like(A)
    A.backward(dA)
    torch.testing.assert_close(backprop.sigmoid(Z.detach()), A.detach())
    torch.testing.assert_close(backprop.sigmoid_backward(dA, A.detach()), Z.grad)


def test_sgd_on_hand_gradients_lowers_the_loss():
    gen = torch.Generator().manual_seed(1)
    net = backprop.TwoLayerNet(4, 16, 3, generator=gen)
    X = torch.randn(64, 4, generator=gen)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    first, _ = net.loss_and_grads(X, y)
    for _ in range(50):
        loss, grads = net.loss_and_grads(X, y)
        net.sgd_step(grads, lr=0.5)
    assert loss < 0.7 * first


def test_hessian_diagonal_of_a_quadratic():
    # L(w) = 1/2 w^T A w has Hessian A; Hutchinson's estimate converges to diag(A).
    A = torch.tensor([[3.0, 0.5, 0.0], [0.5, 2.0, -0.3], [0.0, -0.3, 1.0]], dtype=torch.float64)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    (diag,) = pruning.hessian_diagonal(lambda: 0.5 * w @ A @ w, [w], samples=400,
                                       generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(diag, torch.diagonal(A), atol=0.1, rtol=0)


def test_magnitude_mask_matches_torch_prune():
    layer = nn.Linear(10, 8)
    ours = pruning.prune_mask(layer.weight.detach().abs(), 0.3)
    prune.l1_unstructured(layer, "weight", amount=0.3)
    assert torch.equal(ours, layer.weight_mask)
    with pytest.raises(ValueError, match="amount"):
        pruning.prune_mask(torch.ones(3), 1.5)


def test_obd_saliency_predicts_the_loss_increase():
    # For a quadratic at its minimum the second-order Taylor expansion is exact.
    h = torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64)
    w_star = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    loss = lambda w: 0.5 * (h * (w - w_star) ** 2).sum()  # noqa: E731  minimum at w_star, Hessian diag(h)
    saliency = pruning.obd_saliency(w_star, h)
    for k in range(3):
        removed = w_star.clone()
        removed[k] = 0
        torch.testing.assert_close(loss(removed), saliency[k])
