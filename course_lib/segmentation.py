"""Semantic segmentation: a class for every pixel — losses, the IoU metric, data and training.

* :func:`pixel_cross_entropy` — cross-entropy averaged over all pixels (``F.cross_entropy`` on
  ``(N, K, H, W)`` scores and ``(N, H, W)`` targets does exactly this).
* :func:`soft_dice_loss` — one minus the mean soft Dice coefficient over classes (Milletari et al.,
  2016, V-Net), insensitive to how many pixels the background takes.
* :func:`confusion_matrix`, :func:`iou_per_class`, :func:`mean_iou` — intersection over union,
  the metric of Pascal VOC.
* :func:`make_fashion_segmentation` — a segmentation set generated deterministically from real
  Fashion-MNIST images pasted on a larger canvas.
* :func:`train_segmentation` — :func:`course_lib.train.fit` for the optimisation, plus per-epoch
  validation loss, pixel accuracy and mean IoU (``fit`` measures classification accuracy).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from scipy import ndimage

from course_lib.data import FASHION_MNIST_CLASSES

# Mask classes: 0 is the background; "fine" keeps the 10 Fashion-MNIST classes, "coarse" merges them.
COARSE_GROUPS = {
    "top": ("T-shirt/top", "Pullover", "Coat", "Shirt"),
    "trouser": ("Trouser",),
    "dress": ("Dress",),
    "footwear": ("Sandal", "Sneaker", "Ankle boot"),
    "bag": ("Bag",),
}


def segmentation_classes(grouping: str = "fine") -> tuple[str, ...]:
    """Names of the mask classes, background first: 11 for ``"fine"``, 6 for ``"coarse"``."""
    if grouping == "fine":
        return ("background", *FASHION_MNIST_CLASSES)
    if grouping == "coarse":
        return ("background", *COARSE_GROUPS)
    raise ValueError(f"grouping must be 'fine' or 'coarse', got {grouping!r}")


def _label_to_class(grouping: str) -> torch.Tensor:
    """Fashion-MNIST label (0..9) -> mask class (1..K-1)."""
    if grouping == "fine":
        return torch.arange(1, 11)
    segmentation_classes(grouping)  # validates
    group_of = {name: g for g, names in enumerate(COARSE_GROUPS.values(), start=1) for name in names}
    return torch.tensor([group_of[name] for name in FASHION_MNIST_CLASSES])


def pixel_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every pixel's class scores, averaged over all ``N·H·W`` pixels.

    .. math::  \\mathcal{L}_{CE} = -\\frac{1}{NHW}\\sum_{n,i,j} \\log
               \\frac{\\exp z_{n, y_{nij}, i, j}}{\\sum_k \\exp z_{n,k,i,j}}

    Args:
        logits: ``(N, K, H, W)`` scores ``z``.
        target: ``(N, H, W)`` int64 classes ``y`` in ``[0, K)``.
    """
    if logits.dim() != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"need logits (N, K, H, W) and target (N, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")
    log_p = logits.log_softmax(dim=1)  # (N, K, H, W)
    return -log_p.gather(1, target[:, None]).mean()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """One minus the soft Dice coefficient, averaged over the ``K`` classes.

    .. math::  D_k = \\frac{2\\sum_p P_{pk} G_{pk} + s}{\\sum_p P_{pk} + \\sum_p G_{pk} + s}, \\qquad
               \\mathcal{L}_{Dice} = 1 - \\frac1K \\sum_k D_k

    with ``P = softmax(logits)``, ``G`` the one-hot target and the sums over all pixels ``p`` of
    the batch. For hard 0/1 predictions and ``s = 0``, ``D_k`` is the F1 score of class ``k``;
    the smoothing ``s`` keeps a class that is absent from both at ``D_k = 1`` instead of 0/0.

    Args:
        logits: ``(N, K, H, W)``.
        target: ``(N, H, W)`` int64 in ``[0, K)``.
        smooth: ``s >= 0``.
    """
    if logits.dim() != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"need logits (N, K, H, W) and target (N, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    K = logits.shape[1]
    probs = logits.softmax(dim=1)  # (N, K, H, W)
    onehot = F.one_hot(target, K).permute(0, 3, 1, 2).to(probs.dtype)  # (N, K, H, W)
    dims = (0, 2, 3)  # sum over the batch and the pixels, one number per class
    intersection = (probs * onehot).sum(dims)
    dice = (2 * intersection + smooth) / (probs.sum(dims) + onehot.sum(dims) + smooth)  # (K,)
    return 1 - dice.mean()


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``M[t, p]`` = number of pixels of true class ``t`` predicted as ``p``; ``(K, K)`` int64."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    t, p = target.reshape(-1).long(), pred.reshape(-1).long()
    if len(t) and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"classes must lie in [0, {num_classes}), got [{min(t.min(), p.min())}, "
                         f"{max(t.max(), p.max())}]")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Intersection over union of every class; NaN for a class in neither ``pred`` nor ``target``.

    .. math::  \\mathrm{IoU}_k = \\frac{|P_k \\cap G_k|}{|P_k \\cup G_k|} = \\frac{TP_k}{TP_k + FP_k + FN_k}

    Args:
        pred, target: integer class maps of one shape, e.g. ``(N, H, W)``.

    Returns:
        ``(K,)`` float64.
    """
    M = confusion_matrix(pred, target, num_classes).double()
    tp = M.diagonal()
    union = M.sum(0) + M.sum(1) - tp  # predicted + true - both
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """The mean of :func:`iou_per_class` over the classes present in ``pred`` or ``target``."""
    return iou_per_class(pred, target, num_classes).nanmean().item()


def make_fashion_segmentation(images: torch.Tensor, labels: torch.Tensor, num_samples: int,
                              canvas_size: int = 64, max_items: int = 3, threshold: float = 0.2,
                              grouping: str = "fine", fill_holes: bool = True, seed: int = 0):
    """Paste 1..``max_items`` Fashion-MNIST items on a black canvas; the mask says which item is where.

    Each sample draws (with a seeded generator) the number of items, the items from ``images``,
    and their top-left corners. A pixel belongs to an item where the item's intensity exceeds
    ``threshold`` — or, with ``fill_holes``, where it is enclosed by such pixels (dark prints and
    shadows inside a garment are still the garment); there the item is opaque and its class is
    written into the mask (later items cover earlier ones). Elsewhere an item is transparent:
    ``max`` with the canvas.

    Args:
        images, labels: Fashion-MNIST ``(M, 1, 28, 28)`` in [0, 1] and ``(M,)``, e.g. one split.
        num_samples: how many canvases.
        canvas_size: the side ``S`` of the square canvas (``>= 28``).
        max_items: the most items per canvas.
        threshold: intensity above which a pixel is the item's.
        grouping: ``"fine"`` (10 classes + background) or ``"coarse"`` (see :data:`COARSE_GROUPS`).
        fill_holes: add the enclosed dark pixels to an item's silhouette
            (``scipy.ndimage.binary_fill_holes``).
        seed: the same seed gives the same data set.

    Returns:
        ``(canvases, masks, placements)``: float32 ``(num_samples, 1, S, S)``, int64
        ``(num_samples, S, S)`` and int64 ``(num_samples, max_items, 4)`` rows
        ``(source index, mask class, top, left)`` in pasting order, ``-1`` for unused slots.
    """
    if images.dim() != 4 or images.shape[1] != 1 or len(images) != len(labels):
        raise ValueError(f"need images (M, 1, h, w) and labels (M,), got {tuple(images.shape)}, {tuple(labels.shape)}")
    h, w = images.shape[-2:]
    if canvas_size < max(h, w) or max_items < 1:
        raise ValueError(f"need canvas_size >= {max(h, w)} and max_items >= 1, got {canvas_size}, {max_items}")
    to_class = _label_to_class(grouping)
    gen = torch.Generator().manual_seed(seed)
    canvases = torch.zeros(num_samples, 1, canvas_size, canvas_size)
    masks = torch.zeros(num_samples, canvas_size, canvas_size, dtype=torch.long)
    placements = torch.full((num_samples, max_items, 4), -1, dtype=torch.long)
    for n in range(num_samples):
        count = int(torch.randint(1, max_items + 1, (1,), generator=gen))
        for slot, src in enumerate(torch.randint(len(images), (count,), generator=gen).tolist()):
            top, left = torch.randint(canvas_size - h + 1, (1,), generator=gen).item(), \
                torch.randint(canvas_size - w + 1, (1,), generator=gen).item()
            item, cls = images[src, 0], int(to_class[labels[src]])
            region = canvases[n, 0, top:top + h, left:left + w]  # a view: writes go to the canvas
            inside = item > threshold
            if fill_holes:
                inside = torch.from_numpy(ndimage.binary_fill_holes(inside.numpy()))
            region.copy_(torch.where(inside, item, torch.maximum(region, item)))
            masks[n, top:top + h, left:left + w][inside] = cls
            placements[n, slot] = torch.tensor([src, cls, top, left])
    return canvases, masks, placements


@dataclass
class SegmentationHistory:
    """Per epoch: training loss (from ``fit``), validation loss, pixel accuracy and mean IoU."""

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_pixel_acc: list = field(default_factory=list)
    val_miou: list = field(default_factory=list)
    seconds: list = field(default_factory=list)


@torch.no_grad()
def evaluate_segmentation(model, data, num_classes: int, loss_fn=pixel_cross_entropy, batch_size: int = 256):
    """``(loss, pixel accuracy, IoU per class (K,))`` of ``model`` on ``data = (images, masks)``, eval mode."""
    from course_lib.train import predict

    images, masks = data
    logits = predict(model, images, batch_size=batch_size)  # (N, K, H, W) on the CPU
    pred = logits.argmax(dim=1)
    loss = loss_fn(logits.float(), masks).item()
    return loss, (pred == masks).double().mean().item(), iou_per_class(pred, masks, num_classes)


def train_segmentation(model, train_data, val_data, *, num_classes: int, epochs: int,
                       loss_fn=pixel_cross_entropy, optimizer=None, seed: int = 0, progress: bool = True,
                       **fit_kwargs) -> SegmentationHistory:
    """Train a segmentation model with :func:`course_lib.train.fit`, one epoch at a time.

    ``fit`` does the optimisation (any loss on ``(N, K, H, W)`` logits and ``(N, H, W)`` masks
    works there), but its accuracy counts correct *labels per example*; here every epoch is
    followed by :func:`evaluate_segmentation` on ``val_data``.

    Args:
        model: returns ``(N, K, H, W)`` logits.
        train_data, val_data: ``(images (N, C, H, W), masks (N, H, W))``.
        num_classes: ``K``.
        epochs: the number of epochs.
        loss_fn: e.g. :func:`pixel_cross_entropy`, :func:`soft_dice_loss` or a sum of both.
        optimizer: default ``Adam(lr=1e-3)``, kept across epochs.
        seed: epoch ``e`` shuffles with ``seed + e``, so runs repeat exactly on the CPU.
        fit_kwargs: passed to ``fit`` (``batch_size``, ``device``, ``amp``, ``clip_grad_norm``, ...).
    """
    from tqdm import tqdm

    from course_lib.train import FitConfig, fit

    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=1e-3)
    history = SegmentationHistory()
    bar = tqdm(range(epochs), desc="epochs", disable=not progress)
    for epoch in bar:
        tic = time.perf_counter()
        run = fit(model, train_data, config=FitConfig(epochs=1, optimizer=optimizer, loss_fn=loss_fn, seed=seed + epoch,
                  progress=False, **fit_kwargs))
        val_loss, pixel_acc, iou = evaluate_segmentation(model, val_data, num_classes, loss_fn)
        history.train_loss.append(run.train_loss[-1])
        history.val_loss.append(val_loss)
        history.val_pixel_acc.append(pixel_acc)
        history.val_miou.append(iou.nanmean().item())
        history.seconds.append(time.perf_counter() - tic)
        bar.set_postfix(loss=f"{val_loss:.3f}", pixel_acc=f"{pixel_acc:.3f}", mIoU=f"{history.val_miou[-1]:.3f}")
    return history
