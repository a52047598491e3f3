"""The lecture's RNN, LSTM and GRU cells, deep/bidirectional RNNs and clipping against torch."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib import rnn, rnn_gradients, rnn_sequence

torch.set_default_dtype(torch.float32)
I, H, N, T = 5, 7, 3, 6


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def _randomise(module: nn.Module, seed=0):
    """Random weights AND biases, so that a swapped gate or a forgotten bias shows."""
    gen = _seeded(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
    return module


def _inputs(seed=1, dtype=torch.float64):
    gen = _seeded(seed)
    return torch.randn(T, N, I, generator=gen, dtype=dtype), torch.randn(N, H, generator=gen, dtype=dtype)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cell_matches_torch_cell(kind):
    torch_cell = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[kind](I, H).double()
    _randomise(torch_cell)
    ours = rnn.cell_from_torch(torch_cell)
    xs, h = _inputs()
    state_ours = state_torch = (h, h.flip(1)) if kind == "lstm" else h
    for x in xs:
        state_ours, state_torch = ours(x, state_ours), torch_cell(x, state_torch)
        for a, b in zip(*(s if kind == "lstm" else (s,) for s in (state_ours, state_torch))):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_lecture_gru_differs_from_torch_but_cudnn_variant_matches():
    torch_cell = _randomise(nn.GRUCell(I, H).double())
    x, h = _inputs()
    expected = torch_cell(x[0], h)
    cudnn = rnn.gru_cell_from_weights(torch_cell.weight_ih, torch_cell.weight_hh,
                                      torch_cell.bias_ih, torch_cell.bias_hh, reset_after=True)
    lecture = rnn.gru_cell_from_weights(torch_cell.weight_ih, torch_cell.weight_hh,
                                        torch_cell.bias_ih, torch_cell.bias_hh, reset_after=False)
    torch.testing.assert_close(cudnn(x[0], h), expected)
    gap = (lecture(x[0], h) - expected).abs().max().item()
    assert gap > 1e-3, f"the lecture's GRU (reset before W) should differ from torch's, max gap {gap}"


def test_lecture_gru_formula_by_hand():
    cell = _randomise(rnn.GRUCell(I, H, reset_after=False).double())
    x, h = _inputs()
    x = x[0]
    Wz, Wr, W = cell.W_z.weight, cell.W_r.weight, cell.W.weight
    z = torch.sigmoid(torch.cat([h, x], 1) @ Wz.T + cell.W_z.bias)
    r = torch.sigmoid(torch.cat([h, x], 1) @ Wr.T + cell.W_r.bias)
    h_tilde = torch.tanh((r * h) @ W[:, :H].T + x @ W[:, H:].T + cell.W.bias)
    torch.testing.assert_close(cell(x, h), (1 - z) * h + z * h_tilde)


def test_lstm_memory_passes_through_when_forget_open_and_input_closed():
    cell = rnn.LSTMCell(I, H).double()
    with torch.no_grad():
        cell.W_f.bias.fill_(50.0)   # f_t = 1
        cell.W_i.bias.fill_(-50.0)  # i_t = 0
    x, h = _inputs()
    C0 = torch.randn(N, H, generator=_seeded(3), dtype=torch.float64)
    _, C = cell(x[0], (h, C0))
    torch.testing.assert_close(C, C0)


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_deep_bidirectional_matches_torch(mode, batch_first):
    torch_rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[mode](
        I, H, num_layers=2, bidirectional=True, batch_first=batch_first).double()
    _randomise(torch_rnn)
    ours = rnn_sequence.from_torch(torch_rnn)
    xs, _ = _inputs()
    if batch_first:
        xs = xs.transpose(0, 1).contiguous()
    out_ours, state_ours = ours(xs)
    out_torch, state_torch = torch_rnn(xs)
    assert out_ours.shape == out_torch.shape == ((N, T, 2 * H) if batch_first else (T, N, 2 * H))
    torch.testing.assert_close(out_ours, out_torch)
    torch.testing.assert_close(state_ours, state_torch)


def test_initial_state_is_used():
    torch_rnn = _randomise(nn.GRU(I, H, num_layers=2).double())
    ours = rnn_sequence.from_torch(torch_rnn)
    xs, _ = _inputs()
    h0 = torch.randn(2, N, H, generator=_seeded(4), dtype=torch.float64)
    torch.testing.assert_close(ours(xs, h0)[0], torch_rnn(xs, h0)[0])


def test_unroll_many_to_one_is_last_output():
    cell = _randomise(rnn.RNNCell(I, H).double())
    xs, h = _inputs()
    outputs, last = rnn_sequence.unroll(cell, xs, h)
    assert outputs.shape == (T, N, H)
    torch.testing.assert_close(outputs[-1], last)
    expected = h
    for x in xs:  # the formula, step by step
        expected = torch.tanh(x @ cell.W_xh.weight.T + cell.W_xh.bias + expected @ cell.W_hh.weight.T)
    torch.testing.assert_close(last, expected)


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        rnn_sequence.RNN("transformer", I, H)


def test_jacobian_norms_match_the_product_formula():
    cell = _randomise(rnn.RNNCell(I, H).double(), seed=5)
    xs, h = _inputs()
    xs, h0 = xs[:, :1], h[:1]
    norms = rnn_gradients.jacobian_norms(cell, xs, h0)
    states = rnn_sequence.unroll(cell, xs, h0)[0][:, 0]  # (T, H)
    for t in (1, T):
        J = rnn_gradients.rnn_jacobian_product(cell.W_hh.weight, states[:t])
        torch.testing.assert_close(norms[t - 1], torch.linalg.matrix_norm(J, ord=2))


def test_jacobian_vanishes_and_explodes_with_the_spectral_radius():
    gen = _seeded(6)
    cell = rnn.RNNCell(1, 32).double()
    xs = torch.zeros(40, 1, 1, dtype=torch.float64)
    h0 = torch.zeros(1, 32, dtype=torch.float64)  # tanh' = 1 at 0: the linear regime
    with torch.no_grad():
        cell.W_xh.bias.zero_()
        W = torch.randn(32, 32, generator=gen, dtype=torch.float64)
        cell.W_hh.weight.copy_(rnn_gradients.scale_to_spectral_radius(W, 0.5))
        small = rnn_gradients.jacobian_norms(cell, xs, h0)[-1]
        cell.W_hh.weight.copy_(rnn_gradients.scale_to_spectral_radius(W, 1.5))
        large = rnn_gradients.jacobian_norms(cell, xs, h0)[-1]
    assert small < 1e-6 < 1e4 < large, (small, large)


@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e3])
def test_clip_grad_norm_matches_torch(max_norm):
    gen = _seeded(7)
    ours = [torch.randn(4, 3, generator=gen, requires_grad=True), torch.randn(5, generator=gen, requires_grad=True)]
    ref = [p.detach().clone().requires_grad_() for p in ours]
    for params in (ours, ref):
        (params[0].sum() * 3 + (params[1] ** 2).sum()).backward()
    norm = rnn_gradients.clip_grad_norm_(ours, max_norm)
    norm_ref = nn.utils.clip_grad_norm_(ref, max_norm)
    torch.testing.assert_close(norm, norm_ref)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)
    clipped = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours]))
    assert clipped <= max_norm * (1 + 1e-5) or max_norm > norm


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_lecture_cells_match_cudnn_on_cuda(mode):
    """On a GPU torch's layers run cuDNN's kernels: our cells must match those too (float32)."""
    torch_rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[mode](I, H, num_layers=2, bidirectional=True).cuda()
    _randomise(torch_rnn)
    ours = rnn_sequence.from_torch(torch_rnn)
    xs = _inputs(dtype=torch.float32)[0].cuda()
    torch.testing.assert_close(ours(xs)[0], torch_rnn(xs)[0], rtol=1e-4, atol=1e-4)
    if mode == "gru":  # the lecture's reset-before-product GRU is a different function
        lecture = rnn_sequence.from_torch(torch_rnn, reset_after=False)
        assert (lecture(xs)[0] - torch_rnn(xs)[0]).abs().max() > 1e-3
