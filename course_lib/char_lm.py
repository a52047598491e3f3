"""A character-level LSTM language model: training with clipping, and sampling with a temperature.

The model (Karpathy, 2015, "The unreasonable effectiveness of recurrent neural networks") embeds
each character, runs an LSTM over the sequence and predicts the next character at every step
(many-to-many). Trained, it generates text one character at a time (one-to-many, autoregressive):
the sampled character is fed back as the next input. With temperature ``τ`` the next character is
drawn from

.. math::   p_i \\propto \\exp(\\text{logit}_i / τ):

``τ → 0`` is greedy (repetitive), ``τ = 1`` the model's own distribution, ``τ > 1`` more random.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from course_lib.data import batches
from course_lib.rnn_gradients import clip_grad_norm_
from course_lib.runtime import device as pick_device


class CharLSTM(nn.Module):
    """``indices (N, T) → logits (N, T, V)`` and the final LSTM state.

    Args:
        vocab_size: ``V``.
        embed_dim: size of the learnt character embeddings.
        hidden_size, num_layers, dropout: of the ``nn.LSTM``.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 32, hidden_size: int = 256, num_layers: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_size, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, indices: torch.Tensor, state=None):
        out, state = self.lstm(self.embed(indices), state)  # (N, T, H)
        return self.head(out), state  # (N, T, V)


@dataclass
class LMHistory:
    """Training loss per step; validation loss (nats per character) and time per epoch."""

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_step: list = field(default_factory=list)  # number of updates done when val_loss was measured
    grad_norm: list = field(default_factory=list)
    seconds: list = field(default_factory=list)


def sequence_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the next-character predictions over all ``N·T`` positions."""
    logits, _ = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # (N*T, V) vs (N*T,)


@torch.no_grad()
def evaluate_lm(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 256) -> float:
    """Mean cross-entropy (nats per character) on windows ``(M, T)``; ``exp`` of it is the perplexity."""
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = sum(sequence_loss(model, x.to(dev), y.to(dev)).item() * len(x)
                for x, y in batches(inputs, targets, batch_size, shuffle=False))
    model.train(was_training)
    return total / len(inputs)


def train_char_lm(model: nn.Module, train: tuple, val: tuple | None = None, *, epochs: int,
                  batch_size: int = 64, lr: float = 3e-3, clip: float = 1.0, device=None, seed: int = 0,
                  max_seconds: float | None = None, progress: bool = True) -> LMHistory:
    """Train with Adam on ``(inputs, targets)`` windows, clipping the gradient norm (Pascanu, 2012).

    Args:
        train, val: pairs of int64 ``(M, T)`` tensors from :func:`course_lib.text.make_sequences`.
        clip: threshold of :func:`course_lib.rnn_gradients.clip_grad_norm_`.
        max_seconds: stop after the batch that crosses this time budget (``None``: no limit).
    """
    dev = pick_device(device) if device is None or isinstance(device, str) else torch.device(device)
    model.to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history, start = LMHistory(), time.perf_counter()
    for epoch in range(epochs):
        tic = time.perf_counter()
        bar = tqdm(batches(*train, batch_size, generator=generator), desc=f"epoch {epoch + 1}/{epochs}",
                   total=math.ceil(len(train[0]) / batch_size), disable=not progress, leave=False)
        for x, y in bar:
            loss = sequence_loss(model, x.to(dev), y.to(dev))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            history.grad_norm.append(clip_grad_norm_(model.parameters(), clip).item())
            optimizer.step()
            history.train_loss.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                break
        if val is not None:
            history.val_loss.append(evaluate_lm(model, *val))
            history.val_step.append(len(history.train_loss))
        history.seconds.append(time.perf_counter() - tic)
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    return history


@torch.no_grad()
def sample(model: CharLSTM, prompt: torch.Tensor, length: int, temperature: float = 1.0,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue ``prompt`` (indices ``(L,)``) by ``length`` characters drawn one at a time.

    Returns:
        ``(length,)`` int64 indices of the generated characters (without the prompt), on the CPU.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if len(prompt) == 0:
        raise ValueError("the prompt needs at least one character")
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits, state = model(prompt.view(1, -1).to(dev))  # read the prompt; its last logits predict the next
    out = []
    for _ in range(length):
        probs = F.softmax(logits[0, -1].float() / temperature, dim=-1).cpu()
        nxt = torch.multinomial(probs, 1, generator=generator)  # (1,)
        out.append(nxt)
        logits, state = model(nxt.view(1, 1).to(dev), state)  # feed the sample back in
    model.train(was_training)
    return torch.cat(out)
