"""Checks for assignment 4's segmentation parts: U-Net shapes, Dice loss, IoU, a trained model.

* :func:`check_unet_shapes` — the output is ``(N, K, H, W)`` and every up-convolution
  (``nn.ConvTranspose2d``) returns the size given by the transposed-convolution formula
  ``L_out = (L_in - 1)·s - 2p + d·(k - 1) + output_padding + 1``, which must double ``L_in``, at the
  scales ``H / 2^{depth-1}, ..., H / 2, H`` in this order.
* :func:`check_soft_dice_loss` — against the definition evaluated in NumPy (float64).
* :func:`check_mean_iou` — against ``sklearn.metrics.jaccard_score`` averaged over the classes
  present in the prediction or the target.
* :func:`check_segmentation_model` — loads a submitted weights file *without unpickling*
  (``torch.load(weights_only=True)`` or safetensors) into the student's U-Net and measures its mean
  IoU on canvases generated from the Fashion-MNIST test split (:data:`SEGMENTATION_TASK`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from course_lib.data import load_fashion_mnist
from course_lib.grading.compare import call_student, describe_difference, each_case, fail, passed, refuse, sandbox_ready
from course_lib.grading.weights import load_state_dict_file
from course_lib.segmentation import iou_per_class, make_fashion_segmentation


@dataclass(frozen=True)
class UNetCase:
    """``build_unet(in_channels, num_classes, base_channels, depth)`` on an input ``(N, in_channels, H, W)``."""

    name: str
    input_shape: tuple[int, int, int, int]
    num_classes: int
    base_channels: int = 4
    depth: int = 2
    seed: int = 0

    def describe(self) -> str:
        return (f"build_unet(in_channels={self.input_shape[1]}, num_classes={self.num_classes}, "
                f"base_channels={self.base_channels}, depth={self.depth}), input {self.input_shape}, eval mode")


@dataclass(frozen=True)
class MaskCase:
    """Seeded logits ``(N, K, H, W)`` (or predictions) and targets ``(N, H, W)`` using only ``classes_used``."""

    name: str
    shape: tuple[int, int, int, int]  # (N, K, H, W)
    classes_used: int | None = None  # targets (and predictions) drawn from [0, classes_used); None: all K
    smooth: float = 1.0
    seed: int = 0

    def describe(self, what: str = "logits") -> str:
        N, K, H, W = self.shape
        used = self.classes_used or K
        text = f"{what} {(N, K, H, W) if what == 'logits' else (N, H, W)}, num_classes={K}, target {(N, H, W)}"
        text += f" with classes 0..{used - 1} only" if used < K else ""
        return text + (f", smooth={self.smooth:g}" if what == "logits" else "") + f", seed={self.seed}"

    def logits_and_target(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        N, K, H, W = self.shape
        logits = 2 * torch.randn(N, K, H, W, generator=g, dtype=torch.float64)
        target = torch.randint(self.classes_used or K, (N, H, W), generator=g)
        return logits, target

    def pred_and_target(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        N, K, H, W = self.shape
        used = self.classes_used or K
        target = torch.randint(used, (N, H, W), generator=g)
        noise = torch.randint(used, (N, H, W), generator=g)
        pred = torch.where(torch.rand(N, H, W, generator=g) < 0.6, target, noise)  # 60% copied, rest random
        return pred, target


UNET_CASES = (
    UNetCase("depth 2, 16x16 input", (2, 1, 16, 16), num_classes=3),
    UNetCase("depth 3, 32x32 input, 6 classes", (1, 1, 32, 32), num_classes=6, base_channels=4, depth=3, seed=1),
)

DICE_CASES = (
    MaskCase("3 classes, one image", (1, 3, 4, 4)),
    MaskCase("4 classes, batch of 2", (2, 4, 5, 3), seed=1),
)

IOU_CASES = (
    MaskCase("3 classes, one image", (1, 3, 6, 6)),
    MaskCase("4 classes, batch of 2", (2, 4, 5, 7), seed=1),
)


def transposed_conv_size(size: int, m: nn.ConvTranspose2d, axis: int) -> int:
    """The output length of a transposed convolution along ``axis`` (0: height, 1: width)."""
    return ((size - 1) * m.stride[axis] - 2 * m.padding[axis] + m.dilation[axis] * (m.kernel_size[axis] - 1)
            + m.output_padding[axis] + 1)


def _build(check: str, case_name: str, params: str, build_unet: Callable, **kwargs) -> nn.Module:
    model = call_student(check, case_name, params, (), build_unet, **kwargs)
    if not isinstance(model, nn.Module):
        raise fail(check, case_name, params, f"build_unet must return an nn.Module, got {type(model).__name__}")
    return model


@sandbox_ready
def check_unet_shapes(build_unet: Callable, cases: Sequence[UNetCase] = UNET_CASES) -> None:
    """Output shape and every up-convolution's output shape of ``build_unet(...)`` (eval mode)."""
    check = "check_unet_shapes"
    for case in each_case(check, cases):
        params = case.describe()
        N, C, H, W = case.input_shape
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(case.seed)
            model = _build(check, case.name, params, build_unet, in_channels=C, num_classes=case.num_classes,
                           base_channels=case.base_channels, depth=case.depth).eval()
        seen = []
        hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, tuple(i[0].shape), tuple(o.shape))))
                 for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
        x = torch.randn(case.input_shape, generator=torch.Generator().manual_seed(case.seed))
        try:
            with torch.no_grad():
                out = call_student(check, case.name, params, (), model, x)
        finally:
            for h in hooks:
                h.remove()
        expected = (N, case.num_classes, H, W)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise fail(check, case.name, params, f"wrong output shape: expected {expected} "
                       f"(one score per class and pixel), got {got}")
        if len(seen) != case.depth:
            raise fail(check, case.name, params, f"expected {case.depth} up-convolutions (nn.ConvTranspose2d), "
                       f"one per level of depth, got {len(seen)} calls")
        for level, (m, (_, _, h, w), got_shape) in enumerate(seen):
            formula = (transposed_conv_size(h, m, 0), transposed_conv_size(w, m, 1))
            scale = 2 ** (case.depth - 1 - level)
            wanted = (H // scale, W // scale)
            if formula != wanted:
                raise fail(check, case.name, params,
                           f"up-convolution {level + 1} of {case.depth} (input {h}x{w}): the transposed-convolution "
                           f"formula gives {formula[0]}x{formula[1]} with kernel_size={m.kernel_size}, "
                           f"stride={m.stride}, padding={m.padding}, but the decoder needs {wanted[0]}x{wanted[1]} "
                           f"there (twice its input, to match the skip connection)")


def _dice_reference(logits: np.ndarray, target: np.ndarray, smooth: float) -> float:
    """1 - mean_k (2 sum_p P_pk G_pk + s) / (sum_p P_pk + sum_p G_pk + s), sums over the whole batch."""
    K = logits.shape[1]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    P = e / e.sum(axis=1, keepdims=True)
    dice = []
    for k in range(K):
        Pk, Gk = P[:, k], (target == k).astype(np.float64)
        dice.append((2 * (Pk * Gk).sum() + smooth) / (Pk.sum() + Gk.sum() + smooth))
    return 1 - float(np.mean(dice))


@sandbox_ready
def check_soft_dice_loss(soft_dice_loss: Callable, cases: Sequence[MaskCase] = DICE_CASES) -> None:
    """``soft_dice_loss(logits (N, K, H, W), target (N, H, W), smooth)`` -> a differentiable scalar."""
    check = "check_soft_dice_loss"
    for case in each_case(check, cases):
        logits, target = case.logits_and_target()
        params = case.describe("logits") + ", torch.float64"
        expected = torch.tensor(_dice_reference(logits.numpy(), target.numpy(), case.smooth), dtype=torch.float64)
        x = logits.clone().requires_grad_(True)
        got = call_student(check, case.name, params, (), soft_dice_loss, x, target.clone(), smooth=case.smooth)
        problem = describe_difference(got, expected, "loss")
        if problem is None and not got.requires_grad:
            problem = "loss: it does not depend differentiably on the logits (use the softmax, not argmax)"
        refuse(check, case.name, params, problem)


def _iou_reference(pred: np.ndarray, target: np.ndarray) -> float:
    from sklearn.metrics import jaccard_score

    present = np.union1d(np.unique(pred), np.unique(target))
    return float(jaccard_score(target.ravel(), pred.ravel(), labels=present, average="macro"))


@sandbox_ready
def check_mean_iou(mean_iou: Callable, cases: Sequence[MaskCase] = IOU_CASES) -> None:
    """``mean_iou(pred (N, H, W), target (N, H, W), num_classes) -> float``: the mean IoU over the
    classes present in ``pred`` or ``target`` (sklearn's ``jaccard_score``, macro average)."""
    check = "check_mean_iou"
    for case in each_case(check, cases):
        pred, target = case.pred_and_target()
        params = case.describe("pred")
        expected = _iou_reference(pred.numpy(), target.numpy())
        got = call_student(check, case.name, params, (), mean_iou, pred.clone(), target.clone(), case.shape[1])
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (float, int, np.floating)):
            raise fail(check, case.name, params, f"expected a float, got {type(got).__name__} {got!r}")
        if not abs(float(got) - expected) <= 1e-6:
            raise fail(check, case.name, params, f"mean IoU: expected {expected:.6f}, got {float(got):.6f} "
                       f"(classes present in pred or target: {int(np.union1d(pred.unique(), target.unique()).size)} "
                       f"of {case.shape[1]})")


