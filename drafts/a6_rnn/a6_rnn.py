# %% [markdown]
# # Assignment 6 — Recurrent networks
#
# This assignment mirrors the chapter *Recurrent networks*. You will write, with nothing but tensor
# products and element-wise functions:
#
# | part | what | points |
# |---|---|---|
# | 1 | one step of a vanilla RNN, an LSTM and a GRU cell, from the lecture's equations | 9 |
# | 2 | backpropagation through time for a tanh RNN, by hand | 6 |
# | 3 | gradient clipping by the global norm | 4 |
# | 4 | a classifier that reads Fashion-MNIST images row by row, trained and saved | 6 |
# | 5 | a short written answer: why the LSTM's memory helps long dependencies, and what clipping cannot fix | 4 |
#
# **How to work.** Replace every `raise NotImplementedError()` with your code and write your answer
# where it says *YOUR ANSWER HERE*. In parts 1–3 do not use `torch.nn.RNNCell`, `LSTMCell`, `GRUCell`
# (or `nn.RNN`, `nn.LSTM`, `nn.GRU`), autograd (`.backward()`, `torch.autograd.grad`) or
# `torch.nn.utils.clip_grad_norm_`: they are what your code is compared with, and the tests switch
# them off (`RNN_FROM_SCRATCH`) while they run your functions. In part 4 train as you like. Keep
# the functions' names and arguments.
#
# **Self-check.** Each part is followed by a test cell: run it. It prints `... all N cases passed`, or
# stops with a message that names the case that failed, its inputs (shapes, weight scale, seed), and
# what was wrong (the shape, or how many elements differ, the greatest error and where). Passing the
# visible tests earns their points; more tests, run only at grading, try other sizes, a single
# sample, large weights, longer sequences and parameters without gradients. Warnings printed on
# stderr do not cost points; exceptions do.
#
# **Set-up.** The tests come from the course library `course_lib`. Either work inside the course
# repository (`make setup`, then `.venv/bin/jupyter lab assignments/a6_rnn/`), or install the library
# into your own environment with `pip install <the course repository's URL or folder>`. Before
# submitting, restart the kernel and run all cells (*Kernel → Restart & Run All*); submit this
# `.ipynb` file, with its name unchanged, **together with the weight file of part 4**
# (`rnn_classifier.pt` or `rnn_classifier.safetensors`) in the same folder.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
from pathlib import Path

import torch
from torch import nn

from course_lib import data, train
from course_lib.grading import (RNN_FROM_SCRATCH, check_classifier_accuracy, check_clip_grad_norm, check_gru_cell,
                                check_lstm_cell, check_rnn_backward, check_rnn_cell, check_sequence_classifier)

# Part 4's trained weights: graders load this file (or the same name with .safetensors).
WEIGHTS = Path("rnn_classifier.pt")

# %% [markdown]
# ## Part 1 — three recurrent cells (9 points)
#
# A recurrent cell maps the input $x_t \in \mathbb{R}^{I}$ (a row of a batch `x` of shape $(N, I)$) and
# the previous state to the next state, with the same weights at every step. Write one step of each
# cell. The parameters come in a dictionary `params` of tensors; $[h, x]$ is the concatenation
# (`torch.cat([h, x], dim=1)`, $h$ first), and a matrix $W$ of shape $(H, H + I)$ acts on it as
# $[h, x]\,W^\top$ for a batch of rows.
#
# **Vanilla RNN** (`params`: `W_xh` $(H, I)$, `W_hh` $(H, H)$, `b` $(H,)$):
#
# $$ h_t = \tanh(W_{xh} x_t + W_{hh} h_{t-1} + b) . $$
#
# **LSTM** (`params`: `W_f, W_i, W_C, W_o`, each $(H, H + I)$, and `b_f, b_i, b_C, b_o`, each $(H,)$;
# the state is the pair $(h, C)$):
#
# $$
# \begin{aligned}
# f_t &= \sigma(W_f [h_{t-1}, x_t] + b_f), &
# i_t &= \sigma(W_i [h_{t-1}, x_t] + b_i), &
# \tilde C_t &= \tanh(W_C [h_{t-1}, x_t] + b_C), \\
# C_t &= f_t \odot C_{t-1} + i_t \odot \tilde C_t, &
# o_t &= \sigma(W_o [h_{t-1}, x_t] + b_o), &
# h_t &= o_t \odot \tanh(C_t) .
# \end{aligned}
# $$
#
# **GRU, in the form cuDNN and `torch.nn.GRU` use** (`params`: `W_z, W_r` $(H, H + I)$, `b_z, b_r`,
# `W_xn` $(H, I)$, `b_xn`, `W_hn` $(H, H)$, `b_hn`). The gates are the lecture's,
#
# $$ z_t = \sigma(W_z [h_{t-1}, x_t] + b_z), \qquad r_t = \sigma(W_r [h_{t-1}, x_t] + b_r), $$
#
# but the reset gate is applied **after** the product with the previous state (the lecture's
# $\tanh(W [r_t \odot h_{t-1}, x_t] + b)$ applies it before; the two differ — this is the cuDNN GRU
# the lecture warns about), and the update interpolates as in the lecture:
#
# $$
# \tilde h_t = \tanh\big(W_{xn} x_t + b_{xn} + r_t \odot (W_{hn} h_{t-1} + b_{hn})\big), \qquad
# h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t .
# $$
#
# The tests copy your parameters into `torch.nn.RNNCell`, `LSTMCell` and `GRUCell` (torch stacks the
# gates in the order $(i, f, \tilde C, o)$ and $(r, z, \tilde h)$, and its $z$ is $1 - z_t$) and compare
# the results.

