"""How the arm target's TFLite-scheme int8 ONNX (and its fp32 reference) is run: ONNX Runtime, on the XNNPACK
execution provider where the build has it (ARM builds do; the x86 PyPI wheels do not), else the CPU EP."""

from __future__ import annotations

import os
from pathlib import Path

from .ort_session import CPU, OrtSession

RUNTIME_MODULE = "onnxruntime"
XNNPACK = "XnnpackExecutionProvider"


class ArmModel(OrtSession):
    """Not `emulated`: ONNX Runtime is this target's own runtime. On a non-ARM host bench labels its timings a
    host proxy (the target's native_machines), which is a property of where it ran, not of the runtime."""

    def __init__(self, path: Path, threads: int = 0, which: str = "fp32") -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
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
        # On an x86 CPU whose int8 kernels saturate, the int8 model is checked as written (exact sums, as an ARM
        # CPU computes; slower, and a host proxy's timing says so in its runtime), not with that CPU's errors.
        super().__init__(path, providers=providers, options=opts, exact_int8=which == "int8")


def open_model(path: Path, which: str, threads: int = 0, options: dict | None = None) -> ArmModel:
    return ArmModel(Path(path), threads, which)