# ---------------------------------------------------------------------------------------------------
# The trained model


@dataclass(frozen=True)
class SegmentationTask:
    """The assignment's data set and model: canvases from :func:`course_lib.segmentation.make_fashion_segmentation`."""

    canvas_size: int = 32
    max_items: int = 2
    grouping: str = "coarse"
    num_classes: int = 6
    base_channels: int = 8
    depth: int = 2

    def unet_kwargs(self) -> dict:
        return {"in_channels": 1, "num_classes": self.num_classes, "base_channels": self.base_channels,
                "depth": self.depth}

    def data(self, split: str, num_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(canvases (n, 1, S, S), masks (n, S, S))`` generated from a Fashion-MNIST split."""

        images, labels = load_fashion_mnist(split)
        canvases, masks, _ = make_fashion_segmentation(images, labels, num_samples, canvas_size=self.canvas_size,
                                                       max_items=self.max_items, grouping=self.grouping, seed=seed)
        return canvases, masks


SEGMENTATION_TASK = SegmentationTask()
#: The mean IoU a submitted model must reach on held-out canvases. The reference solution (1200
#: canvases, 4 epochs, about 3 CPU-minutes) reaches 0.466 on the validation canvases and 0.460 on
#: the hidden ones; a model that predicts only the background scores at most 1/6 (one class of six).
SEGMENTATION_MIN_IOU = 0.4
#: The validation canvases students see (Fashion-MNIST test split, this seed).
VALIDATION_SEED = 1


@sandbox_ready
def check_segmentation_model(build_unet: Callable, weights_path, *, min_iou: float = SEGMENTATION_MIN_IOU,
                             num_samples: int = 300, seed: int = VALIDATION_SEED,
                             task: SegmentationTask = SEGMENTATION_TASK) -> None:
    """Load ``weights_path`` into ``build_unet(**task.unet_kwargs())`` and require a mean IoU of at
    least ``min_iou`` on ``num_samples`` canvases of the Fashion-MNIST test split generated with ``seed``.

    The mean IoU (over the classes present in prediction or target, all canvases pooled) is printed;
    nothing is returned, because nbgrader would take a number left as a test cell's value for its score.
    """

    check = "check_segmentation_model"
    case = f"{Path(weights_path).name}, {num_samples} canvases (test split, seed={seed})"
    params = f"build_unet(**{task.unet_kwargs()}), weights {str(weights_path)!r}"
    state = load_state_dict_file(weights_path)
    model = _build(check, case, params, build_unet, **task.unet_kwargs())
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise fail(check, case, params, "the saved state_dict does not fit the model that build_unet builds "
                   f"with these arguments:\n  {str(err).splitlines()[0]}\n  {str(err).splitlines()[-1].strip()}") from err
    images, masks = task.data("test", num_samples, seed)
    model.eval()
    with torch.no_grad():
        logits = torch.cat([call_student(check, case, params, (), model, images[i:i + 100])
                            for i in range(0, len(images), 100)])
    if tuple(logits.shape) != (num_samples, task.num_classes, *masks.shape[1:]):
        raise fail(check, case, params, f"wrong output shape {tuple(logits.shape)}: expected "
                   f"{(num_samples, task.num_classes, *masks.shape[1:])}")
    iou = iou_per_class(logits.argmax(dim=1), masks, task.num_classes)
    miou = iou.nanmean().item()
    if not miou >= min_iou:
        per_class = ", ".join(f"{v:.2f}" for v in iou.tolist())
        raise fail(check, case, params, f"mean IoU {miou:.3f} is below the required {min_iou:.2f} "
                   f"(IoU per class, background first: {per_class})")
    passed(check, 1, f" (mean IoU {miou:.3f} >= {min_iou:.2f})")
