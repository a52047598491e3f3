"""Centring, normalisation and whitening against numpy/sklearn."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from course_lib.data import load_digits
from course_lib.preprocess import center, channel_stats, fit_whitening, standardize


def data():
    images, _ = load_digits()
    return images.flatten(1).double()  # (1797, 64), some pixels almost constant


def test_center_and_standardize_match_numpy():
    x = data()
    xc, mean = center(x)
    np.testing.assert_allclose(mean.numpy(), x.numpy().mean(0))
    assert xc.mean(0).abs().max() < 1e-12
    xs, _, std = standardize(x)
    np.testing.assert_allclose(std.numpy(), x.numpy().std(0, ddof=1))
    varying = std > 1e-3
    np.testing.assert_allclose(xs[:, varying].std(0).numpy(), 1.0, rtol=1e-4)


def test_channel_stats():
    images = torch.rand(10, 3, 5, 5)
    mean, std = channel_stats(images)
    torch.testing.assert_close(mean, images.transpose(0, 1).flatten(1).mean(1))
    torch.testing.assert_close(std, images.transpose(0, 1).flatten(1).std(1))


@pytest.mark.parametrize("method", ["pca", "zca"])
def test_whitened_covariance_is_identity(method):
    x = data()
    w = fit_whitening(x, method, eps=1e-12, k=None if method == "zca" else 40)
    z = w.transform(x)
    cov = torch.cov(z.T)
    k = z.shape[1]
    # directions with (almost) zero variance cannot be whitened: check the well-conditioned ones
    keep = w.eigenvalues > 1e-6 if method == "pca" else slice(None)
    if method == "pca":
        torch.testing.assert_close(cov[keep][:, keep], torch.eye(int(keep.sum())).double(), atol=1e-6, rtol=0)
    else:
        assert z.shape[1] == 64 and k == 64
        torch.testing.assert_close(w.matrix, w.matrix.T)  # ZCA's matrix is symmetric


def test_pca_whitening_matches_sklearn():
    x = data()
    ours = fit_whitening(x, "pca", eps=0.0, k=20).transform(x).numpy()
    theirs = PCA(n_components=20, whiten=True, svd_solver="full").fit_transform(x.numpy())
    signs = np.sign((ours * theirs).sum(0))  # eigenvectors are defined up to their sign
    np.testing.assert_allclose(ours * signs, theirs, atol=1e-6)


def test_zca_is_pca_rotated_back_and_closest_to_the_data():
    x = data()
    pca = fit_whitening(x, "pca", eps=0.1)
    zca = fit_whitening(x, "zca", eps=0.1)
    torch.testing.assert_close(zca.transform(x), pca.transform(x) @ pca.components.T)
    xc = x - x.mean(0)
    # among whitenings (all rotations of each other) ZCA differs least from the centred data
    assert (zca.transform(x) - xc).norm() < (pca.transform(x) - xc).norm()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        fit_whitening(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="method"):
        fit_whitening(torch.rand(5, 3), "svd")
