"""One training loop for the whole course: ``fit``, ``evaluate``, ``predict``, ``plot_history``.

``fit`` runs mini-batch gradient descent on in-memory tensors (sliced by
:func:`course_lib.data.batches`) and records loss, accuracy, learning rate and time per epoch.
It also does what practical training needs (chapter 4):

* learning-rate schedules, stepped once per epoch (``ReduceLROnPlateau`` gets the validation
  loss) or once per batch (``scheduler_interval="batch"``, e.g. ``OneCycleLR``);
* gradient clipping by the global norm, :math:`g \\leftarrow g\\,\\min(1, c/\\lVert g\\rVert_2)`
  (Pascanu et al., 2013);
* mixed precision: ``torch.autocast`` to float16 with a ``GradScaler`` on CUDA
  (Micikevicius et al., 2018); bfloat16 autocast on CPU when ``amp=True`` is asked for there;
* the ``channels_last`` (NHWC) memory format for model and inputs;
* checkpoints after every epoch and exact resumption (:mod:`course_lib.checkpoint`);
* seeding, so that two runs with the same seed give the same numbers on the CPU.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn
from tqdm import tqdm

from course_lib.checkpoint import load_checkpoint, save_checkpoint
from course_lib.data import batches
from course_lib.runtime import device as pick_device
from course_lib.runtime import seed_everything


@dataclass
class History:
    """Metrics per epoch (``val_*`` stay empty without validation data; ``lr`` is the epoch's first)."""

    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    seconds: list = field(default_factory=list)


def _autocast(dev: torch.device, amp: bool):
    """float16 autocast on CUDA, bfloat16 on CPU (float16 matmuls are slow there), else a no-op."""
    dtype = torch.bfloat16 if dev.type == "cpu" else torch.float16
    return torch.autocast(dev.type, dtype=dtype, enabled=amp)


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _to(x: torch.Tensor, dev: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(dev, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


@torch.no_grad()
def evaluate(model, data, batch_size: int = 512, device=None, loss_fn=None, amp: bool = False,
             channels_last: bool = False) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``data`` in eval mode (dropout off, BatchNorm frozen).

    Args:
        data: ``(images (N, ...), labels (N,))``, or ``labels (N, H, W)`` for a per-pixel classifier
            (segmentation): the accuracy is then the fraction of pixels classified right.
        device: where to compute; default the model's own device.
        loss_fn: default ``nn.CrossEntropyLoss()``; must average over the batch.

    Returns:
        ``(loss, accuracy)``: the per-example mean loss and the fraction of correct argmax guesses.
    """
    images, labels = data
    dev = torch.device(device) if device is not None else _model_device(model)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for x, y in batches(images, labels, batch_size, shuffle=False):
        x, y = _to(x, dev, channels_last), y.to(dev)
        with _autocast(dev, amp):
            logits = model(x)
            total_loss += loss_fn(logits.float(), y).item() * len(y)  # mean → sum over the batch
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    return total_loss / len(labels), correct / labels.numel()  # per pixel for (N, H, W) masks


@torch.no_grad()
def predict(model, images, batch_size: int = 512, device=None) -> torch.Tensor:
    """The model's outputs (logits) for ``images (N, ...)``, in eval mode, gathered on the CPU."""
    dev = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    outputs = [model(images[i:i + batch_size].to(dev)).cpu() for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(outputs)


def _train_epoch(model, images, labels, *, optimizer, loss_fn, dev, batch_size, generator, scaler,
                 amp, clip_grad_norm, channels_last, augment, batch_scheduler, sampler):
    """One pass over the training data; returns (mean loss, accuracy) measured on the fly."""
    model.train()
    if sampler is not None:  # e.g. class-balanced: the epoch is the sampler's draw, in its order
        order = sampler(generator)
        images, labels = images[order], labels[order]
    total_loss, correct = 0.0, 0
    for x, y in batches(images, labels, batch_size, shuffle=sampler is None, generator=generator):
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        if augment is not None:
            x = augment(x)
        x = _to(x, dev, channels_last)
        with _autocast(dev, amp):
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # the scale keeps small float16 gradients from underflowing
        if clip_grad_norm is not None:
            scaler.unscale_(optimizer)  # clip the true gradient, not the scaled one
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        if batch_scheduler is not None:
            batch_scheduler.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
    return total_loss / len(labels), correct / labels.numel()


def fit(model, train_data, val_data=None, *, epochs, batch_size=128, optimizer=None, scheduler=None,
        loss_fn=None, device=None, clip_grad_norm=None, amp=False, channels_last=False, augment=None,
        checkpoint_path=None, resume=False, progress=True, seed=0,
        scheduler_interval: str = "epoch", sampler=None) -> History:
    """Train ``model`` by mini-batch gradient descent for ``epochs`` epochs (counted in total).

    Args:
        model: an ``nn.Module`` returning logits ``(N, classes)``; moved to ``device``.
        train_data, val_data: ``(images (N, C, H, W), labels (N,))`` tensors (on the CPU).
        epochs: the total number of epochs; with ``resume`` the run continues up to it.
        optimizer: default ``Adam(model.parameters(), lr=1e-3)`` (Kingma & Ba, 2015).
        scheduler: a ``torch.optim.lr_scheduler`` object; ``ReduceLROnPlateau`` is stepped with
            the validation loss (the training loss if there is no validation data).
        loss_fn: default ``nn.CrossEntropyLoss()``.
        device: default :func:`course_lib.device` (``$COURSE_DEVICE`` or the best available).
        clip_grad_norm: clip the global gradient norm to this value (``None``: no clipping).
        amp: mixed precision (float16 + GradScaler on CUDA, bfloat16 autocast on CPU).
        channels_last: NHWC memory format for model and 4-d inputs.
        augment: a callable applied to every training batch of images (on the device).
        checkpoint_path: write a checkpoint there after every epoch.
        resume: continue from ``checkpoint_path`` if it exists (bit-identical on the CPU).
        progress: show a tqdm bar over the epochs.
        seed: seeds Python, NumPy, torch and the batch-shuffling generator.
        scheduler_interval: ``"epoch"`` or ``"batch"`` (when to call ``scheduler.step()``).
        sampler: ``sampler(generator) -> indices`` drawing each epoch's examples (e.g.
            :func:`course_lib.imbalance.balanced_sampler`); default: every example once, shuffled.

    Returns:
        The :class:`History` of all epochs, including those before a resume.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if scheduler_interval not in ("epoch", "batch"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'batch', got {scheduler_interval!r}")
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a checkpoint_path")
    dev = pick_device(device)
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler(dev.type, enabled=amp and dev.type == "cuda")  # bf16 needs no scaling
    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    batch_scheduler = scheduler if scheduler_interval == "batch" else None

    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)  # batch order, independent of model init
    history, start = History(), 0
    if resume and checkpoint_path is not None and Path(checkpoint_path).is_file():
        saved = load_checkpoint(checkpoint_path, model=model, optimizer=optimizer, scheduler=scheduler,
                                scaler=scaler, generator=generator, map_location=dev)
        history, start = History(**saved["history"]), saved["epoch"]

    bar = tqdm(range(start, epochs), desc="epochs", disable=not progress, initial=start, total=epochs)
    for epoch in bar:
        tic = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = _train_epoch(
            model, *train_data, optimizer=optimizer, loss_fn=loss_fn, dev=dev, batch_size=batch_size,
            generator=generator, scaler=scaler, amp=amp, clip_grad_norm=clip_grad_norm,
            channels_last=channels_last, augment=augment, batch_scheduler=batch_scheduler,
            sampler=sampler)
        if val_data is not None:
            val_loss, val_acc = evaluate(model, val_data, device=dev, loss_fn=loss_fn, amp=amp,
                                         channels_last=channels_last)
            history.val_loss.append(val_loss)
            history.val_acc.append(val_acc)
        if scheduler is not None and batch_scheduler is None:
            if plateau:
                scheduler.step(history.val_loss[-1] if val_data is not None else train_loss)
            else:
                scheduler.step()
        history.train_loss.append(train_loss)
        history.train_acc.append(train_acc)
        history.lr.append(lr)
        history.seconds.append(time.perf_counter() - tic)
        bar.set_postfix(_postfix(history))
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, model=model, optimizer=optimizer, scheduler=scheduler,
                            scaler=scaler, epoch=epoch + 1, history=asdict(history), generator=generator)
    return history


def _postfix(history: History) -> dict:
    post = {"loss": f"{history.train_loss[-1]:.3f}", "acc": f"{history.train_acc[-1]:.3f}"}
    if history.val_acc:
        post.update(val_loss=f"{history.val_loss[-1]:.3f}", val_acc=f"{history.val_acc[-1]:.3f}")
    return post


def plot_history(history: History, title: str | None = None):
    """Loss, accuracy and learning rate against the epoch, training and validation side by side.

    Returns:
        The matplotlib ``Figure`` (call ``plt.show()`` to display it).
    """
    epochs = range(1, len(history.train_loss) + 1)
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, name in ((ax_loss, "loss"), (ax_acc, "acc")):
        ax.plot(epochs, getattr(history, f"train_{name}"), "o-", label="train")
        if getattr(history, f"val_{name}"):
            ax.plot(epochs, getattr(history, f"val_{name}"), "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.legend()
    ax_loss.set_ylabel("loss")
    ax_acc.set_ylabel("accuracy")
    ax_lr.plot(epochs, history.lr, "o-", color="tab:green")
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
