"""The course's own "pretrained network": no ImageNet weights offline, so the course makes one.

:func:`fashion_cnn_clothes_0_4` is ``fashion_cnn_small(num_classes=5)`` trained on the Fashion-MNIST
training images of classes 0–4 (T-shirt, trouser, pullover, dress, coat) with a fixed small budget
and cached as a ``state_dict`` under :func:`course_lib.data.data_root` ``/checkpoints`` (the file
naming of chapter 4's transfer-learning section), so that it is trained once per machine.
Assignment 3 fine-tunes it on classes 5–9 (sandal, shirt, sneaker, bag, ankle boot).
"""
from __future__ import annotations

from pathlib import Path

import torch

from course_lib.checkpoint import load_weights, made_once
from course_lib.data import data_root, load_fashion_mnist
from course_lib.models.fashion_cnn import FashionCNN, fashion_cnn_small
from course_lib.train import FitConfig, fit

SOURCE_CLASSES = (0, 1, 2, 3, 4)


def checkpoint_path(train_size: int, epochs: int, seed: int) -> Path:
    """Where the checkpoint of this budget is cached."""
    return data_root() / "checkpoints" / f"fashion_cnn_small_classes0-4_n{train_size}_e{epochs}_seed{seed}.pt"


def fashion_cnn_clothes_0_4(train_size: int = 10_000, epochs: int = 2, seed: int = 0,
                            progress: bool = False) -> FashionCNN:
    """``fashion_cnn_small(num_classes=5)`` pretrained on the first ``train_size`` training images
    of classes 0–4 (Adam, lr 1e-3, batch 128, ``epochs`` epochs, on the CPU for reproducibility).

    Loads the cached checkpoint if there is one (with ``weights_only=True``: no code in the file
    runs), else trains and saves it (about 35 s of CPU time with the defaults; about 91% test
    accuracy on classes 0–4).

    Args:
        train_size: number of training images (the first ones of classes 0–4, in file order).
        epochs: training epochs.
        seed: seeds the initialisation and the batch order.
        progress: show a progress bar while training.

    Returns:
        The model in eval mode, on the CPU: ``(N, 1, 28, 28)`` images → ``(N, 5)`` logits.
    """
    if train_size < 1 or epochs < 1:
        raise ValueError(f"train_size and epochs must be positive, got {train_size}, {epochs}")
    path = checkpoint_path(train_size, epochs, seed)
    torch.manual_seed(seed)  # the same initialisation as chapter 4's new_model()
    model = fashion_cnn_small(num_classes=len(SOURCE_CLASSES))
    made_once({"weights": path}, lambda files: _pretrain(model, train_size, epochs, seed, progress, files["weights"]))
    load_weights(model, path)
    return model.eval()


def _pretrain(model: FashionCNN, train_size: int, epochs: int, seed: int, progress: bool, path: Path) -> None:
    """Train ``model`` on the first ``train_size`` images of classes 0–4 and save its state_dict to ``path``."""
    images, labels = load_fashion_mnist("train")
    keep = torch.isin(labels, torch.tensor(SOURCE_CLASSES))
    data = (images[keep][:train_size], labels[keep][:train_size])
    fit(model, data, config=FitConfig(epochs=epochs, batch_size=128, device="cpu", progress=progress, seed=seed))
    torch.save(model.state_dict(), path)