# %% nbgrader={"grade": false, "grade_id": "cells", "locked": false, "schema_version": 3, "solution": true, "task": false}
def rnn_cell(x, h, params):
    """One step of a tanh RNN: x (N, I), h (N, H) -> h_next (N, H)."""
    ### BEGIN SOLUTION
    return torch.tanh(x @ params["W_xh"].T + h @ params["W_hh"].T + params["b"])
    ### END SOLUTION


def lstm_cell(x, state, params):
    """One step of an LSTM: x (N, I), state = (h, C) each (N, H) -> (h_next, C_next)."""
    ### BEGIN SOLUTION
    h, C = state
    hx = torch.cat([h, x], dim=1)  # (N, H + I)
    f = torch.sigmoid(hx @ params["W_f"].T + params["b_f"])
    i = torch.sigmoid(hx @ params["W_i"].T + params["b_i"])
    C_tilde = torch.tanh(hx @ params["W_C"].T + params["b_C"])
    o = torch.sigmoid(hx @ params["W_o"].T + params["b_o"])
    C_next = f * C + i * C_tilde
    return o * torch.tanh(C_next), C_next
    ### END SOLUTION


def gru_cell(x, h, params):
    """One step of a GRU (reset after the product, as in cuDNN): x (N, I), h (N, H) -> h_next (N, H)."""
    ### BEGIN SOLUTION
    hx = torch.cat([h, x], dim=1)  # (N, H + I)
    z = torch.sigmoid(hx @ params["W_z"].T + params["b_z"])
    r = torch.sigmoid(hx @ params["W_r"].T + params["b_r"])
    h_tilde = torch.tanh(x @ params["W_xn"].T + params["b_xn"] + r * (h @ params["W_hn"].T + params["b_hn"]))
    return (1 - z) * h + z * h_tilde
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_rnn_cell", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_rnn_cell(rnn_cell, forbidden=RNN_FROM_SCRATCH)

# %% nbgrader={"grade": true, "grade_id": "test_lstm_cell", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_lstm_cell(lstm_cell, forbidden=RNN_FROM_SCRATCH)

# %% nbgrader={"grade": true, "grade_id": "test_gru_cell", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_gru_cell(gru_cell, forbidden=RNN_FROM_SCRATCH)

# %% nbgrader={"grade": true, "grade_id": "test_cells_hidden", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run at grading): other sizes, a single sample and hidden unit, saturating weights, float64.
### BEGIN HIDDEN TESTS
from course_lib.grading import CellCase

