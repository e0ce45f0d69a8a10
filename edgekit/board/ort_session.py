"""An ONNX Runtime session as a model: any batch size in (even when the graph fixes it), all outputs out as one
(N, -1) array (timing.flat_outputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .timing import any_batch, flat_outputs

CPU = "CPUExecutionProvider"


class OrtSession:
    """Runs on `providers` (default: the CPU EP) with `threads` intra-op threads (0: all cores)."""

    emulated = False
    precision_hint = None

    def __init__(self, path: Path, threads: int = 0, providers: list | None = None, options=None) -> None:
        import onnxruntime as ort

        if options is None:
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=providers or [CPU])
        self.providers = self.session.get_providers()
        self.runtime = f"ONNX Runtime ({', '.join(p.replace('ExecutionProvider', ' EP') for p in self.providers)})"
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self._run = any_batch(lambda x: flat_outputs(self.session.run(None, {self.input_name: x})), self.fixed_batch)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._run(x)
