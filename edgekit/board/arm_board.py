"""How the arm target's TFLite-scheme int8 ONNX (and its fp32 reference) is run: ONNX Runtime, on the XNNPACK
execution provider where the build has it (ARM builds do; the x86 PyPI wheels do not), else the CPU EP."""

from __future__ import annotations

import os
from pathlib import Path

from .ort_session import CPU, OrtSession, as_written, int8_sums_saturate_here

RUNTIME_MODULE = "onnxruntime"
XNNPACK = "XnnpackExecutionProvider"


class ArmModel(OrtSession):
    """Not `emulated`: ONNX Runtime is this target's own runtime. On a non-ARM host bench labels its timings a
    host proxy (the target's native_machines), which is a property of where it ran, not of the runtime."""

    def __init__(self, path: Path, threads: int = 0, which: str = "fp32") -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # The int8 model checked on an x86 CPU whose int8 kernels saturate (int8_sums_saturate_here) would show
        # that CPU's errors, not the ARM device's: there it runs as written (exact sums; slower, and a host proxy's
        # timing says so in its runtime).
        exact = which == "int8" and int8_sums_saturate_here()
        if exact:
            as_written(opts)
        if XNNPACK in ort.get_available_providers():
            # XNNPACK runs its own thread pool; ORT's XNNPACK page recommends a one-thread, non-spinning ORT pool
            # beside it so the two do not fight over cores.
            opts.intra_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            providers = [(XNNPACK, {"intra_op_num_threads": str(threads or os.cpu_count() or 1)}), CPU]
        else:
            if threads:
                opts.intra_op_num_threads = threads
            providers = [CPU]
        super().__init__(path, providers=providers, options=opts)
        if exact:
            self.runtime += ", Q/DQ as written (this x86 CPU's int8 kernels saturate)"


def open_model(path: Path, which: str, threads: int = 0, options: dict | None = None) -> ArmModel:
    return ArmModel(Path(path), threads, which)
