"""Real data sets, offline first, never faked.

* **Fashion-MNIST** (Xiao et al., 2017): 70 000 greyscale 28×28 images of 10 clothing classes.
  Read through ``torchvision.datasets.FashionMNIST`` from ``$COURSE_DATA`` (default
  ``~/.cache/course``). The raw files are taken, in this order, from that folder, from the Debian
  package ``dataset-fashion-mnist`` (extracted, because torchvision looks for the uncompressed
  files and the Debian ``.gz`` files have other checksums), or downloaded by torchvision
  (checksummed) when the user allows it: ``download=True``, ``COURSE_DOWNLOAD=1`` in the
  environment (the install cell of every notebook sets it on Colab and Binder), or
  ``python -m course_lib.data prepare --download`` from a shell. The book build and the tests
  never allow it.
* **scikit-image's sample photos** (the cat, the astronaut, the camera man, ...).
* **scikit-learn's digits**: 1 797 greyscale 8×8 handwritten digits.

A missing data set raises :class:`DataNotFoundError` saying how to get it.
"""
from __future__ import annotations

import gzip
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
DOWNLOAD_ENV = "COURSE_DOWNLOAD"  # "1": the user allows torchvision to download Fashion-MNIST
PREPARE_COMMAND = "python -m course_lib.data prepare --download"


class DataNotFoundError(FileNotFoundError):
    """A data set is neither on disk nor allowed to be downloaded."""


def data_root() -> Path:
    """The folder that holds the course's data: ``$COURSE_DATA`` or ``~/.cache/course``."""
    return Path(os.environ.get("COURSE_DATA", Path.home() / ".cache" / "course")).expanduser()


def download_allowed() -> bool:
    """Whether the user allowed a download: ``$COURSE_DOWNLOAD`` is ``1`` (or ``true``/``yes``)."""
    return os.environ.get(DOWNLOAD_ENV, "").strip().lower() in {"1", "true", "yes"}


def hosted_notebook() -> str | None:
    """``"Colab"`` or ``"Binder"`` when this kernel runs there, else None."""
    if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
        return "Colab"
    if any(name in os.environ for name in ("BINDER_LAUNCH_HOST", "BINDER_REQUEST", "BINDER_REPO_URL")):
        return "Binder"
    return None


def allow_download_when_hosted() -> bool:
    """Called by every notebook's install cell: on Colab or Binder, a reader opened the notebook to
    run it, so the data may be fetched; on a laptop or in a clone the user decides. Returns whether
    a download is now allowed."""
    host = hosted_notebook()
    if host is not None and not download_allowed():
        os.environ[DOWNLOAD_ENV] = "1"
        print(f"On {host}: Fashion-MNIST will be downloaded by torchvision when a cell needs it.")
    return download_allowed()


def _raw_folder(root: Path) -> Path:
    return root / "FashionMNIST" / "raw"  # where torchvision.datasets.FashionMNIST looks


def prepare_fashion_mnist(root: str | Path | None = None, download: bool | None = None) -> str:
    """Make sure the raw Fashion-MNIST files are where torchvision looks for them.

    Args:
        root: data folder; default :func:`data_root`.
        download: let torchvision download the files; None (default) follows ``$COURSE_DOWNLOAD``.

    Returns:
        A sentence saying where the files came from.

    Raises:
        DataNotFoundError: not in ``root``, no Debian package, and no download allowed.
    """
    root = Path(root) if root is not None else data_root()
    if download is None:
        download = download_allowed()
    raw = _raw_folder(root)
    if all((raw / name).is_file() for name in FASHION_MNIST_FILES):
        return f"Fashion-MNIST read from {raw}"
    if all((DEBIAN_FASHION_MNIST / f"{name}.gz").is_file() for name in FASHION_MNIST_FILES):
        raw.mkdir(parents=True, exist_ok=True)
        for name in FASHION_MNIST_FILES:
            partial = raw / f"{name}.partial"  # an interrupted copy must not look finished
            with gzip.open(DEBIAN_FASHION_MNIST / f"{name}.gz", "rb") as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            partial.replace(raw / name)
        return f"Fashion-MNIST extracted from the Debian package dataset-fashion-mnist into {raw}"
    if download:
        from torchvision.datasets import FashionMNIST

        for train in (True, False):
            FashionMNIST(root, train=train, download=True)  # torchvision checks the MD5 sums
        return f"Fashion-MNIST downloaded by torchvision into {raw}"
    raise DataNotFoundError(
        f"Fashion-MNIST is not in {raw}. Get it with one of:\n"
        f"  {PREPARE_COMMAND}   (torchvision downloads it, ~30 MB, checksummed)\n"
        f"  {DOWNLOAD_ENV}=1 in the environment           (the same, when a notebook needs it)\n"
        "  sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu, offline afterwards)\n"
        "or point $COURSE_DATA at a folder that holds FashionMNIST/raw/."
    )


