"""Batch crop/flip and AlexNet PCA colour noise against direct indexing and the paper's formula."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.augment import pca_color_noise, random_crop_flip, rgb_eigen


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
