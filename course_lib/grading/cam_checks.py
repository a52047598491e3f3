"""Checks for assignment 4's class-activation-map part: CAM and Grad-CAM on a fixed, seeded model.

The model is a convolutional ``body`` (its output: the feature maps ``A``, ``(N, C, h, w)``) followed by
a ``head`` that maps ``A`` to logits: global average pooling and one linear layer (CAM's setting), or
a 1x1 convolution with ReLU before them, or global *max* pooling (where the gradient is not spread
evenly over the positions, so Grad-CAM's spatial average matters). The references are independent of
the student's code and of :mod:`course_lib.cam`:

* CAM: the linear layer applied at every position as a 1x1 convolution (``F.conv2d`` with the weight
  reshaped to ``(K, C, 1, 1)``), the class's channel taken;
* Grad-CAM: the whole model run on the images with a forward hook on the body's last layer that
  registers a tensor hook on its output, ``backward()`` from the chosen logits; the hooked
  gradient averaged over the positions weighs the channels, then ReLU.

Everything runs in float64. Every check raises :class:`~course_lib.grading.compare.CheckFailure`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.grading.compare import call_student, describe_difference, fail, passed, sandbox_ready

HEADS = ("gap_linear", "conv_gap_linear", "gmp_linear")


@dataclass(frozen=True)
class CamCase:
    """A seeded model and batch: images ``(batch, 3, *size)``, ``channels`` feature maps of the same size,
    ``classes`` logits through the ``head`` (one of :data:`HEADS`); ``class_idx`` one class per image
    (``None``: each image's top class)."""

    name: str
    head: str = "gap_linear"
    batch: int = 2
    channels: int = 6
    size: tuple[int, int] = (5, 5)
    classes: int = 4
    class_idx: tuple[int, ...] | None = None
    seed: int = 0

    def describe(self) -> str:
        chosen = "each image's top class" if self.class_idx is None else f"class_idx={list(self.class_idx)}"
        return (f"head={self.head}, images ({self.batch}, 3, {self.size[0]}, {self.size[1]}), "
                f"features ({self.batch}, {self.channels}, {self.size[0]}, {self.size[1]}), {self.classes} classes, "
                f"{chosen}, seed={self.seed}")


CAM_CASES = (
    CamCase("global average pooling + linear", class_idx=(1, 3)),
    CamCase("one class for all, 8 channels, 4x6 map", channels=8, size=(4, 6), batch=3, class_idx=(2, 2, 2), seed=1),
)
GRAD_CAM_CASES = (
    CamCase("global average pooling + linear", class_idx=(1, 3)),
    CamCase("1x1 conv + ReLU before pooling", head="conv_gap_linear", batch=3, class_idx=(0, 2, 1), seed=2),
)


def cam_model(case: CamCase) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """``(body, head, images)`` for ``case``: seeded, float64, in eval mode."""
    g = torch.Generator().manual_seed(case.seed)
    C, K = case.channels, case.classes
    body = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), nn.ReLU(), nn.Conv2d(C, C, 3, padding=1), nn.ReLU())
    pool = nn.AdaptiveMaxPool2d(1) if case.head == "gmp_linear" else nn.AdaptiveAvgPool2d(1)
    layers = [nn.Conv2d(C, C, 1), nn.ReLU()] if case.head == "conv_gap_linear" else []
    head = nn.Sequential(*layers, pool, nn.Flatten(), nn.Linear(C, K))
    with torch.no_grad():
        for p in [*body.parameters(), *head.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g))
    images = torch.randn(case.batch, 3, *case.size, generator=g)
    return body.double().eval(), head.double().eval(), images.double()


def _classes(case: CamCase, logits: torch.Tensor) -> torch.Tensor:
    if case.class_idx is None:
        return logits.argmax(dim=1)
    return torch.tensor(case.class_idx, dtype=torch.long)


def reference_cam(features: torch.Tensor, weight: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """CAM as the linear layer run at every position (a 1x1 convolution): ``(N, h, w)``."""
    maps = F.conv2d(features, weight[:, :, None, None])  # (N, K, h, w)
    return maps[torch.arange(len(classes)), classes]


def reference_grad_cam(body: nn.Module, head: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of the body's output, its gradient caught by hooks during ``backward()``: ``(N, h, w)``."""
    caught = {}

    def keep(module, args, output):
        caught["A"] = output
        output.register_hook(lambda grad: caught.__setitem__("grad", grad))

    handle = body[-1].register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = head(body(images.clone().requires_grad_(True)))
            logits[torch.arange(len(classes)), classes].sum().backward()
    finally:
        handle.remove()
        for p in [*body.parameters(), *head.parameters()]:
            p.grad = None
    alpha = caught["grad"].mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1): one weight per channel
    return torch.relu((alpha * caught["A"]).sum(dim=1)).detach()


@sandbox_ready
def check_class_activation_map(class_activation_map: Callable, cases: Sequence[CamCase] = CAM_CASES) -> None:
    """``class_activation_map(features, weight, class_idx)`` -> ``(N, h, w)`` against the linear layer run
    as a 1x1 convolution over the feature maps (the head must be global average pooling + linear)."""
    check = "check_class_activation_map"
    for case in cases:
        body, head, images = cam_model(case)
        with torch.no_grad():
            features = body(images)
            classes = _classes(case, head(features))
        weight = head[-1].weight.detach().clone()
        expected = reference_cam(features, weight, classes)
        got = call_student(check, case.name, case.describe(), (), class_activation_map, features.clone(),
                           weight, classes.clone())
        problem = describe_difference(got, expected, "CAM")
        if problem:
            raise fail(check, case.name, case.describe(), problem)
    passed(check, len(cases))


@sandbox_ready
def check_grad_cam(grad_cam: Callable, cases: Sequence[CamCase] = GRAD_CAM_CASES) -> None:
    """``grad_cam(features, head, class_idx)`` -> ``(N, h, w)`` against Grad-CAM computed with hooks on the
    whole model (body and head) run on the images."""
    check = "check_grad_cam"
    for case in cases:
        body, head, images = cam_model(case)
        with torch.no_grad():
            features = body(images)
            classes = _classes(case, head(features))
        expected = reference_grad_cam(body, head, images, classes)
        got = call_student(check, case.name, case.describe(), (), grad_cam, features.clone(), head, classes.clone())
        if isinstance(got, torch.Tensor):
            got = got.detach()
        problem = describe_difference(got, expected, "Grad-CAM")
        if problem:
            raise fail(check, case.name, case.describe(), problem)
    passed(check, len(cases))
