"""The facts a latency figure depends on: CPU, cores, the ISA features int8 kernels use, runtime versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

# cpuinfo flag -> what it means for int8 inference
ISA_FLAGS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI (int8 dot product)",
    "avx_vnni": "AVX-VNNI (int8 dot product)",
    "amx_int8": "AMX int8",
    "amx_bf16": "AMX bf16",
    "asimd": "NEON",
    "asimddp": "NEON dot product (int8)",
    "i8mm": "int8 matrix multiply",
}
RUNTIMES = ("onnxruntime", "openvino", "nncf", "tensorrt", "torch", "onnx")


def cpu_info() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware", "cpu model") and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "features"):
                flags |= set(value.split())
    except OSError:
        pass
    return model, flags


def environment() -> dict:
    model, flags = cpu_info()
    versions = {}
    for name in RUNTIMES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "cpu": model,
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "isa": sorted(label for flag, label in ISA_FLAGS.items() if flag in flags),
        "int8_dot_product": any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }
