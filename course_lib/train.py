"""One training loop for the whole course: ``fit``, ``evaluate``, ``predict``, ``plot_history``.

``fit(model, train_data, val_data, config=FitConfig(...))`` runs mini-batch gradient descent on
in-memory tensors and records loss, accuracy, learning rate and time per epoch. Everything about
*how* to train is one :class:`FitConfig`; it also does what practical training needs (chapter 4):

* learning-rate schedules, stepped once per epoch (``ReduceLROnPlateau`` gets the validation
  loss) or once per batch (``scheduler_interval="batch"``, e.g. ``OneCycleLR``);
* gradient clipping by the global norm, :math:`g \\leftarrow g\\,\\min(1, c/\\lVert g\\rVert_2)`
  (Pascanu et al., 2013);
* mixed precision: ``torch.autocast`` to float16 with a ``GradScaler`` on CUDA
  (Micikevicius et al., 2018), or to bfloat16 (no scaler needed; the default on CPU);
* the ``channels_last`` (NHWC) memory format for model and inputs;
* checkpoints after every epoch and exact resumption (:mod:`course_lib.checkpoint`);
* seeding, so that two runs with the same seed give the same numbers on the CPU.

The same code keeps a GPU busy: the training set is moved to the device once, shuffled there by a
generator that lives on the device, augmented there batch by batch (``config.augment(x, generator)``),
and the running loss and accuracy are summed on the device and read back (``.item()``, which waits
for the GPU) once per epoch, not once per batch.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

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


@dataclass
class FitConfig:
    """How :func:`fit` trains: one object instead of a dozen keywords.

    Attributes:
        epochs: the total number of epochs; with ``resume`` the run continues up to it.
        batch_size: examples per gradient step.
        optimizer: default ``Adam(model.parameters(), lr=1e-3)`` (Kingma & Ba, 2015).
        scheduler: a ``torch.optim.lr_scheduler`` object; ``ReduceLROnPlateau`` is stepped with
            the validation loss (the training loss if there is no validation data).
        scheduler_interval: ``"epoch"`` or ``"batch"`` (when to call ``scheduler.step()``).
        loss_fn: default ``nn.CrossEntropyLoss()``; must average over the batch.
        device: default :func:`course_lib.device` (``$COURSE_DEVICE`` or the best available).
        clip_grad_norm: clip the global gradient norm to this value (``None``: no clipping).
        amp: mixed precision (autocast; a ``GradScaler`` for float16 on CUDA).
        amp_dtype: ``None``: float16 on CUDA, bfloat16 elsewhere; or ``torch.bfloat16`` on CUDA too.
        channels_last: NHWC memory format for model and 4-d inputs.
        augment: ``augment(images, generator=g) -> images``, applied to every training batch on
            the device with the loop's seeded generator (e.g.
            :func:`course_lib.augment.random_crop_flip`).
        sampler: ``sampler(generator) -> indices`` drawing each epoch's examples (e.g.
            :func:`course_lib.imbalance.balanced_sampler`); default: every example once, shuffled.
        checkpoint_path: write a checkpoint there after every epoch.
        resume: continue from ``checkpoint_path`` if it exists (bit-identical on the CPU).
        progress: show a tqdm bar over the epochs.
        seed: seeds Python, NumPy, torch and the loop's generator (batch order, augmentation).
        compile: run the training steps through ``torch.compile(model)`` (pays off on a GPU).
    """

    epochs: int
    batch_size: int = 128
    optimizer: torch.optim.Optimizer | None = None
    scheduler: object | None = None
    scheduler_interval: str = "epoch"
    loss_fn: Callable | None = None
    device: str | torch.device | None = None
    clip_grad_norm: float | None = None
    amp: bool = False
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    augment: Callable | None = None
    sampler: Callable | None = None
    checkpoint_path: str | Path | None = None
    resume: bool = False
    progress: bool = True
    seed: int = 0
    compile: bool = False

    def __post_init__(self):
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.scheduler_interval not in ("epoch", "batch"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'batch', got {self.scheduler_interval!r}")
        if self.resume and self.checkpoint_path is None:
            raise ValueError("resume=True needs a checkpoint_path")


def _amp_dtype(dev: torch.device, amp_dtype: torch.dtype | None) -> torch.dtype:
    """float16 on CUDA by default; bfloat16 on CPU (float16 matmuls are slow there)."""
    return amp_dtype or (torch.float16 if dev.type == "cuda" else torch.bfloat16)


def _autocast(dev: torch.device, amp: bool, amp_dtype: torch.dtype | None = None):
    return torch.autocast(dev.type, dtype=_amp_dtype(dev, amp_dtype), enabled=amp)


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _to(x: torch.Tensor, dev: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(dev, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def _sum_dtype(dev: torch.device) -> torch.dtype:
    return torch.float32 if dev.type == "mps" else torch.float64  # MPS has no float64


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
    total_loss = torch.zeros((), dtype=_sum_dtype(dev), device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    for x, y in batches(images, labels, batch_size, shuffle=False):
        x, y = _to(x, dev, channels_last), y.to(dev)
        with _autocast(dev, amp):
            logits = model(x)
            total_loss += loss_fn(logits.float(), y) * len(y)  # mean → sum over the batch
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    return total_loss.item() / len(labels), correct.item() / labels.numel()  # per pixel for (N, H, W) masks


@torch.no_grad()
def predict(model, images, batch_size: int = 512, device=None) -> torch.Tensor:
    """The model's outputs (logits) for ``images (N, ...)``, in eval mode, gathered on the CPU."""
    dev = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    outputs = [model(images[i:i + batch_size].to(dev)).cpu() for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(outputs)


@dataclass
class _Run:
    """What one call of :func:`fit` works with, derived once from the model and its :class:`FitConfig`."""

    step_model: nn.Module  # the model, or its torch.compile'd wrapper (same parameters)
    dev: torch.device
    optimizer: torch.optim.Optimizer
    loss_fn: Callable
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # on the device: batch order and augmentation


def _train_epoch(run: _Run, config: FitConfig, images, labels) -> tuple[float, float]:
    """One pass over the training data (already on the device); returns (mean loss, accuracy) measured
    on the fly. Sums stay on the device: one host synchronisation per epoch, not one per batch."""
    run.step_model.train()
    if config.sampler is not None:  # e.g. class-balanced: the epoch is the sampler's draw, in its order
        order = config.sampler(run.generator).to(run.dev)
        images, labels = images[order], labels[order]
    batch_scheduler = config.scheduler if config.scheduler_interval == "batch" else None
    total_loss = torch.zeros((), dtype=_sum_dtype(run.dev), device=run.dev)
    correct = torch.zeros((), dtype=torch.int64, device=run.dev)
    for x, y in batches(images, labels, config.batch_size, shuffle=config.sampler is None, generator=run.generator):
        if config.augment is not None:
            x = config.augment(x, generator=run.generator)
        x = _to(x, run.dev, config.channels_last)
        with _autocast(run.dev, config.amp, config.amp_dtype):
            logits = run.step_model(x)
            loss = run.loss_fn(logits, y)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()  # the scale keeps small float16 gradients from underflowing
        if config.clip_grad_norm is not None:
            run.scaler.unscale_(run.optimizer)  # clip the true gradient, not the scaled one
            nn.utils.clip_grad_norm_(run.step_model.parameters(), config.clip_grad_norm)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        if batch_scheduler is not None:
            batch_scheduler.step()
        total_loss += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
    return total_loss.item() / len(labels), correct.item() / labels.numel()


def _prepare(model: nn.Module, config: FitConfig) -> _Run:
    dev = pick_device(config.device)
    model.to(dev)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    float16_on_cuda = config.amp and dev.type == "cuda" and _amp_dtype(dev, config.amp_dtype) == torch.float16
    seed_everything(config.seed)
    return _Run(
        step_model=torch.compile(model) if config.compile else model,
        dev=dev,
        optimizer=config.optimizer or torch.optim.Adam(model.parameters(), lr=1e-3),
        loss_fn=config.loss_fn or nn.CrossEntropyLoss(),
        scaler=torch.amp.GradScaler(dev.type, enabled=float16_on_cuda),  # bfloat16 needs no scaling
        generator=torch.Generator(device=dev).manual_seed(config.seed),  # independent of model init
    )


def fit(model, train_data, val_data=None, *, config: FitConfig) -> History:
    """Train ``model`` by mini-batch gradient descent as ``config`` says (:class:`FitConfig`).

    Args:
        model: an ``nn.Module`` returning logits ``(N, classes)``; moved to ``config.device``.
        train_data, val_data: ``(images (N, C, H, W), labels (N,))`` tensors, on any device; the
            training set is copied to the training device once, for the whole run.
        config: epochs, batch size, optimizer, schedule, augmentation, ... (one ``FitConfig``).

    Returns:
        The :class:`History` of all epochs, including those before a resume.

    Example:
        ``fit(model, (x, y), config=FitConfig(epochs=3, batch_size=64, seed=0))``
    """
    if not isinstance(config, FitConfig):
        raise TypeError(f"config must be a course_lib.train.FitConfig, got {type(config).__name__}")
    run = _prepare(model, config)
    images, labels = (t.to(run.dev) for t in train_data)  # once: no host-to-device copy per batch
    history, start = History(), 0
    if config.resume and Path(config.checkpoint_path).is_file():
        saved = load_checkpoint(config.checkpoint_path, model=model, optimizer=run.optimizer,
                                scheduler=config.scheduler, scaler=run.scaler, generator=run.generator,
                                map_location=run.dev)
        history, start = History(**saved["history"]), saved["epoch"]

    bar = tqdm(range(start, config.epochs), desc="epochs", disable=not config.progress, initial=start,
               total=config.epochs)
    for epoch in bar:
        tic = time.perf_counter()
        lr = run.optimizer.param_groups[0]["lr"]
        train_loss, train_acc = _train_epoch(run, config, images, labels)
        if val_data is not None:
            val_loss, val_acc = evaluate(model, val_data, device=run.dev, loss_fn=run.loss_fn, amp=config.amp,
                                         channels_last=config.channels_last)
            history.val_loss.append(val_loss)
            history.val_acc.append(val_acc)
        _step_epoch_scheduler(config, history.val_loss[-1] if val_data is not None else train_loss)
        history.train_loss.append(train_loss)
        history.train_acc.append(train_acc)
        history.lr.append(lr)
        history.seconds.append(time.perf_counter() - tic)
        bar.set_postfix(_postfix(history))
        if config.checkpoint_path is not None:
            save_checkpoint(config.checkpoint_path, model=model, optimizer=run.optimizer,
                            scheduler=config.scheduler, scaler=run.scaler, epoch=epoch + 1,
                            history=asdict(history), generator=run.generator)
    return history


def _step_epoch_scheduler(config: FitConfig, monitored_loss: float) -> None:
    """Per-epoch schedulers step here; ``ReduceLROnPlateau`` watches the validation (else training) loss."""
    if config.scheduler is None or config.scheduler_interval == "batch":
        return
    if isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        config.scheduler.step(monitored_loss)
    else:
        config.scheduler.step()


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
