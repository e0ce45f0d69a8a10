"""Write the real Fashion-MNIST data shipped in the repository (needs Debian's `dataset-fashion-mnist`).

- calibration/<class>/*.png: 32 training images per class (320), chosen with a fixed seed.
- edgekit/bundled/fashion_mnist_eval.npz: 200 test images per class (2,000) with labels and class names, so
  the bundled default evaluates without apt (package data: an installed edgekit carries it);
  `fashion-mnist:test` uses all 10k when the package is present.
Fashion-MNIST is MIT-licensed (Zalando SE, 2017), which allows shipping these subsets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgekit.datasets import FASHION_MNIST_CLASSES, fashion_mnist

CALIB_PER_CLASS, EVAL_PER_CLASS, SEED = 32, 200, 0


def balanced_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
    return np.sort(np.concatenate(picks))


def main() -> None:
    rng = np.random.default_rng(SEED)
    train, test = fashion_mnist("train"), fashion_mnist("test")
    root = Path("calibration")
    for i in balanced_indices(train.labels, CALIB_PER_CLASS, rng):
        folder = root / FASHION_MNIST_CLASSES[train.labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(train.images[i]).save(folder / f"train_{i:05d}.png", optimize=True)
    idx = balanced_indices(test.labels, EVAL_PER_CLASS, rng)
    Path("edgekit/bundled").mkdir(exist_ok=True)
    np.savez_compressed("edgekit/bundled/fashion_mnist_eval.npz", images=test.images[idx],
                        labels=test.labels[idx].astype(np.uint8), classes=np.array(FASHION_MNIST_CLASSES), test_indices=idx)
    print(f"wrote {CALIB_PER_CLASS * 10} calibration PNGs and {len(idx)} eval images")


if __name__ == "__main__":
    main()
