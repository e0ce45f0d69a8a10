"""Per-layer sensitivity: the error each quantizable layer adds to the logits when it alone is int8.

Each Conv/Gemm/MatMul is quantized on its own, with the Relu/Clip fused into it (ORT's `nodes_to_quantize`: its
input activation, weights and output get Q/DQ with the workspace's ranges, everything else stays fp32), and its
logits are compared with the fp32 model's on a few dozen images. One small ORT session per layer keeps it to seconds. The ranking (lowest
SQNR first) is what accuracy-aware fallback (`--max-drop`) walks to choose the layers it keeps in float.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from .ort_runner import OrtModel
from .outputs import sqnr_db

QUANTIZABLE = ("Conv", "Gemm", "MatMul")
# Activations the int8 model folds into the layer before them: ORT drops a Relu/Clip that alone reads a layer's
# output and quantizes that output with the activation's range instead.
FUSED_ACTIVATIONS = ("Relu", "Clip")
SENSITIVITY_IMAGES = 32
# Images per session call: each layer's session keeps an arena sized by its largest call, and a 224-px CNN's
# activations at 32 images are ~0.25 GB more resident memory than at 8, for no speed that matters here.
SENSITIVITY_BATCH = 8
TOP_SHOWN = 3  # offenders printed; sensitivity.json has them all


def quantizable_nodes(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(node name, op type) of the layers that get int8 kernels; unnamed nodes cannot be excluded, so they are skipped."""
    return [(n.name, n.op_type) for n in model.graph.node if n.op_type in QUANTIZABLE and n.name]


def layer_nodes(model: onnx.ModelProto, name: str) -> list[str]:
    """The nodes to quantize to put layer `name` alone in int8 as the full int8 model has it: the layer and the
    Relu/Clip that alone reads its output. Without the activation the layer's output would be quantized with its
    pre-activation range (EfficientNet-Lite0's stem: [-80, 64] instead of ReLU6's [0, 6]), an error the full
    model does not have, and the ranking would blame the layer for it."""
    node = next(n for n in model.graph.node if n.name == name)
    readers = [n for n in model.graph.node if node.output[0] in n.input]
    outputs = {o.name for o in model.graph.output}
    if len(readers) == 1 and readers[0].op_type in FUSED_ACTIVATIONS and readers[0].name and node.output[0] not in outputs:
        return [name, readers[0].name]
    return [name]


def layer_sensitivity(fp32_path: Path, x: np.ndarray, quantize_only: Callable[[Path, Path, list[str]], None],
                      threads: int = 0) -> list[dict]:
    """Per layer {"node", "op_type", "mse", "sqnr_db"}, most sensitive first. `quantize_only(fp32, out, nodes)`
    writes a QDQ model with just `nodes` quantized (the scheme of the model being built)."""
    def run(model: OrtModel) -> np.ndarray:
        return np.concatenate([model(x[i : i + SENSITIVITY_BATCH]) for i in range(0, len(x), SENSITIVITY_BATCH)])

    ref = run(OrtModel(fp32_path, threads))
    model = onnx.load(str(fp32_path))
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekit-sens-") as tmp:
        for name, op in quantizable_nodes(model):
            out = Path(tmp) / f"{len(rows)}.onnx"
            quantize_only(fp32_path, out, layer_nodes(model, name))
            y = run(OrtModel(out, threads, exact_int8=True))
            rows.append({"node": name, "op_type": op, "mse": float(np.mean((y - ref) ** 2)), "sqnr_db": sqnr_db(y, ref)})
    # Lowest SQNR first; a layer whose quantization changes nothing (None) is the least sensitive.
    return sorted(rows, key=lambda r: math.inf if r["sqnr_db"] is None else r["sqnr_db"])


def sample_images(images, pre, n: int = SENSITIVITY_IMAGES) -> np.ndarray:
    """`n` images spread evenly over the set (sets in class folders are sorted by class)."""
    idx = np.unique(np.linspace(0, len(images) - 1, min(n, len(images))).astype(int))
    return np.stack([images.load(int(i), pre) for i in idx])


def summary(rows: list[dict], images: int) -> dict:
    """What quantize.json keeps of sensitivity.json."""
    return {"layers": len(rows), "images": images, "file": "sensitivity.json",
            "most_sensitive": [{k: r[k] for k in ("node", "op_type", "sqnr_db")} for r in rows[:TOP_SHOWN]]}


def describe(rows: list[dict]) -> str:
    """One line with the top offenders, for the log."""
    def db(r: dict) -> str:
        return "exact" if r["sqnr_db"] is None else f"{r['sqnr_db']:.1f} dB"

    shown = ", ".join(f"{r['node']} ({r['op_type']}, {db(r)})" for r in rows[:TOP_SHOWN])
    return f"most sensitive layers (output SQNR with only that layer int8): {shown}"
