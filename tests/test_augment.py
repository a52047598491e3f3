"""Batch crop/flip and AlexNet PCA colour noise against direct indexing and the paper's formula."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.augment import crop_flip, pca_color_noise, random_crop_flip, rgb_eigen


def test_crop_flip_is_a_shifted_window_or_its_mirror():
    images = torch.rand(64, 2, 6, 5)
    out = random_crop_flip(images, padding=2, generator=torch.Generator().manual_seed(0))
    padded = F.pad(images, (2, 2, 2, 2))
    flips = 0
    for n in range(64):  # reference: try every window of torch's own pad, plain and mirrored
        windows = [padded[n, :, dy:dy + 6, dx:dx + 5] for dy in range(5) for dx in range(5)]
        plain = any(torch.equal(out[n], w) for w in windows)
        mirrored = any(torch.equal(out[n], w.flip(-1)) for w in windows)
        assert plain or mirrored, f"image {n} is no window of the padded input"
        flips += mirrored and not plain
    assert 15 < flips < 50, f"{flips} of 64 flipped, expected about half"


def test_zero_padding_without_flip_is_identity():
    images = torch.rand(4, 3, 8, 8)
    assert torch.equal(random_crop_flip(images, padding=0, flip=False), images)


def test_pca_color_noise_follows_the_formula():
    images = torch.rand(8, 3, 10, 10)
    values, vectors = rgb_eigen(images)
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    np.testing.assert_allclose(np.sort(values.numpy())[::-1], np.sort(np.linalg.eigvalsh(np.cov(pixels.T)))[::-1],
                               rtol=1e-5)
    out = pca_color_noise(images[0], values, vectors, std=0.1, generator=torch.Generator().manual_seed(1))
    alpha = torch.randn(3, generator=torch.Generator().manual_seed(1)) * 0.1
    expected_shift = sum(alpha[i] * values[i] * vectors[:, i] for i in range(3))
    torch.testing.assert_close(out - images[0], expected_shift[:, None, None].expand(3, 10, 10))


def _crop_flip_one_by_one(images, dy, dx, flipped, padding):
    """Reference: a Python loop over images, each cut from ``F.pad`` by plain slicing (then ``torch.flip``)."""
    H, W = images.shape[-2:]
    out = []
    for image, y, x, f in zip(images, dy.tolist(), dx.tolist(), flipped.tolist()):
        window = F.pad(image, (padding,) * 4)[:, y:y + H, x:x + W]
        out.append(torch.flip(window, dims=(-1,)) if f else window)
    return torch.stack(out)


def test_batched_crop_flip_equals_the_per_image_loop_for_the_same_offsets():
    """Catches a swapped row/column offset, a flip applied before the crop, or an off-by-one window."""
    g = torch.Generator().manual_seed(3)
    images = torch.rand(40, 3, 7, 9, generator=g)  # H != W: a transposed index would show
    dy, dx = torch.randint(0, 7, (40,), generator=g), torch.randint(0, 7, (40,), generator=g)
    flipped = torch.rand(40, generator=g) < 0.5
    assert torch.equal(crop_flip(images, dy, dx, flipped, padding=3),
                       _crop_flip_one_by_one(images, dy, dx, flipped, padding=3))


def test_random_crop_flip_draws_its_offsets_from_the_generator():
    """Same seed, same batch (the training loop's determinism rests on it); another seed, another batch.
    The offsets drawn are those the per-image reference, fed the same generator draws, applies."""
    images = torch.rand(32, 1, 8, 8)
    first = random_crop_flip(images, padding=2, generator=torch.Generator().manual_seed(7))
    again = random_crop_flip(images, padding=2, generator=torch.Generator().manual_seed(7))
    other = random_crop_flip(images, padding=2, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    g = torch.Generator().manual_seed(7)
    dy, dx = torch.randint(0, 5, (32,), generator=g), torch.randint(0, 5, (32,), generator=g)
    flipped = torch.rand(32, generator=g) < 0.5
    assert torch.equal(first, _crop_flip_one_by_one(images, dy, dx, flipped, padding=2))