hidden_cases = [
    CellCase("batch 5, 7 inputs, 3 hidden", 5, 7, 3, seed=10),
    CellCase("one sample, one input, one hidden unit", 1, 1, 1, seed=11),
    CellCase("batch 2, 3 inputs, 8 hidden, saturating weights", 2, 3, 8, scale=3.0, seed=12),
]
for dtype in (torch.float32, torch.float64):
    check_rnn_cell(rnn_cell, cases=hidden_cases, dtype=dtype, forbidden=RNN_FROM_SCRATCH)
    check_lstm_cell(lstm_cell, cases=hidden_cases, dtype=dtype, forbidden=RNN_FROM_SCRATCH)
    check_gru_cell(gru_cell, cases=hidden_cases, dtype=dtype, forbidden=RNN_FROM_SCRATCH)
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 — backpropagation through time (6 points)
#
# Unroll the tanh RNN of part 1 over $T$ steps from $h_0$: $a_t = W_{xh} x_t + W_{hh} h_{t-1} + b$,
# $h_t = \tanh(a_t)$, $t = 1 \dots T$. A loss $L$ reaches the states directly through
# `grad_hs[t-1]` $= \partial L / \partial h_t$ (its *direct* part; zero where the loss does not look at
# $h_t$). Going backwards in time, the total gradient at $h_t$ is the direct part plus what flows back
# from step $t + 1$:
#
# $$
# \delta_t = \frac{\partial L}{\partial h_t}\Big|_{\text{direct}} + W_{hh}^\top g_{t+1}, \qquad
# g_t = \delta_t \odot \tanh'(a_t) = \delta_t \odot (1 - h_t^2), \qquad (g_{T+1} = 0)
# $$
#
# and, since the same weights are used at every step, their gradients are **sums over time**:
#
# $$
# \frac{\partial L}{\partial W_{xh}} = \sum_t g_t x_t^\top, \quad
# \frac{\partial L}{\partial W_{hh}} = \sum_t g_t h_{t-1}^\top, \quad
# \frac{\partial L}{\partial b} = \sum_t g_t, \quad
# \frac{\partial L}{\partial h_0} = W_{hh}^\top g_1
# $$
#
# (for a batch, $g_t$ is $(N, H)$ and the sums also run over the batch). Write `rnn_backward`:
# run the forward pass (keep the states), then the backward pass. It is compared with autograd
# through `torch.nn.RNNCell` unrolled over the same steps, in float64.

# %% nbgrader={"grade": false, "grade_id": "bptt", "locked": false, "schema_version": 3, "solution": true, "task": false}
def rnn_backward(grad_hs, xs, h0, params):
    """Gradients of a tanh RNN unrolled over T steps.

    Args:
        grad_hs: (T, N, H), dL/dh_t (direct part) for t = 1..T.
        xs: (T, N, I), the inputs x_1..x_T.
        h0: (N, H), the initial state.
        params: W_xh (H, I), W_hh (H, H), b (H,).

    Returns:
        (grad_W_xh, grad_W_hh, grad_b, grad_h0) with the shapes of W_xh, W_hh, b, h0.
    """
    ### BEGIN SOLUTION
    W_hh = params["W_hh"]
    hs = [h0]
    for x_t in xs:
        hs.append(rnn_cell(x_t, hs[-1], params))
    grad_W_xh = torch.zeros_like(params["W_xh"])
    grad_W_hh = torch.zeros_like(W_hh)
    grad_b = torch.zeros_like(params["b"])
    grad_h = torch.zeros_like(h0)  # what flows back into h_t from step t + 1
    for t in reversed(range(len(xs))):
        delta = grad_h + grad_hs[t]
        g = delta * (1 - hs[t + 1] ** 2)  # through tanh: tanh'(a) = 1 - tanh(a)^2
        grad_W_xh += g.T @ xs[t]
        grad_W_hh += g.T @ hs[t]
        grad_b += g.sum(dim=0)
        grad_h = g @ W_hh
    return grad_W_xh, grad_W_hh, grad_b, grad_h
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_rnn_backward", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_rnn_backward(rnn_backward, forbidden=RNN_FROM_SCRATCH)

# %% nbgrader={"grade": true, "grade_id": "test_rnn_backward_hidden", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run at grading): longer sequences, one sample, saturating weights.
### BEGIN HIDDEN TESTS
from course_lib.grading import BPTTCase

