"""Text as sequences of characters: the shipped corpus, a vocabulary, training windows.

A character-level language model reads ``x_1 … x_T`` and predicts at every step the next
character, so its targets are the inputs shifted by one (many-to-many):

    inputs   "Shall I compare thee"
    targets  "hall I compare thee "

The course ships one public-domain text, Shakespeare's *Sonnets* (1609), in ``text_data/`` (see
its README for the provenance); nothing is downloaded.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

TEXT_DIR = Path(__file__).resolve().parent / "text_data"
TEXTS = {  # name -> SHA-256 of the file, checked on loading
    "shakespeare_sonnets": "edb826e5a801c955ab21026b3660306838fbf29ec29ea01886b2854c6d639b55",
}


def load_text(name: str = "shakespeare_sonnets") -> str:
    """The text of a corpus shipped in ``course_lib/text_data`` (checksum verified)."""
    if name not in TEXTS:
        raise ValueError(f"unknown text {name!r}; available: {sorted(TEXTS)}")
    raw = (TEXT_DIR / f"{name}.txt").read_bytes()
    if hashlib.sha256(raw).hexdigest() != TEXTS[name]:
        raise ValueError(f"{TEXT_DIR / name}.txt is damaged: its SHA-256 differs from the shipped one")
    return raw.decode("utf-8")


class Vocabulary:
    """The characters of a text, each given an index (sorted, so the mapping is reproducible)."""

    def __init__(self, text: str):
        if not text:
            raise ValueError("cannot build a vocabulary from an empty text")
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """``str`` of length ``L`` → int64 tensor ``(L,)`` of indices."""
        unknown = set(text) - self.index.keys()
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {sorted(unknown)!r}")
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, indices) -> str:
        """Indices (a tensor or a list) → ``str``."""
        return "".join(self.chars[int(i)] for i in torch.as_tensor(indices).flatten())


def make_sequences(data: torch.Tensor, seq_len: int, stride: int | None = None):
    """Cut an encoded text into windows and their next-character targets.

    Args:
        data: ``(L,)`` indices.
        seq_len: ``T``, characters per window.
        stride: distance between window starts (default ``seq_len``: non-overlapping).

    Returns:
        ``inputs`` and ``targets``, both int64 ``(M, T)``, with ``targets[m, t] = inputs[m, t+1]``
        (the character after the window for the last step).
    """
    stride = stride or seq_len
    if seq_len < 1 or stride < 1 or len(data) < seq_len + 1:
        raise ValueError(f"need seq_len, stride >= 1 and a text longer than seq_len; got seq_len={seq_len}, "
                         f"stride={stride}, {len(data)} characters")
    windows = data.unfold(0, seq_len + 1, stride)  # (M, T + 1)
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()


def split_text(data: torch.Tensor, val_fraction: float = 0.1):
    """The first ``1 - val_fraction`` of the text for training, the rest for validation."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(len(data) * (1 - val_fraction))
    return data[:cut], data[cut:]
