"""Where the computation runs, and how to make it repeatable."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_ENV = "COURSE_DEVICE"


def device(prefer: str | None = None) -> torch.device:
    """The device to compute on: ``prefer``, else ``$COURSE_DEVICE``, else cuda → mps → cpu.

    Args:
        prefer: ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"``, or ``None``/``"auto"`` to let
            ``$COURSE_DEVICE`` decide and, without it, take the first available one. Notebooks pass
            their ``DEVICE`` parameter here, so ``COURSE_DEVICE=cpu`` moves a whole run to the CPU
            while a notebook that names a device keeps it.

    Raises:
        ValueError: the requested device is not available on this machine.
    """
    choice = prefer if prefer not in (None, "auto") else os.environ.get(DEVICE_ENV) or "auto"
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(choice)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {choice!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {choice!r} requested but MPS is not available here; use 'cpu' or 'auto'")
    return dev


def seed_everything(seed: int = 0, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices) so that a run can be repeated.

    Args:
        seed: the seed.
        deterministic: also ask PyTorch for deterministic kernels (slower on CUDA).

    Returns:
        A CPU ``torch.Generator`` seeded with ``seed``, for code that wants its own stream.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA and MPS too
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)
