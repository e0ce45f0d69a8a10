"""Named datasets that edgekit knows how to find offline, and the IDX reader they need.

`fashion-mnist:test` resolves to the Debian package `dataset-fashion-mnist` (the full 10k test set)
when it is installed, else to the 2,000-image subset shipped inside the package (edgekit/bundled/, declared
as package data, so a plain `pip install .` carries it too), so the bundled default runs on a machine without
apt and gives the full-size figure on one with it.

`cifar10:train` / `cifar10:test` read CIFAR-10 as JPEG from `cifar10-{train,test}-jpg.tar.gz` (class folders
inside, the layout of the project's shared data) in $EDGEKIT_CIFAR10_DIR, else in the first of CIFAR10_DIRS that
holds them; `cifar10:test` without the tar falls back to the 2,000-image subset in the checkout's
data/cifar10/test. Labels are the class folders' positions in sorted order, which is CIFAR-10's own class order.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# Next to this module, not in the checkout: an installed (non-editable) edgekit has no repository around it.
BUNDLED_FASHION_EVAL = Path(__file__).resolve().parent / "bundled" / "fashion_mnist_eval.npz"
# Set to 1 to ignore the Debian datasets and take the bundled subset: how a test exercises the fallback on a
# machine that has the package. Read at each call, so setting it in-process works too.
NO_SYSTEM_DATASETS_ENV = "EDGEKIT_NO_SYSTEM_DATASETS"

CIFAR10_DIR_ENV = "EDGEKIT_CIFAR10_DIR"
_CHECKOUT = Path(__file__).resolve().parent.parent
# Where the project's machines and CI keep the shared data: next to the checkout, or at its absolute home.
CIFAR10_DIRS = (_CHECKOUT.parent / "shared" / "data" / "cifar10", Path("/work/shared/data/cifar10"))
BUNDLED_CIFAR10_TEST = _CHECKOUT / "data" / "cifar10" / "test"  # scripts/make_cifar10_subsets.py

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


def _decode_jpegs(blobs: dict[tuple[str, str], bytes], source: str) -> NamedArrays:
    """{(class, file): JPEG bytes} -> NamedArrays sorted by class then file, labels = sorted class positions."""
    from PIL import Image

    keys = sorted(blobs)
    classes = tuple(sorted({c for c, _ in keys}))
    index = {c: i for i, c in enumerate(classes)}
    with Image.open(io.BytesIO(blobs[keys[0]])) as first:
        height, width = first.height, first.width
    images = np.empty((len(keys), height, width, 3), np.uint8)
    for i, key in enumerate(keys):
        with Image.open(io.BytesIO(blobs[key])) as im:
            images[i] = np.asarray(im.convert("RGB"))
    return NamedArrays(images, np.array([index[c] for c, _ in keys], np.int64), classes, source)


def cifar10(split: str) -> NamedArrays:
    override = os.environ.get(CIFAR10_DIR_ENV)
    folders = [Path(override)] if override else list(CIFAR10_DIRS)
    for folder in folders:
        tar_path = folder / f"cifar10-{split}-jpg.tar.gz"
        if system_datasets_enabled() and tar_path.is_file():
            blobs = {}
            with tarfile.open(tar_path, "r:gz") as tar:
                for member in tar:
                    parts = Path(member.name).parts
                    if member.isfile() and member.name.endswith(".jpg") and len(parts) >= 3:
                        blobs[(parts[-2], parts[-1])] = tar.extractfile(member).read()
            return _decode_jpegs(blobs, str(tar_path))
    if split == "test" and BUNDLED_CIFAR10_TEST.is_dir():
        blobs = {(p.parent.name, p.name): p.read_bytes() for p in BUNDLED_CIFAR10_TEST.glob("*/*.jpg")}
        return _decode_jpegs(blobs, f"{BUNDLED_CIFAR10_TEST} (bundled 2,000-image subset; the full 10k is read "
                                    f"from cifar10-test-jpg.tar.gz in ${CIFAR10_DIR_ENV} when present)")
    where = override or " or ".join(str(f) for f in CIFAR10_DIRS)
    raise FileNotFoundError(f"CIFAR-10 {split} set not found: no cifar10-{split}-jpg.tar.gz in {where}; "
                            f"set {CIFAR10_DIR_ENV} to the folder that holds it")


NAMED = {
    "fashion-mnist:train": lambda: fashion_mnist("train"),
    "fashion-mnist:test": lambda: fashion_mnist("test"),
    "cifar10:train": lambda: cifar10("train"),
    "cifar10:test": lambda: cifar10("test"),
}