check_rnn_backward(rnn_backward, forbidden=RNN_FROM_SCRATCH, cases=[
    BPTTCase("T=12, gradient at every step", 12, 2, 4, 5, seed=20),
    BPTTCase("T=8, one sample, gradient only at h_T", 8, 1, 3, 6, last_only=True, seed=21),
    BPTTCase("T=5, saturating weights", 5, 3, 2, 4, scale=2.0, seed=22),
])
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 — gradient clipping by norm (4 points)
#
# Exploding gradients are tamed by clipping (Pascanu, Mikolov & Bengio, 2012, Algorithm 1): treat
# the gradients of **all** parameters as one vector $\hat g$ and, if it is too long, shrink it,
# keeping its direction:
#
# $$ \text{if } \|\hat g\| \ge \theta: \quad \hat g \leftarrow \frac{\theta}{\|\hat g\|}\,\hat g . $$
#
# Write `clip_grad_norm` as `torch.nn.utils.clip_grad_norm_` computes it, but without changing its
# arguments: `grads` is a list with the gradient of every parameter (an entry is `None` for a parameter
# that got no gradient: skip it, and give `None` back in its place). Return the list of clipped
# gradients, each scaled by $\min\big(1,\ \theta / (\|\hat g\| + 10^{-6})\big)$ (the $10^{-6}$ avoids a
# division by zero), and the total norm $\|\hat g\|$ before clipping, as a 0-d tensor.

# %% nbgrader={"grade": false, "grade_id": "clipping", "locked": false, "schema_version": 3, "solution": true, "task": false}
def clip_grad_norm(grads, max_norm):
    """Scale all gradients together so that their joint L2 norm is at most max_norm.

    Args:
        grads: list of tensors (or None), one per parameter.
        max_norm: the threshold.

    Returns:
        (clipped_grads, total_norm): a list like grads, and the norm before clipping (a 0-d tensor).
    """
    ### BEGIN SOLUTION
    present = [g for g in grads if g is not None]
    total_norm = torch.sqrt(sum((g ** 2).sum() for g in present))
    scale = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    return [None if g is None else g * scale for g in grads], total_norm
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_clip_grad_norm", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_clip_grad_norm(clip_grad_norm, forbidden=RNN_FROM_SCRATCH)

# %% nbgrader={"grade": true, "grade_id": "test_clip_grad_norm_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run at grading): gradients that are None, many small tensors, a zero gradient.
### BEGIN HIDDEN TESTS
from course_lib.grading import ClipCase

check_clip_grad_norm(clip_grad_norm, forbidden=RNN_FROM_SCRATCH, cases=[
    ClipCase("some gradients are None", ((4, 2), (4,), (5,), (2, 4)), max_norm=1.5, none=(1, 2), seed=31),
    ClipCase("ten small tensors, each below max_norm, together above", tuple((3,) for _ in range(10)), max_norm=2.0,
             scale=0.6, seed=32),
    ClipCase("a zero gradient", ((3, 3),), max_norm=1.0, scale=0.0, seed=33),
])
### END HIDDEN TESTS

# %% [markdown]
# ## Part 4 — reading an image row by row (6 points)
#
# A $28\times28$ Fashion-MNIST image is a sequence of $T = 28$ rows of 28 features: $x_t$ is row $t$.
# The course library's `RowRNNClassifier` reads the rows top to bottom with `nn.RNN`, `nn.LSTM` or
# `nn.GRU` and classifies from the last hidden state with a linear layer:

# %%
import inspect

from course_lib.models.row_rnn import RowRNNClassifier

print(inspect.getsource(RowRNNClassifier.forward))

# %% [markdown]
# Choose its options in `model_config()` (a dict of `RowRNNClassifier`'s arguments: `mode`,
# `hidden_size`, `num_layers`, `bidirectional`) and write `train_classifier`, which trains such a model
# on the training set (any optimiser, schedule or clipping you like).
#
# **Grading.** The graders do not train your model and do not run your model code: they build
# `RowRNNClassifier(**model_config())` themselves, load the weights you submit — `rnn_classifier.pt`,
# written by `torch.save(model.state_dict(), ...)`, or `rnn_classifier.safetensors`, written by
# `safetensors.torch.save_file` — and measure the accuracy on the 10 000 test images: **at least
# 85 %** earns the points. The file is read with `torch.load(..., weights_only=True)`: a pickled model
# (`torch.save(model)`) is rejected. Keep training short: a GRU with 128 hidden units gets there in
# two epochs (about a minute on a laptop's CPU).

