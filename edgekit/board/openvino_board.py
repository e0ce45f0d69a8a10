"""How the openvino target's IRs are opened and run, on this host and on a board alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import BoardError
from .timing import any_batch, flat_outputs

RUNTIME_MODULE = "openvino"


class StaticShapes:
    """OpenVINO compilations of one dynamic-batch IR with a static input shape, one per batch size asked for.

    With static shapes the CPU plugin skips per-call shape inference and picks kernels for the real shape (the
    28x28 models here: 10-30 % of a batch-1 call). A few sizes are kept (an eval runs one batch size and its
    remainder, a bench one more); past that, or when another dimension is dynamic too, `dynamic` runs the call."""

    KEEP = 4

    def __init__(self, core, path: Path, device: str, config: dict, dynamic) -> None:
        self.core, self.path, self.device, self.config, self.dynamic = core, path, device, config, dynamic
        self.compiled: dict = {}

    def __call__(self, batch: int):
        if batch not in self.compiled:
            if len(self.compiled) >= self.KEEP:
                return self.dynamic
            model = self.core.read_model(str(self.path))
            try:
                model.reshape([batch, *(d.get_length() for d in list(model.inputs[0].get_partial_shape())[1:])])
            except RuntimeError:  # a non-batch dimension is dynamic too (or the graph pins one): stay dynamic
                return self.dynamic
            self.compiled[batch] = self.core.compile_model(model, self.device, self.config)
        return self.compiled[batch]


class OpenVINOModel:
    """A compiled OpenVINO model: any batch size in, all outputs out (timing.flat_outputs, in the IR's output order).

    The IR keeps a dynamic batch, but each batch size actually run gets its own static-shape compilation
    (StaticShapes). In a one-off interleaved measurement (2 threads, batch 1) the MobileNetV3 student's int8 IR
    went 1.06 -> 0.76 ms, the teacher's 0.32 -> 0.29 ms; benchmarks/compare_runtimes.py gives every OpenVINO row
    static shapes, so its tables do not count this as edgekit's lead.
    """

    emulated = False

    def __init__(self, path: Path, device: str = "CPU", threads: int = 0) -> None:
        import openvino as ov

        core = ov.Core()
        if device != "AUTO" and device not in core.available_devices:
            raise BoardError(f"OpenVINO finds no {device} device here (it has: {', '.join(core.available_devices)})")
        config: dict = {"PERFORMANCE_HINT": "LATENCY"}
        if device != "NPU":
            # CPUs with AVX512-BF16/AMX default to bf16 (GPUs to f16): the fp32 reference must really be fp32,
            # and the int8 model's non-quantized layers should not silently lose precision either. AUTO passes the
            # hint on to the device it picks (checked on CPU). The NPU keeps its own default: it computes in f16.
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if threads and device == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        self.device = device
        self.providers = [device]
        self.runtime = f"OpenVINO {ov.__version__.split('-')[0]} ({device})"
        self.precision_hint = config.get("INFERENCE_PRECISION_HINT", "device default")
        self.compiled = core.compile_model(core.read_model(str(path)), device, config)
        batch = self.compiled.inputs[0].get_partial_shape()[0]
        self.fixed_batch = batch.get_length() if batch.is_static else None
        self.static_shapes = StaticShapes(core, path, device, config, self.compiled)

    def _outputs(self, x: np.ndarray) -> np.ndarray:
        compiled = self.compiled_for(len(x))
        result = compiled(x)
        return flat_outputs([result[o] for o in compiled.outputs])

    def compiled_for(self, batch: int):
        """The compilation that runs `batch` images: a static-shape one where the IR's batch is dynamic."""
        return self.compiled if self.fixed_batch is not None else self.static_shapes(batch)

    def bind(self, x: np.ndarray):
        """x -> a no-argument call that runs only the inference on it: an infer request of the compilation for
        len(x) (timing.bound_call) with x set as its input tensor. An IR with a fixed batch of another size runs
        through the full call (chunks, padded)."""
        if self.fixed_batch is not None and len(x) != self.fixed_batch:
            return lambda: self(x)
        import openvino as ov

        request = self.compiled_for(len(x)).create_infer_request()
        request.set_input_tensor(ov.Tensor(x))  # a copy: the request owns its input
        return request.infer

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # An IR whose batch could not be made dynamic runs fixed-size chunks, the last one zero-padded (any_batch).
        # Built per call, not kept on self: a bound method stored on its own object is a reference cycle, and the
        # compiled models would outlive the board until the cyclic collector ran (compile's fallback opens many).
        return any_batch(self._outputs, self.fixed_batch)(np.ascontiguousarray(x, dtype=np.float32))


def open_model(path: Path, which: str, threads: int = 0, options: dict | None = None) -> OpenVINOModel:
    """Both IRs (int8 and its fp32 reference) open the same way, on options["device"] (default CPU)."""
    return OpenVINOModel(Path(path), (options or {}).get("device", "CPU"), threads)