_CACHE: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}


def load_fashion_mnist(
    split: str = "train",
    root: str | Path | None = None,
    download: bool | None = None,
    verbose: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST as in-memory tensors (a PIL DataLoader pass costs as much as an epoch).

    Args:
        split: ``"train"`` (60 000 images) or ``"test"`` (10 000).
        root: data folder; default :func:`data_root`.
        download: let torchvision download the files if they are nowhere on disk; None (default)
            follows ``$COURSE_DOWNLOAD``.
        verbose: print where the data came from.

    Returns:
        ``images`` float32 ``(N, 1, 28, 28)`` in [0, 1] and ``labels`` int64 ``(N,)``.
    """
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root) if root is not None else data_root()
    key = (str(root), split)
    if key not in _CACHE:
        from torchvision.datasets import FashionMNIST

        source = prepare_fashion_mnist(root, download=download)
        dataset = FashionMNIST(root, train=(split == "train"), download=False)
        images = dataset.data.unsqueeze(1).float().div_(255)  # (N, 1, 28, 28)
        labels = dataset.targets.long()
        if len(labels) != SPLIT_SIZES[split]:
            raise DataNotFoundError(f"Fashion-MNIST {split} has {len(labels)} images, expected "
                                    f"{SPLIT_SIZES[split]}: the files in {_raw_folder(root)} are damaged")
        _CACHE[key] = (images, labels)
        if verbose:
            print(f"{source}: {split} split, {len(labels)} images")
    images, labels = _CACHE[key]
    return images, labels


def stratified_subset(labels: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``per_class`` random examples of every class (a small, balanced subset)."""
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for c in labels.unique():
        members = (labels == c).nonzero().squeeze(1)
        if len(members) < per_class:
            raise ValueError(f"class {int(c)} has only {len(members)} examples, asked for {per_class}")
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(picks).sort().values


def batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
):
    """Yield ``(images, labels)`` mini-batches by slicing in-memory tensors.

    Much faster than a ``DataLoader`` over a ``TensorDataset``, which gathers items one by one.
    """
    n = len(labels)
    dev = images.device  # shuffle where the data is (a CUDA generator for CUDA tensors): no copies
    order = torch.randperm(n, generator=generator, device=dev) if shuffle else torch.arange(n, device=dev)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield images[idx], labels[idx]


def sample_image(name: str = "chelsea", grey: bool = True) -> torch.Tensor:
    """One of scikit-image's bundled photos as a float tensor in [0, 1].

    Args:
        name: a function of ``skimage.data``: ``"chelsea"`` (the cat), ``"astronaut"``,
            ``"camera"``, ``"coffee"``, ``"brick"``, ...
        grey: convert colour photos to luminance.

    Returns:
        ``(H, W)`` if ``grey`` else ``(3, H, W)`` (or ``(H, W)`` for greyscale originals).
    """
    import skimage.color
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if loader is None or not callable(loader):
        raise ValueError(f"skimage.data has no image called {name!r}")
    img = np.asarray(loader())
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if grey and img.ndim == 3:
        img = skimage.color.rgb2gray(img)
    img = img.astype(np.float32)
    if img.max() > 1.0:
        img = img / 255.0
    tensor = torch.from_numpy(img)
    return tensor.permute(2, 0, 1).contiguous() if tensor.ndim == 3 else tensor


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's handwritten digits: images float32 ``(1797, 1, 8, 8)`` in [0, 1], labels."""
    from sklearn.datasets import load_digits as sk_load_digits

    digits = sk_load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    return images, torch.from_numpy(digits.target).long()


def _main(argv: list[str]) -> int:
    if argv[:1] != ["prepare"]:
        print(f"usage: python -m course_lib.data prepare [--download]   (or {DOWNLOAD_ENV}=1)", file=sys.stderr)
        return 2
    try:
        print(prepare_fashion_mnist(download=True if "--download" in argv else None))
    except DataNotFoundError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run the imported module's _main, not this __main__ copy: one course_lib.data per process, so that
    # settings made on it (a test's mirror, an instructor's data path) hold for the command line too.
    from course_lib.data import _main as main

    raise SystemExit(main(sys.argv[1:]))