# %% nbgrader={"grade": false, "grade_id": "classifier", "locked": false, "schema_version": 3, "solution": true, "task": false}
def model_config():
    """Options of RowRNNClassifier, e.g. {"mode": "lstm", "hidden_size": 128}."""
    ### BEGIN SOLUTION
    return {"mode": "gru", "hidden_size": 128}
    ### END SOLUTION


def train_classifier(model, images, labels):
    """Train ``model`` in place on ``images (N, 1, 28, 28)``, ``labels (N,)``."""
    ### BEGIN SOLUTION
    train.fit(model, (images, labels), epochs=2, batch_size=128,
              optimizer=torch.optim.Adam(model.parameters(), lr=2e-3), clip_grad_norm=1.0, device="cpu",
              progress=False, seed=0)
    ### END SOLUTION


# %% [markdown]
# Train once and save the weights. When the file exists the cell does not train again: the graders
# run your notebook with your file next to it (keep this check, or grading runs out of time), and
# read the file through `submitted_weights()`.

# %%
from course_lib.grading import load_state_dict_file


def submitted_weights():
    """The state_dict in WEIGHTS (or the .safetensors file), read without unpickling anything."""
    return load_state_dict_file(WEIGHTS if WEIGHTS.exists() else WEIGHTS.with_suffix(".safetensors"))


if WEIGHTS.exists() or WEIGHTS.with_suffix(".safetensors").exists():
    print("found the saved weights: not training again (delete the file to retrain)")
else:
    try:
        torch.manual_seed(0)
        model = RowRNNClassifier(**model_config())
        images, labels = data.load_fashion_mnist("train")
        train_classifier(model, images, labels)
    except NotImplementedError:
        print("part 4 is not written yet: nothing trained, nothing saved")
    else:
        torch.save(model.state_dict(), WEIGHTS)
        print(f"saved {WEIGHTS}")

# %% nbgrader={"grade": true, "grade_id": "test_classifier_model", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
check_sequence_classifier(model_config)

# %% nbgrader={"grade": true, "grade_id": "test_classifier_accuracy", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
# Hidden test (run at grading): your saved weights in RowRNNClassifier(**model_config()), on the 10 000 test images.
### BEGIN HIDDEN TESTS
check_classifier_accuracy(model_config, submitted_weights, threshold=0.85)
### END HIDDEN TESTS

# %% [markdown]
# ## Part 5 — long memories (4 points, graded by hand)
#
# In five to ten sentences: why do the gradients of a vanilla RNN vanish or explode over long
# sequences (use part 2's backward recursion), why does the LSTM's cell state $C_t$ let a gradient
# travel many steps, and why does clipping by norm help with exploding gradients but not with
# vanishing ones?

# %% [markdown] nbgrader={"grade": true, "grade_id": "long_memory_answer", "locked": false, "points": 4, "schema_version": 3, "solution": true, "task": false}
# In a vanilla RNN the gradient that reaches $h_0$ from $h_T$ is the product
# $\prod_t W_{hh}^\top \operatorname{diag}(1 - h_t^2)$ — part 2's recursion applied $T$ times. Its norm
# behaves roughly like $(\rho\,\gamma)^T$, with $\rho$ the size of $W_{hh}$'s largest singular value and
# $\gamma \le 1$ the typical $\tanh'$: below one it shrinks exponentially (vanishes, so long
# dependencies get no learning signal), above one it can grow exponentially (explodes, one step throws
# the weights far away). The LSTM's memory is updated additively, $C_t = f_t \odot C_{t-1} + i_t \odot
# \tilde C_t$, so $\partial C_t / \partial C_{t-1} = \operatorname{diag}(f_t)$: no weight matrix and no
# squashing derivative on this path, and while the forget gate stays near 1 the gradient passes
# through many steps almost unchanged (the "constant error carousel"). Clipping rescales a gradient
# that is too long to a fixed length while keeping its direction, so a rare explosion no longer
# destroys training; but a vanishing gradient is too short, and scaling it up would only amplify
# noise — its direction carries no information about the distant past. That needs a change of the
# architecture (gates, residual paths) or of the initialisation.
#
# *Marking:* 1 point each for: the repeated product of $W_{hh}$ and $\tanh'$ (exponential in $T$);
# the additive cell update with $\partial C_t/\partial C_{t-1} = f_t$; clipping limits the length but
# keeps the direction; a vanished gradient cannot be recovered by rescaling.
