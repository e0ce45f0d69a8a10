"""How the jetson target's artifacts are run: a TensorRT engine where one was built, else the Q/DQ ONNX graph on
the best ONNX Runtime execution provider there is.

Only TensorRT runs the graph as the Jetson will: its engine, or ONNX Runtime's TensorRT execution provider with
int8 on. Anything else (the CUDA EP, which executes the Q/DQ nodes as written, or the CPU EP) computes the right
numbers at the wrong speed, so the model is `emulated` and bench reports its accuracy but no latency.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import BoardError
from .ort_session import CPU, OrtSession, as_written
from .timing import any_batch, flat_outputs

RUNTIME_MODULE = "onnxruntime"
TRT, CUDA = "TensorrtExecutionProvider", "CUDAExecutionProvider"


def session_providers(available: list, which: str) -> list:
    """The providers to ask ONNX Runtime for, best first: TensorRT (int8 for the Q/DQ graph, as build_engine.sh's
    trtexec --int8 --fp16; the fp32 reference stays fp32), then CUDA, then the CPU."""
    providers: list = [CPU]
    if CUDA in available:
        providers.insert(0, CUDA)
    if TRT in available:
        providers.insert(0, (TRT, {"trt_int8_enable": True, "trt_fp16_enable": True} if which == "int8" else {}))
    return providers


def runs_on_device(providers: list) -> bool:
    """True only when TensorRT executes the graph; the CUDA or CPU EP running Q/DQ nodes is an emulation."""
    return bool(providers) and providers[0] == TRT


class JetsonOnnxModel(OrtSession):
    def __init__(self, path: Path, which: str, threads: int = 0, available: list | None = None) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers() if available is None else available
        providers = session_providers(available, which)
        options = None
        if which == "int8" and not runs_on_device(providers):
            # An emulation must compute what TensorRT computes: each Q/DQ node as written around a float op, with
            # exact sums. ONNX Runtime's graph optimizations would fuse them into its own int8 kernels instead,
            # whose arithmetic is the host's (int8_sums_saturate_here); so no optimization, and the numbers do not
            # depend on the machine that checks them.
            options = as_written(ort.SessionOptions())
            if threads:
                options.intra_op_num_threads = threads
        super().__init__(path, threads, providers=providers, options=options)
        self.emulated = not runs_on_device(self.providers)
        if self.emulated:
            self.runtime += " emulating TensorRT"


class EngineModel:
    """A TensorRT engine: numpy batch in, all outputs out (timing.flat_outputs; the engine lists its I/O tensors in
    the ONNX graph's order), through CUDA memory owned by torch."""

    emulated = False
    precision_hint = None

    def __init__(self, path: Path) -> None:
        import tensorrt as trt

        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise BoardError(f"TensorRT could not load {path}: an engine only loads with the TensorRT version and "
                             "GPU it was built on; rebuild it with build_engine.sh")
        self.providers = [f"TensorRT {trt.__version__}"]
        self.runtime = f"TensorRT {trt.__version__} engine"
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        static = self.engine.get_tensor_shape(self.input)[0]  # -1 when the batch is dynamic
        self.fixed_batch = static if static > 0 else None
        self.max_batch = self.fixed_batch or self.engine.get_tensor_profile_shape(self.input, 0)[2][0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # The profile (or a static batch) caps the batch: larger batches run in chunks, a static one padded.
        run = any_batch(self._run, self.fixed_batch)
        return np.concatenate([run(x[i : i + self.max_batch]) for i in range(0, len(x), self.max_batch)])

    def bind(self, x: np.ndarray):
        """The full call: host-to-GPU and back included, as trtexec's end-to-end latency (timing.bound_call)."""
        return lambda: self(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        inp = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).cuda()
        self.context.set_input_shape(self.input, tuple(inp.shape))
        # edgekit's graphs keep fp32 outputs; TensorRT keeps the network's I/O types.
        outs = [torch.empty(tuple(self.context.get_tensor_shape(n)), dtype=torch.float32, device="cuda")
                for n in self.outputs]
        self.context.set_tensor_address(self.input, inp.data_ptr())
        for name, out in zip(self.outputs, outs):
            self.context.set_tensor_address(name, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BoardError("TensorRT inference failed: run build_engine.sh with --verbose on this device")
        stream.synchronize()
        return flat_outputs([out.cpu().numpy() for out in outs])


def open_model(path: Path, which: str, threads: int = 0, options: dict | None = None):
    """An .engine file opens in TensorRT; an ONNX graph in ONNX Runtime (see the module docstring)."""
    path = Path(path)
    if path.suffix == ".engine":
        return EngineModel(path)
    return JetsonOnnxModel(path, which, threads)
