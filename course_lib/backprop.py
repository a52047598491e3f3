"""A neural network layer by hand: forward and backward passes written out (CS231n style).

A layer computes :math:`\\sigma(XW + b)`: rows of ``X`` are examples, columns are features.
For the loss :math:`L` and the layer's output :math:`Y = XW + b`, the chain rule gives

.. math::
    \\frac{\\partial L}{\\partial W} = X^T \\frac{\\partial L}{\\partial Y},\\qquad
    \\frac{\\partial L}{\\partial b} = \\mathbf 1^T \\frac{\\partial L}{\\partial Y},\\qquad
    \\frac{\\partial L}{\\partial X} = \\frac{\\partial L}{\\partial Y} W^T .

For softmax followed by cross-entropy averaged over :math:`N` examples the gradient with respect
to the logits is :math:`(\\operatorname{softmax}(Z) - \\operatorname{onehot}(y)) / N`.
Backpropagation is these formulas applied from the last layer to the first.
"""
from __future__ import annotations

import torch


def linear_forward(X: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Y = X W + b``. X: ``(N, D_in)``, W: ``(D_in, D_out)``, b: ``(D_out,)`` → ``(N, D_out)``."""
    return X @ W + b


def linear_backward(dY: torch.Tensor, X: torch.Tensor, W: torch.Tensor):
    """Gradients of :func:`linear_forward`: ``(dX (N, D_in), dW (D_in, D_out), db (D_out,))``."""
    return dY @ W.T, X.T @ dY, dY.sum(0)


def sigmoid(Z: torch.Tensor) -> torch.Tensor:
    """``σ(z) = 1 / (1 + e^{-z})``; its derivative is ``σ(z)(1 − σ(z)) ≤ 1/4``."""
    return 1 / (1 + torch.exp(-Z))


def sigmoid_backward(dA: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Gradient through ``A = σ(Z)`` given the output ``A``: ``dZ = dA · A (1 − A)``."""
    return dA * A * (1 - A)


def relu_backward(dA: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
    """Gradient through ``max(0, z)``: passes where ``z > 0``, stops elsewhere."""
    return dA * (Z > 0)


def softmax(Z: torch.Tensor) -> torch.Tensor:
    """``softmax(z)_j = e^{z_j} / Σ_i e^{z_i}`` along the last axis (shifted by the max for stability)."""
    E = torch.exp(Z - Z.max(dim=-1, keepdim=True).values)
    return E / E.sum(dim=-1, keepdim=True)


def cross_entropy(Z: torch.Tensor, y: torch.Tensor):
    """Mean cross-entropy of softmax(Z) against labels ``y``, and its gradient with respect to ``Z``.

    Returns:
        ``(loss, dZ)`` with ``dZ = (softmax(Z) − onehot(y)) / N`` of shape ``(N, K)``.
    """
    N = Z.shape[0]
    P = softmax(Z)
    loss = -torch.log(P[torch.arange(N), y]).mean()
    dZ = P.clone()
    dZ[torch.arange(N), y] -= 1
    return loss, dZ / N


class TwoLayerNet:
    """``softmax(relu(X W1 + b1) W2 + b2)`` with hand-written forward and backward passes.

    Parameters live in ``self.params`` (a dict of tensors) so that an optimiser step is one line.
    Weights are initialised with He's scale ``N(0, 2/fan_in)`` (chapter 4).
    """

    def __init__(self, d_in: int, d_hidden: int, d_out: int, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32):
        def he(fan_in, fan_out):
            return torch.randn(fan_in, fan_out, generator=generator, dtype=dtype) * (2 / fan_in) ** 0.5
        self.params = {"W1": he(d_in, d_hidden), "b1": torch.zeros(d_hidden, dtype=dtype),
                       "W2": he(d_hidden, d_out), "b2": torch.zeros(d_out, dtype=dtype)}

    def forward(self, X: torch.Tensor):
        """Logits ``(N, d_out)`` and the cache the backward pass needs."""
        p = self.params
        Z1 = linear_forward(X, p["W1"], p["b1"])
        A1 = torch.relu(Z1)
        return linear_forward(A1, p["W2"], p["b2"]), (X, Z1, A1)

    def loss_and_grads(self, X: torch.Tensor, y: torch.Tensor):
        """The cross-entropy loss and the gradient of every parameter, by backpropagation."""
        p = self.params
        logits, (X, Z1, A1) = self.forward(X)
        loss, dZ2 = cross_entropy(logits, y)
        dA1, dW2, db2 = linear_backward(dZ2, A1, p["W2"])
        dZ1 = relu_backward(dA1, Z1)
        _, dW1, db1 = linear_backward(dZ1, X, p["W1"])
        return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

    def sgd_step(self, grads: dict, lr: float) -> None:
        """``θ ← θ − lr · ∂L/∂θ`` for every parameter."""
        for name, grad in grads.items():
            self.params[name] -= lr * grad
