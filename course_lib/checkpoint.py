"""Checkpoints: save a training run and resume it exactly, or keep just a model's weights.

A run is more than its weights. Resuming it so that the continuation is *bit-identical* to a run
that was never interrupted also needs the optimiser's moments, the scheduler's position, the
gradient scaler, the epoch, the metrics so far, and every random-number generator that the rest of
the run will draw from (batch order, dropout masks, augmentation).

Files are written with :func:`torch.save` and read back with ``weights_only=True``, which refuses
to unpickle arbitrary objects, so loading a checkpoint cannot run code hidden in it.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def rng_state(generator: torch.Generator | None = None) -> dict:
    """The state of every random-number generator a training loop draws from.

    Args:
        generator: the loop's own generator (e.g. the one that shuffles the batches), if any.

    Returns:
        A dict of tensors and plain Python values (loadable with ``weights_only=True``).
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.copy()), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` captured (the inverse of :func:`rng_state`)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def save_checkpoint(path, *, model, optimizer=None, scheduler=None, scaler=None, epoch: int = 0,
                    history: dict | None = None, generator: torch.Generator | None = None) -> Path:
    """Write everything needed to resume a run after ``epoch`` (counted from 1) to ``path``.

    The file is written next to its final name and then renamed, so an interrupted save never
    leaves a half-written checkpoint behind.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": int(epoch),
        "history": history or {},
        "rng": rng_state(generator),
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    partial.replace(path)
    return path


def load_checkpoint(path, *, model, optimizer=None, scheduler=None, scaler=None,
                    generator: torch.Generator | None = None, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into the given objects, in place.

    Restores the random-number generators too, so the next draw is the one the original run
    would have made.

    Returns:
        ``{"epoch": int, "history": dict}`` of the saved run.
    """
    state = torch.load(path, map_location=map_location, weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None and state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], generator)
    return {"epoch": state["epoch"], "history": state["history"]}


def save_weights(model: torch.nn.Module, path) -> Path:
    """Save only the model's ``state_dict`` (what a pretrained checkpoint is), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(model.state_dict(), partial)
    partial.replace(path)
    return path


def load_weights(model: torch.nn.Module, path, strict: bool = True, map_location="cpu"):
    """Load a ``state_dict`` saved by :func:`save_weights` (``weights_only=True``: no code runs).

    Returns:
        What :meth:`torch.nn.Module.load_state_dict` returns (missing and unexpected keys).
    """
    state = torch.load(path, map_location=map_location, weights_only=True)
    return model.load_state_dict(state, strict=strict)


def made_once(files: dict[str, Path], make: Callable[[dict[str, Path]], None]) -> dict[str, Path]:
    """``files`` (``name -> path``), made by ``make`` only when one of them is missing: what a slow
    training run writes (the course's pretrained network, the tests' reference weights) is trained once
    per machine and then read back.

    ``make`` receives ``<path>.part`` names to write; they are renamed to the final names only once all
    are written, so an interrupted run leaves no half-written file that would pass for a finished one.
    """
    files = {name: Path(path) for name, path in files.items()}
    if all(path.is_file() for path in files.values()):
        return files
    parts = {name: path.with_name(path.name + ".part") for name, path in files.items()}
    for part in parts.values():
        part.parent.mkdir(parents=True, exist_ok=True)
    make(parts)
    for name, part in parts.items():
        part.replace(files[name])
    return files
