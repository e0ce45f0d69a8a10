"""Run ONNX models in ONNX Runtime over an ImageSet, in batches, with progress."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from .data import ImageSet, Preprocess


class OrtModel:
    """An ONNX Runtime CPU session that takes any batch size, even when the graph's batch dim is fixed."""

    def __init__(self, path: Path, threads: int = 0, providers: list | None = None, options=None) -> None:
        import onnxruntime as ort

        if options is None:
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        self.providers = self.session.get_providers()
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.fixed_batch is None or len(x) == self.fixed_batch:
            return self.session.run(None, {self.input_name: x})[0]
        b = self.fixed_batch
        outs = []
        for start in range(0, len(x), b):
            chunk = x[start : start + b]
            pad = b - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            outs.append(self.session.run(None, {self.input_name: chunk})[0][: b - pad])
        return np.concatenate(outs)


def run_models(models: dict[str, OrtModel], images: ImageSet, pre: Preprocess, batch: int, desc: str) -> dict[str, np.ndarray]:
    """Logits of every model on every image; each batch is decoded once and fed to all models."""
    outs: dict[str, list[np.ndarray]] = {k: [] for k in models}
    with tqdm(total=len(images), desc=desc, unit="img", leave=False, dynamic_ncols=True) as bar:
        for x in images.batches(pre, batch):
            for name, model in models.items():
                outs[name].append(model(x))
            bar.update(len(x))
    return {k: np.concatenate(v) for k, v in outs.items()}
