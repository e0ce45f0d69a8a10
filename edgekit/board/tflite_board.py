"""Run a .tflite model in LiteRT's Interpreter (ai-edge-litert) with the XNNPACK delegate: the runtime and kernel
library that ARM CPUs run TFLite models with. Part of the optional `edgekit[tflite]` extra.

The arm target's .tflite files are converted at batch 1 (XNNPACK cannot re-plan their fixed-shape reshapes for
another batch), so a batch is run one image at a time; bench times batch 1, the case that matters on a phone.
An int8 model whose input and output are int8 (full integer, as ai-edge-quantizer writes it) is fed and read
through the input's and output's own scale and zero point, so the runner takes and returns float32 like every
other edgekit runner.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .timing import flat_outputs

RUNTIME_MODULE = "ai_edge_litert"
DELEGATE = "XNNPACK"


class TfliteModel:
    """batch (N, C, H, W) float32 -> logits (N, classes), on LiteRT's Interpreter with XNNPACK, `threads` threads
    (0: all cores). Not `emulated`: LiteRT + XNNPACK is what runs .tflite models on ARM CPUs."""

    emulated = False
    precision_hint = None

    def __init__(self, path: Path, threads: int = 0) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.path = Path(path)
        self.threads = threads or os.cpu_count() or 1
        # The AUTO op resolver applies LiteRT's default delegate, XNNPACK, to every op it supports.
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=self.threads,
                                       experimental_op_resolver_type=OpResolverType.AUTO)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]
        self._outs = signature_outputs(self.interpreter)
        self._out = self._outs[0]
        self.input_shape = tuple(int(d) for d in self._in["shape"])
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        self.delegated_ops, self.builtin_ops = delegation(self.interpreter)
        self.providers = [f"LiteRT Interpreter + {DELEGATE}" if self.delegated_ops else "LiteRT Interpreter (builtin kernels)"]
        self.runtime = self.providers[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        per_call = self.input_shape[0]
        outs = [self._invoke(x[i : i + per_call]) for i in range(0, len(x), per_call)]
        return np.concatenate(outs)

    def bind(self, x: np.ndarray):
        """x (one call's batch, the model's fixed size) -> a no-argument call that runs only the interpreter's
        invoke on it, x already quantized and written into the input tensor (timing.bound_call). A batch of another
        size runs image by image through the full call."""
        if len(x) != self.input_shape[0]:
            return lambda: self(x)
        self.interpreter.set_tensor(self._in["index"], _quantize(x.reshape(self.input_shape), self._in))
        return self.interpreter.invoke

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        it = self.interpreter
        it.set_tensor(self._in["index"], _quantize(x.reshape(self.input_shape), self._in))
        it.invoke()
        return flat_outputs([_dequantize(it.get_tensor(d["index"]), d) for d in self._outs])


def signature_outputs(interpreter) -> list[dict]:
    """The output details in the model's order. get_output_details() lists tensors by index, not by the order the
    model returns them; litert-torch names a flat tuple's outputs output_0, output_1, ... in the signature, which
    edgekit's conversion makes the ONNX graph's order (tflite_export.FlatOutputs)."""
    details = interpreter.get_output_details()
    try:
        signature = next(iter(interpreter._get_full_signature_list().values()))["outputs"]  # noqa: SLF001
    except (AttributeError, StopIteration, KeyError):
        return details
    by_index = {d["index"]: d for d in details}

    def position(name: str):
        match = re.search(r"(\d+)$", name)
        return (0, int(match.group(1))) if match else (1, name)

    ordered = [by_index.get(signature[name]) for name in sorted(signature, key=position)]
    return ordered if len(ordered) == len(details) and all(ordered) else details


def delegation(interpreter) -> tuple[int, list[str]]:
    """(DELEGATE nodes, names of the ops left to LiteRT's builtin kernels) of an allocated Interpreter.

    A delegate takes a partition of the graph and runs it as one DELEGATE node, fed by the partition's inputs and
    producing its outputs; the ops it took stay listed. An op runs on the builtin kernels when it feeds a DELEGATE
    node, reads one's output, or produces a graph output no DELEGATE node produces (without a delegate: all ops)."""
    try:
        ops = interpreter._get_ops_details()  # noqa: SLF001 - the only API that lists the graph's nodes
    except AttributeError:
        return 0, []
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    if not delegates:
        return 0, sorted({o["op_name"] for o in ops})
    fed = {int(t) for d in delegates for t in d["inputs"]}
    made = {int(t) for d in delegates for t in d["outputs"]}
    graph_out = {int(d["index"]) for d in interpreter.get_output_details()} - made
    builtin = {o["op_name"] for o in ops if o["op_name"] != "DELEGATE" and (
        {int(t) for t in o["outputs"]} & (fed | graph_out) or {int(t) for t in o["inputs"]} & made)}
    return len(delegates), sorted(builtin)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return np.ascontiguousarray(x)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]) == np.float32:
        return y.copy()
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


def open_model(path: Path, which: str, threads: int = 0, options: dict | None = None) -> TfliteModel:
    return TfliteModel(Path(path), threads)
