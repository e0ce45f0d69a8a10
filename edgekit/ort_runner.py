"""Run ONNX models in ONNX Runtime over an ImageSet, in batches, with progress."""

from __future__ import annotations

import numpy as np

from .board.ort_session import OrtSession as OrtModel  # one ONNX Runtime session class, here and on a board
from .data import ImageSet, Preprocess
from .progress import progress


def run_models(models: dict[str, OrtModel], images: ImageSet, pre: Preprocess, batch: int, desc: str) -> dict[str, np.ndarray]:
    """Outputs of every model on every image; each batch is decoded once and fed to all models."""
    outs: dict[str, list[np.ndarray]] = {k: [] for k in models}
    with progress(len(images), desc, "img") as bar:
        for x in images.batches(pre, batch):
            for name, model in models.items():
                outs[name].append(model(x))
            bar.update(len(x))
    return {k: np.concatenate(v) for k, v in outs.items()}


__all__ = ["OrtModel", "run_models"]
