"""L1/L2/elastic-net penalties against torch.optim.SGD's weight_decay and autograd."""
from __future__ import annotations

import torch
from torch import nn

from course_lib.regularization import (PenalizedLoss, decayed_parameters, elastic_net_penalty, l1_penalty,
                                       l2_penalty)


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_l2_gradient_step_equals_sgd_weight_decay():
    lam, lr = 0.1, 0.5
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,))
    a, b = model(), model()
    # reference: torch's weight_decay, applied to every parameter
    opt_a = torch.optim.SGD(a.parameters(), lr=lr, weight_decay=lam)
    nn.functional.cross_entropy(a(x), y).backward()
    opt_a.step()
    opt_b = torch.optim.SGD(b.parameters(), lr=lr)
    (nn.functional.cross_entropy(b(x), y) + lam * l2_penalty(b.parameters())).backward()
    opt_b.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


def test_l1_gradient_is_sign():
    w = torch.tensor([-2.0, 0.5, 3.0], requires_grad=True)
    l1_penalty([w]).backward()
    assert w.grad.tolist() == [-1.0, 1.0, 1.0]
    assert l1_penalty([w]).item() == 5.5 and l2_penalty([w]).item() == (4 + 0.25 + 9) / 2


def test_elastic_net_is_the_sum_and_decays_only_weights():
    m = model()
    params = decayed_parameters(m)
    assert [p.shape for p in params] == [m[0].weight.shape, m[3].weight.shape]  # no biases, no BatchNorm
    expected = 0.01 * sum(p.abs().sum() for p in params) + 0.1 * sum((p ** 2).sum() for p in params) / 2
    torch.testing.assert_close(elastic_net_penalty(params, l1=0.01, l2=0.1), expected)
    loss = PenalizedLoss(m, l1=0.01, l2=0.1)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 3, (4,))
    torch.testing.assert_close(loss(m(x), y), nn.functional.cross_entropy(m(x), y) + expected)
