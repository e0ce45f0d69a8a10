"""Named datasets that edgekit knows how to find offline, and the IDX reader they need.

`fashion-mnist:test` resolves to the Debian package `dataset-fashion-mnist` (the full 10k test set)
when it is installed, else to the 2,000-image subset shipped inside the package (edgekit/bundled/, declared
as package data, so a plain `pip install .` carries it too), so the bundled default runs on a machine without
apt and gives the full-size figure on one with it.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# Next to this module, not in the checkout: an installed (non-editable) edgekit has no repository around it.
BUNDLED_FASHION_EVAL = Path(__file__).resolve().parent / "bundled" / "fashion_mnist_eval.npz"
# Set to 1 to ignore the Debian datasets and take the bundled subset: how a test exercises the fallback on a
# machine that has the package. Read at each call, so setting it in-process works too.
NO_SYSTEM_DATASETS_ENV = "EDGEKIT_NO_SYSTEM_DATASETS"

FASHION_MNIST_CLASSES = (
    "T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot",
)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): big-endian magic, dims, then raw uint8 data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not a uint8 IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {arr.size}")
    return arr.reshape(dims)


@dataclass(frozen=True)
class NamedArrays:
    """Images (N, H, W[, C]) uint8, labels (N,) int64, class names, and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str


def system_datasets_enabled() -> bool:
    return os.environ.get(NO_SYSTEM_DATASETS_ENV, "").strip().lower() in ("", "0", "false", "no")


def fashion_mnist(split: str) -> NamedArrays:
    prefix = {"train": "train", "test": "t10k"}[split]
    images_path = DEBIAN_FASHION_MNIST / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = DEBIAN_FASHION_MNIST / f"{prefix}-labels-idx1-ubyte.gz"
    if system_datasets_enabled() and images_path.exists() and labels_path.exists():
        return NamedArrays(
            read_idx(images_path), read_idx(labels_path).astype(np.int64),
            FASHION_MNIST_CLASSES, str(images_path),
        )
    if split == "test" and BUNDLED_FASHION_EVAL.exists():
        with np.load(BUNDLED_FASHION_EVAL) as z:
            return NamedArrays(
                z["images"], z["labels"].astype(np.int64), FASHION_MNIST_CLASSES,
                f"{BUNDLED_FASHION_EVAL} (bundled subset; apt-get install dataset-fashion-mnist for all 10k)",
            )
    raise FileNotFoundError(
        f"Fashion-MNIST {split} set not found: run `apt-get install dataset-fashion-mnist`"
    )


NAMED = {
    "fashion-mnist:train": lambda: fashion_mnist("train"),
    "fashion-mnist:test": lambda: fashion_mnist("test"),
}
