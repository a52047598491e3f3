"""course_lib.data: the real data sets, offline, and clear errors when they are missing."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import data

HAVE_DEBIAN = data.DEBIAN_FASHION_MNIST.is_dir()


@pytest.mark.skipif(not HAVE_DEBIAN, reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package(tmp_path, capsys):
    images, labels = data.load_fashion_mnist("test", root=tmp_path)
    assert "Debian package" in capsys.readouterr().out  # says where the data came from
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert torch.bincount(labels).tolist() == [1000] * 10  # the test split is balanced
    # Independent reading of the IDX file: magic 2051, then N, rows, cols, then the pixels.
    with gzip.open(data.DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8)
    assert int.from_bytes(raw[:4].tobytes(), "big") == 2051
    first = torch.from_numpy(raw[16:16 + 784].reshape(28, 28).astype(np.float32) / 255)
    torch.testing.assert_close(images[0, 0], first)


def test_missing_data_raises_an_error_that_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(data.DataNotFoundError, match="(?s)prepare --download.*apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist("train", root=tmp_path / "empty")


def test_bad_split_is_rejected():
    with pytest.raises(ValueError, match="'valid'"):
        data.load_fashion_mnist("valid")


def test_data_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert data.data_root() == tmp_path


def test_batches_cover_every_example_once():
    x, y = torch.arange(10).float()[:, None], torch.arange(10)
    seen = torch.cat([yb for _, yb in data.batches(x, y, 3, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    assert [len(yb) for _, yb in data.batches(x, y, 4, shuffle=False)] == [4, 4, 2]


def test_stratified_subset_is_balanced():
    labels = torch.arange(100) % 5
    idx = data.stratified_subset(labels, per_class=3)
    assert torch.bincount(labels[idx]).tolist() == [3] * 5
    with pytest.raises(ValueError, match="only 20"):
        data.stratified_subset(labels, per_class=21)


def test_bundled_photo_and_digits():
    import skimage.data
    cat = data.sample_image("chelsea")
    assert cat.shape == skimage.data.chelsea().shape[:2] and 0 <= cat.min() and cat.max() <= 1
    assert data.sample_image("chelsea", grey=False).shape == (3, *cat.shape)
    with pytest.raises(ValueError, match="no image called 'dog'"):
        data.sample_image("dog")
    images, labels = data.load_digits()
    assert images.shape == (1797, 1, 8, 8) and labels.max() == 9 and images.max() == 1.0


def test_prepare_command_line(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", Path(tmp_path / "nowhere"))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert data._main(["prepare"]) == 1
    assert data._main(["bogus"]) == 2


def test_download_needs_permission_and_goes_through_torchvision_checksums(tmp_path, monkeypatch):
    """torchvision's real download code against a local mirror of the Debian files (their MD5 sums,
    since Debian recompresses the .gz): refused without permission, done with COURSE_DOWNLOAD=1, and a
    corrupted file is refused."""
    import functools
    import hashlib
    import http.server
    import threading

    from torchvision.datasets import FashionMNIST

    if not HAVE_DEBIAN:
        pytest.skip("the local mirror serves the Debian package dataset-fashion-mnist")
    served = tmp_path / "served"
    served.mkdir()
    for name in data.FASHION_MNIST_FILES:
        (served / f"{name}.gz").write_bytes((data.DEBIAN_FASHION_MNIST / f"{name}.gz").read_bytes())
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(FashionMNIST, "mirrors", [f"http://127.0.0.1:{server.server_address[1]}/"])
        monkeypatch.setattr(FashionMNIST, "resources", [(f.name, hashlib.md5(f.read_bytes()).hexdigest())
                                                        for f in sorted(served.glob("*.gz"))])
        monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
        monkeypatch.delenv("COURSE_DOWNLOAD", raising=False)
        with pytest.raises(data.DataNotFoundError, match="python -m course_lib.data prepare --download"):
            data.prepare_fashion_mnist(tmp_path / "a")
        # A corrupted file (one flipped byte) fails torchvision's MD5 check and is not extracted.
        target = served / "t10k-labels-idx1-ubyte.gz"
        intact = target.read_bytes()
        target.write_bytes(intact[:100] + bytes([intact[100] ^ 0xFF]) + intact[101:])
        monkeypatch.setenv("COURSE_DOWNLOAD", "1")
        with pytest.raises(RuntimeError, match="corrupted"):
            data.prepare_fashion_mnist(tmp_path / "b")
        assert not (tmp_path / "b" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").exists()
        target.write_bytes(intact)
        assert "downloaded by torchvision" in data.prepare_fashion_mnist(tmp_path / "c")
        images, labels = data.load_fashion_mnist("test", root=tmp_path / "c", verbose=False)
        assert images.shape == (10_000, 1, 28, 28) and torch.bincount(labels).tolist() == [1000] * 10
    finally:
        server.shutdown()
        server.server_close()


def test_download_allowed_on_hosted_notebooks_only(monkeypatch):
    for name in ("COURSE_DOWNLOAD", "BINDER_REQUEST", "BINDER_LAUNCH_HOST", "BINDER_REPO_URL", "COLAB_RELEASE_TAG"):
        monkeypatch.delenv(name, raising=False)
    assert data.hosted_notebook() is None and not data.allow_download_when_hosted()
    monkeypatch.setenv("BINDER_LAUNCH_HOST", "https://mybinder.org/")
    assert data.hosted_notebook() == "Binder" and data.allow_download_when_hosted() and data.download_allowed()
