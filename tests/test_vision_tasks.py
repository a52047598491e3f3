"""The other vision tasks' building blocks against independent references: the Gram matrix and
style loss against sums written out by hand (Gatys et al., Eq. 3-4), the pixel shuffle against
F.pixel_shuffle, box IoU against torchvision.ops.box_iou."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou as torchvision_box_iou

from course_lib.detection import LocalizationNet, box_iou, localization_loss, place_on_canvas
from course_lib.style import gram_matrix, style_loss
from course_lib.superres import pixel_shuffle


def test_gram_matrix_by_hand():
    # two channels on a 2x2 grid: F = [[1, 2, 3, 4], [0, 1, 0, -1]]
    f = torch.tensor([[[[1., 2.], [3., 4.]], [[0., 1.], [0., -1.]]]])
    expected = torch.tensor([[[1. + 4 + 9 + 16, 0. + 2 + 0 - 4], [0. + 2 + 0 - 4, 0. + 1 + 0 + 1]]])
    torch.testing.assert_close(gram_matrix(f), expected)


def test_style_loss_is_gatys_eq4_written_as_loops():
    g = torch.Generator().manual_seed(0)
    f, s = torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64), torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64)
    N, M = 3, 20
    F_, S_ = f.reshape(N, M), s.reshape(N, M)
    by_hand = sum((sum(F_[i, k] * F_[j, k] for k in range(M)) - sum(S_[i, k] * S_[j, k] for k in range(M))) ** 2
                  for i in range(N) for j in range(N)) / (4 * N ** 2 * M ** 2)
    torch.testing.assert_close(style_loss([f], [s], weights=[1.0]), by_hand)


def test_style_loss_ignores_where_things_are():
    # a permutation of the positions keeps the Gram matrix: the style loss is 0 (catches a per-position loss)
    f = torch.randn(2, 4, 6, 6)
    shuffled = f.flatten(2)[..., torch.randperm(36)].reshape(2, 4, 6, 6)
    assert style_loss([f], [shuffled]).item() < 1e-6
    assert style_loss([f], [f.flip(1)]).item() > 1e-3, "swapping channels must change the style"


@pytest.mark.parametrize("shape, r", [((2, 12, 3, 5), 2), ((1, 9, 4, 4), 3), ((1, 3, 2, 2), 1)])
def test_pixel_shuffle_matches_torch(shape, r):
    x = torch.randn(shape)
    torch.testing.assert_close(pixel_shuffle(x, r), F.pixel_shuffle(x, r))


def test_pixel_shuffle_rejects_bad_channels():
    with pytest.raises(ValueError, match="multiple of"):
        pixel_shuffle(torch.zeros(1, 6, 2, 2), 2)


def test_box_iou_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    corners = torch.rand(7, 2, 2, generator=g)
    boxes = torch.cat([corners.amin(1), corners.amax(1)], dim=1)  # valid (x1, y1, x2, y2)
    torch.testing.assert_close(box_iou(boxes, boxes[:4]), torchvision_box_iou(boxes, boxes[:4]))


def test_place_on_canvas_puts_the_image_inside_its_box():
    g = torch.Generator().manual_seed(0)
    images = torch.ones(5, 1, 28, 28)
    canvas, boxes = place_on_canvas(images, canvas=40, min_size=10, generator=g)
    for k in range(5):
        x1, y1, x2, y2 = (boxes[k] * 40).round().int().tolist()
        assert canvas[k, 0, y1:y2, x1:x2].min() > 0.99 and canvas[k].sum() == pytest.approx((x2 - x1) * (y2 - y1), rel=1e-4)


def test_localization_net_shapes_and_loss():
    net = LocalizationNet(num_classes=10, width=4)
    logits, boxes = net(torch.zeros(3, 1, 56, 56))
    assert logits.shape == (3, 10) and boxes.shape == (3, 4) and boxes.min() >= 0 and boxes.max() <= 1
    assert torch.all(boxes[:, 2] >= boxes[:, 0]) and torch.all(boxes[:, 3] >= boxes[:, 1]), "an inverted box"
    loss = localization_loss(logits, boxes, torch.tensor([0, 1, 2]), torch.full((3, 4), 0.5))
    loss.backward()
