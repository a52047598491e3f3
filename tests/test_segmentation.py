"""course_lib.segmentation and models.unet against F.cross_entropy, sklearn's metrics and the U-Net paper."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.metrics import f1_score, jaccard_score

from course_lib import segmentation as seg
from course_lib.models.unet import UNet


# ---------------------------------------------------------------- losses

def test_pixel_cross_entropy_is_torch_cross_entropy_on_nkhw():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, dtype=torch.float64, requires_grad=True)
    target = torch.randint(5, (2, 6, 7))
    ours = seg.pixel_cross_entropy(logits, target)
    ref = F.cross_entropy(logits, target)
    torch.testing.assert_close(ours, ref)
    g_ours, = torch.autograd.grad(ours, logits)
    g_ref, = torch.autograd.grad(F.cross_entropy(logits, target), logits)
    torch.testing.assert_close(g_ours, g_ref)
    with pytest.raises(ValueError, match="target"):
        seg.pixel_cross_entropy(logits, target[0])


def test_dice_with_hard_predictions_is_one_minus_macro_f1():
    torch.manual_seed(1)
    K = 4
    target = torch.randint(K, (3, 8, 8))
    pred = torch.where(torch.rand(3, 8, 8) < 0.3, torch.randint(K, (3, 8, 8)), target)
    logits = 1e4 * F.one_hot(pred, K).permute(0, 3, 1, 2).double()  # softmax -> exactly one-hot
    loss = seg.soft_dice_loss(logits, target, smooth=0.0)
    f1 = f1_score(target.flatten().numpy(), pred.flatten().numpy(), average="macro", labels=list(range(K)))
    assert abs(loss.item() - (1 - f1)) < 1e-12


def test_dice_hand_example_smoothing_and_gradient():
    # 1 image, 2 classes, 4 pixels; P(class 1) = [0.9, 0.8, 0.1, 0.4], truth = [1, 1, 0, 0]
    p1 = torch.tensor([0.9, 0.8, 0.1, 0.4], dtype=torch.float64)
    logits = torch.stack([torch.zeros(4, dtype=torch.float64), torch.log(p1 / (1 - p1))]).view(1, 2, 2, 2)
    target = torch.tensor([1, 1, 0, 0]).view(1, 2, 2)
    d1 = (2 * 1.7 + 1) / (2.2 + 2 + 1)  # class 1: intersection 0.9+0.8, sum P = 2.2, sum G = 2
    d0 = (2 * 1.5 + 1) / (1.8 + 2 + 1)  # class 0: intersection 0.9+0.6, sum P = 1.8
    torch.testing.assert_close(seg.soft_dice_loss(logits, target, smooth=1.0),
                               torch.tensor(1 - (d0 + d1) / 2, dtype=torch.float64))
    # a class absent everywhere counts as perfect (D = s/s = 1), not as NaN
    logits3 = torch.cat([logits, torch.full((1, 1, 2, 2), -1e4, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(seg.soft_dice_loss(logits3, target), torch.tensor(1 - (d0 + d1 + 1) / 3,
                                                                                 dtype=torch.float64))
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randint(3, (2, 4, 4))
    assert torch.autograd.gradcheck(lambda z: seg.soft_dice_loss(z, t), (x,))


# ---------------------------------------------------------------- IoU

def test_iou_per_class_matches_sklearn_jaccard_and_ignores_absent_classes():
    torch.manual_seed(2)
    K = 6
    target = torch.randint(4, (4, 10, 10))  # classes 4 and 5 are not in the truth ...
    pred = torch.where(torch.rand(4, 10, 10) < 0.4, torch.randint(5, (4, 10, 10)), target)  # ... 4 is predicted
    iou = seg.iou_per_class(pred, target, K)
    t, p = target.flatten().numpy(), pred.flatten().numpy()
    present = sorted(set(t) | set(p))
    ref = jaccard_score(t, p, labels=present, average=None)
    np.testing.assert_allclose(iou[present].numpy(), ref, rtol=0, atol=1e-12)
    assert iou[4].item() == 0.0  # predicted but never true: IoU 0 (a false-positive class counts)
    assert torch.isnan(iou[5])  # neither predicted nor true: excluded from the mean
    assert abs(seg.mean_iou(pred, target, K) - jaccard_score(t, p, labels=present, average="macro")) < 1e-12


def test_confusion_matrix_counts_and_checks_range():
    pred = torch.tensor([0, 1, 1, 2, 2, 2])
    target = torch.tensor([0, 1, 2, 2, 2, 0])
    M = seg.confusion_matrix(pred, target, 3)
    assert M.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 2]]  # rows: truth, columns: prediction
    with pytest.raises(ValueError, match="classes"):
        seg.confusion_matrix(pred, target + 1, 3)


# ---------------------------------------------------------------- data

def _items():
    """Four 28x28 'items' with known pixels, labels 0, 5, 8, 9."""
    images = torch.zeros(4, 1, 28, 28)
    images[0, 0, 2:20, 3:10] = 0.9
    images[1, 0, 10:27, 5:25] = 0.5
    images[2, 0, :, :] = 0.1  # below the threshold: faint, no mask
    images[2, 0, 5:15, 5:15] = 1.0
    images[3, 0, 0:28, 13:15] = 0.3
    return images, torch.tensor([0, 5, 8, 9])


def test_fashion_segmentation_is_deterministic_and_masks_follow_the_items():
    images, labels = _items()
    canvases, masks, placements = seg.make_fashion_segmentation(images, labels, 40, canvas_size=48, seed=3)
    again = seg.make_fashion_segmentation(images, labels, 40, canvas_size=48, seed=3)
    assert torch.equal(canvases, again[0]) and torch.equal(masks, again[1]) and torch.equal(placements, again[2])
    other = seg.make_fashion_segmentation(images, labels, 40, canvas_size=48, seed=4)
    assert not torch.equal(masks, other[1])
    assert canvases.shape == (40, 1, 48, 48) and masks.shape == (40, 48, 48) and masks.dtype == torch.long
    counts = (placements[:, :, 0] >= 0).sum(1)
    assert set(counts.tolist()) == {1, 2, 3}
    for n in range(40):
        expected = torch.zeros(48, 48, dtype=torch.long)  # repaint independently, later on top
        for src, cls, top, left in placements[n][: counts[n]].tolist():
            assert cls == labels[src] + 1  # fine grouping: label k -> class k+1
            item = images[src, 0]
            expected[top:top + 28, left:left + 28][item > 0.2] = cls
        assert torch.equal(masks[n], expected), f"sample {n}"
        # where the mask names the last item, the canvas shows that item's own pixels
        src, cls, top, left = placements[n][counts[n] - 1].tolist()
        inside = images[src, 0] > 0.2
        assert torch.equal(canvases[n, 0, top:top + 28, left:left + 28][inside], images[src, 0][inside])
    assert (masks == 0).any() and canvases.max() <= 1.0


def test_fashion_segmentation_fills_enclosed_holes_only_when_asked():
    ring = torch.zeros(1, 1, 28, 28)
    ring[0, 0, 4:20, 4:20] = 0.8
    ring[0, 0, 8:16, 8:16] = 0.05  # a dark print inside the garment
    for fill, expected_inside in ((True, 16 * 16), (False, 16 * 16 - 8 * 8)):
        canvases, masks, placements = seg.make_fashion_segmentation(ring, torch.tensor([3]), 1, canvas_size=28,
                                                                    max_items=1, fill_holes=fill)
        assert int((masks[0] == 4).sum()) == expected_inside, f"fill_holes={fill}"
        assert torch.equal(canvases[0, 0], ring[0, 0])  # one item on an empty canvas: the item itself


def test_coarse_grouping_and_real_fashion_mnist():
    from course_lib import data
    try:
        images, labels = data.load_fashion_mnist("test", verbose=False)
    except data.DataNotFoundError:
        pytest.skip("Fashion-MNIST not available")
    names = seg.segmentation_classes("coarse")
    assert names[0] == "background" and len(names) == 6 and len(seg.segmentation_classes("fine")) == 11
    _, masks, placements = seg.make_fashion_segmentation(images, labels, 30, grouping="coarse", seed=0)
    for src, cls, _, _ in placements[placements[:, :, 0] >= 0].tolist():
        original = data.FASHION_MNIST_CLASSES[labels[src]]
        assert original in seg.COARSE_GROUPS[names[cls]]
    assert int(masks.max()) < 6
    with pytest.raises(ValueError, match="grouping"):
        seg.segmentation_classes("medium")


# ---------------------------------------------------------------- U-Net

def _conv(c_in, c_out, k=3):
    return c_in * c_out * k * k + c_out


def test_unet_parameter_count_is_the_papers():
    # Ronneberger et al., 2015, Fig. 1: 1 input channel, 2 classes, 64..1024 channels, no BatchNorm
    encoder = sum(_conv(a, b) + _conv(b, b) for a, b in [(1, 64), (64, 128), (128, 256), (256, 512), (512, 1024)])
    decoder = sum(_conv(c, c // 2, 2) + _conv(c, c // 2) + _conv(c // 2, c // 2) for c in (1024, 512, 256, 128))
    expected = encoder + decoder + _conv(64, 2, 1)
    model = UNet(in_channels=1, num_classes=2, base_channels=64, depth=4, batch_norm=False)
    assert sum(p.numel() for p in model.parameters()) == expected == 31_030_658
    ups = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(ups) == 4 and all(m.kernel_size == (2, 2) and m.stride == (2, 2) for m in ups)


@pytest.mark.parametrize("H,W", [(32, 32), (27, 33), (8, 9), (17, 16)])
def test_unet_keeps_the_input_size_for_any_side(H, W):
    model = UNet(in_channels=2, num_classes=5, base_channels=4, depth=3)
    assert model(torch.randn(2, 2, H, W)).shape == (2, 5, H, W)


def test_unet_rejects_too_small_inputs():
    with pytest.raises(ValueError, match="2\\*\\*depth"):
        UNet(base_channels=2, depth=3)(torch.randn(1, 1, 7, 16))


def test_train_segmentation_learns_a_per_pixel_rule():
    # class 1 where the pixel is bright: a 1x1 convolution can learn it exactly
    g = torch.Generator().manual_seed(0)
    images = torch.rand(256, 1, 8, 8, generator=g)
    masks = (images[:, 0] > 0.5).long()
    model = nn.Conv2d(1, 2, 1)
    history = seg.train_segmentation(model, (images[:192], masks[:192]), (images[192:], masks[192:]),
                                     num_classes=2, epochs=4, batch_size=16, device="cpu", progress=False,
                                     optimizer=torch.optim.Adam(model.parameters(), lr=0.1))
    assert len(history.val_miou) == 4 and len(history.train_loss) == 4
    assert history.val_pixel_acc[-1] > 0.95 and history.val_miou[-1] > 0.9, history
    assert 0.0 <= history.val_pixel_acc[0] <= 1.0  # a fraction of pixels, not a count
    loss, acc, iou = seg.evaluate_segmentation(model, (images[192:], masks[192:]), 2)
    assert iou.shape == (2,) and abs(acc - history.val_pixel_acc[-1]) < 1e-12
