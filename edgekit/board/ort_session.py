"""An ONNX Runtime session as a model: any batch size in (even when the graph fixes it), all outputs out as one
(N, -1) array (timing.flat_outputs)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import numpy as np

from .timing import any_batch, cpu_info, flat_outputs

CPU = "CPUExecutionProvider"


@functools.lru_cache(maxsize=None)  # read /proc/cpuinfo once, not per session (sensitivity opens one per layer)
def int8_sums_saturate_here() -> bool:
    """True on an x86 CPU without an int8 dot product (VNNI, AMX): ONNX Runtime's fused u8 x s8 kernels there
    (VPMADDUBSW, as ONNX Runtime's quantization docs say) add pairs of products into 16 bits, which saturate where
    a layer reads large activations with large weights (an image stem). ARM CPUs, VNNI and TensorRT sum exactly."""
    _, flags = cpu_info()
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    return x86 and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def as_written(options):
    """`options` (ort.SessionOptions) set to run each Q/DQ node as written around float ops: exact sums."""
    import onnxruntime as ort

    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


class OrtSession:
    """Runs on `providers` (default: the CPU EP) with `threads` intra-op threads (0: all cores)."""

    emulated = False
    precision_hint = None

    def __init__(self, path: Path, threads: int = 0, providers: list | None = None, options=None,
                 exact_int8: bool = False) -> None:
        """exact_int8: a Q/DQ model whose accuracy is being measured for devices that sum int8 products exactly;
        on a CPU whose fused kernels do not (int8_sums_saturate_here) it then runs as written."""
        import onnxruntime as ort

        if options is None:
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
        exact = exact_int8 and int8_sums_saturate_here()
        if exact:
            as_written(options)
        self.session = ort.InferenceSession(str(path), options, providers=providers or [CPU])
        self.providers = self.session.get_providers()
        self.runtime = f"ONNX Runtime ({', '.join(p.replace('ExecutionProvider', ' EP') for p in self.providers)})"
        if exact:
            self.runtime += ", Q/DQ as written (this x86 CPU's int8 kernels saturate)"
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None

    def bind(self, x: np.ndarray):
        """x -> a no-argument call that runs only the session on it: x bound as the input, the outputs bound to CPU
        memory the session allocates (an I/O binding; timing.bound_call). A graph with a fixed batch of another
        size runs through the full call (chunks, padded)."""
        if self.fixed_batch is not None and len(x) != self.fixed_batch:
            return lambda: self(x)
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, x)  # may use x's memory in place: BoundRun keeps x alive
        for out in self.session.get_outputs():
            binding.bind_output(out.name, "cpu")
        return BoundRun(self.session, binding, x)

    def _outputs(self, x: np.ndarray) -> np.ndarray:
        return flat_outputs(self.session.run(None, {self.input_name: x}))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # any_batch per call, not a runner stored on self: that would be a reference cycle, and each session (with
        # its arena: hundreds of MB for a 224-px CNN at batch 64) would live until the cyclic garbage collector
        # ran, several at once while sensitivity opens one per layer (as in OpenVINOModel).
        return any_batch(self._outputs, self.fixed_batch)(x)


class BoundRun:
    """OrtSession.bind's call: the session run on its I/O binding (the outputs stay in `binding`), holding the
    input array the binding may read in place."""

    def __init__(self, session, binding, x: np.ndarray) -> None:
        self.session, self.binding, self.x = session, binding, x

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)
