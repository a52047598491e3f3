"""Exploding and vanishing gradients in RNNs, and gradient clipping by norm.

For ``h_t = tanh(a_t)``, ``a_t = W_xh x_t + W_hh h_{t-1} + b``, the chain rule gives the
Jacobian product (lecture 3, HSE; Pascanu, Mikolov & Bengio, 2012, "On the difficulty of
training recurrent neural networks")

.. math::

    \\frac{\\partial h_T}{\\partial h_0} = \\prod_{t=T}^{1} \\operatorname{diag}(\\tanh'(a_t))\\, W_{hh},
    \\qquad
    \\frac{d\\ell}{dh_0} = W_{hh}^T \\sigma'(h_1) \\cdots W_{hh}^T \\sigma'(h_T) \\frac{d\\ell}{dh_T}.

Its norm behaves like ``ρ(W_hh)^T`` times the product of the ``tanh'`` factors (≤ 1): with a
spectral radius ``ρ < 1`` it vanishes exponentially in ``T`` (long dependencies are not learnt);
with a large ``ρ`` it can explode (unstable training), which clipping tames.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from course_lib.rnn_sequence import unroll


def scale_to_spectral_radius(weight: torch.Tensor, radius: float) -> torch.Tensor:
    """``weight`` rescaled so that its spectral radius ``max |λ_i|`` equals ``radius``."""
    if weight.dim() != 2 or weight.shape[0] != weight.shape[1]:
        raise ValueError(f"weight must be a square matrix, got shape {tuple(weight.shape)}")
    current = torch.linalg.eigvals(weight).abs().max()
    return weight * (radius / current).to(weight.dtype)


def jacobian_norms(cell, inputs: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """Spectral norms ``‖∂h_t/∂h_0‖_2`` for ``t = 1 … T``, by automatic differentiation.

    Args:
        cell: a recurrent cell taking ``(x_t, h)`` with ``h`` of shape ``(1, H)``.
        inputs: one sequence ``(T, 1, I)``.
        h0: the initial state ``(1, H)``.

    Returns:
        ``(T,)`` tensor of the largest singular values of the Jacobians ``(H, H)``.
    """
    if inputs.dim() != 3 or inputs.shape[1] != 1 or h0.shape[0] != 1:
        raise ValueError(f"need one sequence: inputs (T, 1, I) and h0 (1, H), got "
                         f"{tuple(inputs.shape)} and {tuple(h0.shape)}")

    def states_of(h):  # (H,) -> (T, H)
        return unroll(cell, inputs, h.unsqueeze(0))[0][:, 0]

    jac = torch.autograd.functional.jacobian(states_of, h0[0], vectorize=True)  # (T, H, H)
    return torch.linalg.matrix_norm(jac, ord=2)


def rnn_jacobian_product(W_hh: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """``∂h_T/∂h_0`` of a tanh RNN from the lecture's product formula (no autograd).

    Args:
        W_hh: ``(H, H)``.
        hidden: the states ``h_1 … h_T`` of one sequence, ``(T, H)``; ``tanh'(a_t) = 1 - h_t²``.

    Returns:
        ``(H, H)``: ``diag(1 - h_T²) W_hh ⋯ diag(1 - h_1²) W_hh``.
    """
    if hidden.dim() != 2 or hidden.shape[1] != W_hh.shape[0]:
        raise ValueError(f"shapes do not match: W_hh {tuple(W_hh.shape)}, hidden {tuple(hidden.shape)}")
    J = torch.eye(W_hh.shape[0], dtype=W_hh.dtype, device=W_hh.device)
    for h_t in hidden:
        J = (1 - h_t ** 2).unsqueeze(1) * (W_hh @ J)  # diag(tanh'(a_t)) W_hh J_{t-1}
    return J


def clip_grad_norm_(parameters: Iterable[torch.Tensor] | torch.Tensor, max_norm: float) -> torch.Tensor:
    """Clip the gradient by its global L2 norm, Pascanu et al. (2012), Algorithm 1.

    ::

        ĝ ← ∂E/∂θ
        if ‖ĝ‖ ≥ threshold then
            ĝ ← threshold / ‖ĝ‖ · ĝ
        end if

    ``ĝ`` is ALL the parameters' gradients seen as one vector, so the direction of the update is
    kept and only its length is limited (what ``torch.nn.utils.clip_grad_norm_`` does).

    Args:
        parameters: tensors whose ``.grad`` is clipped in place.
        max_norm: the threshold.

    Returns:
        The norm ``‖ĝ‖`` before clipping.
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if total >= max_norm:
        for g in grads:
            g.mul_(max_norm / total)
    return total
