"""Localisation: one object per image, found by *box regression + classification*.

The lecture's list of other vision tasks starts with "bounding box regression + classification"
and "point coordinates regression". With one object per image both are a classifier with a second
head: besides the class logits, the network outputs four numbers, the box
:math:`(x_1, y_1, x_2, y_2)` as fractions of the image size, trained with a regression loss:

.. math:: \\mathcal L = \\mathrm{CE}(\\text{logits}, y) + \\lambda\\, \\mathrm{smooth}_{L_1}(\\hat b - b).

Keypoints (DeepPose, Toshev & Szegedy, 2014) are the same head with :math:`2K` outputs, the
coordinates of :math:`K` points. Detectors of many objects (Faster R-CNN, Ren et al., 2015) run
such a head on many candidate regions. A box is judged by its intersection over union (chapter 6)
with the true one; IoU ≥ 0.5 is the usual "found".
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of ``(x1, y1, x2, y2)`` boxes: ``(N, 4)``, ``(M, 4)`` → ``(N, M)``."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])    # (N,)
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])    # (M,)
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])       # (N, M, 2)
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)               # (N, M)
    return inter / (area1[:, None] + area2[None, :] - inter)


def place_on_canvas(images: torch.Tensor, canvas: int = 56, min_size: int = 16,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste each ``(N, 1, h, w)`` image, resized to a random square size, at a random place of a blank canvas.

    Returns:
        ``(N, 1, canvas, canvas)`` images and ``(N, 4)`` boxes ``(x1, y1, x2, y2)`` as fractions of ``canvas``.
    """
    N = images.shape[0]
    out, boxes = images.new_zeros(N, 1, canvas, canvas), images.new_zeros(N, 4)
    sizes = torch.randint(min_size, canvas + 1, (N,), generator=generator)
    for k in range(N):
        s = int(sizes[k])
        x, y = (int(v) for v in torch.randint(0, canvas - s + 1, (2,), generator=generator))
        out[k, :, y:y + s, x:x + s] = F.interpolate(images[k:k + 1], size=(s, s), mode="bilinear", align_corners=False)[0]
        boxes[k] = torch.tensor([x, y, x + s, y + s], dtype=images.dtype) / canvas
    return out, boxes


class LocalizationNet(nn.Module):
    """A small CNN with two heads: class logits ``(N, num_classes)`` and a box ``(N, 4)`` in [0, 1]."""

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*block(1, width), *block(width, 2 * width), *block(2 * width, 4 * width),
                                      nn.AdaptiveAvgPool2d(4), nn.Flatten())   # keeps a 4x4 grid: *where* matters
        self.classify = nn.Linear(4 * width * 16, num_classes)
        self.locate = nn.Sequential(nn.Linear(4 * width * 16, 4), nn.Sigmoid())

    def forward(self, x):
        h = self.features(x)
        raw = self.locate(h)                                   # (N, 4) in [0, 1], corners in any order
        xs, ys = raw[:, 0::2].sort(dim=1).values, raw[:, 1::2].sort(dim=1).values  # a valid box: x1 <= x2, y1 <= y2
        return self.classify(h), torch.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], dim=1)


def localization_loss(logits, boxes_pred, labels, boxes, box_weight: float = 5.0) -> torch.Tensor:
    """Cross-entropy of the class plus ``box_weight`` times the smooth-L1 error of the box."""
    return F.cross_entropy(logits, labels) + box_weight * F.smooth_l1_loss(boxes_pred, boxes, beta=0.05)
