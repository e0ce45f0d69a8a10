"""The timing loop and the machine facts every latency figure in edgekit comes with, here and on a board."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

ROUND = 10  # timed calls per runner per round; rounds alternate their order
ACCURACY_BATCH = 32  # outputs are computed in batches of this size, here and on a board alike

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
RUNTIMES = ("onnxruntime", "openvino", "nncf", "tensorrt", "torch", "onnx", "ai-edge-litert")


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
    """The facts a latency figure depends on: CPU, cores, the ISA features int8 kernels use, runtime versions,
    and the load average (a busy machine makes every millisecond suspect)."""
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
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def load_snapshot() -> dict:
    """The machine's load now: load averages and, on Linux, CPU time counters (the whole machine's busy time and
    this process's own, all threads) so that `load_between` can tell what others took while the loop ran."""
    snap = {"load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "cpu": None}
    try:
        # cpu user nice system idle iowait irq softirq steal (guest is inside user): steal is a hypervisor
        # running someone else on our core, which disturbs a timing like any other process
        user, nice, system, idle, iowait, irq, softirq, steal = (
            [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]] + [0] * 8)[:8]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
        snap["cpu"] = {"busy": user + nice + system + irq + softirq + steal,
                       "total": user + nice + system + idle + iowait + irq + softirq + steal,
                       "own": int(own[11]) + int(own[12])}  # utime + stime
    except (OSError, ValueError, IndexError):
        pass
    return snap


def load_between(before: dict, after: dict) -> dict:
    """Load averages before and after a timing, and the share of the machine's CPU time that other processes took
    meanwhile (None off Linux): what competed with the loop, the bench's own threads excluded."""
    share = None
    if before["cpu"] and after["cpu"]:
        total = after["cpu"]["total"] - before["cpu"]["total"]
        others = (after["cpu"]["busy"] - before["cpu"]["busy"]) - (after["cpu"]["own"] - before["cpu"]["own"])
        share = max(0.0, others / total) if total > 0 else None
    return {"load_average_before": before["load_average"], "load_average_after": after["load_average"],
            "others_cpu_share": share}


# What one timed call is, in the words bench.json and the reports use.
TIMED_CALL = ("the runtime's inference call on an input already in its buffers (as LiteRT's benchmark_model, "
              "OpenVINO's benchmark_app and onnxruntime_perf_test time it): converting the float batch in and the "
              "outputs out is not timed; a TensorRT engine is timed through its full call, host-GPU copies included")


def bound_call(runner, x: np.ndarray):
    """A no-argument call that runs `runner`'s inference on `x`, with `x` already handed to the runtime (its `bind`).

    What a deployed app pays per frame is the runtime's inference; the wrapping edgekit does around it (float ->
    int8 input for a full-integer .tflite, tensor wrapping, outputs gathered into one float32 array) is Python that
    a C++ app on the device does not run, and timed with the call it pulled every ratio between a small model and a
    larger one towards 1 (docs/bench.md has the measurement). A runner that cannot separate the two (TensorRT's
    engine, whose call copies to and from the GPU as trtexec's end-to-end latency does) binds to its full call.
    """
    return runner.bind(np.ascontiguousarray(x, dtype=np.float32))


def interleaved_latency(runners: dict, x: np.ndarray, runs: int, warmup: int, warmup_seconds: float,
                        tick=lambda: None) -> dict:
    """Per-call milliseconds for each runner, timed in alternating rounds after a warm-up by count and by time.

    Both runners see the same machine state (clocks, caches, other load), so the ratio of their medians survives
    a noisy machine. A call is TIMED_CALL (bound_call). `tick` is called after each timed call (progress).
    """
    calls = {k: bound_call(run, x) for k, run in runners.items()}
    for call in calls.values():
        start, n = time.perf_counter(), 0
        while n < warmup or time.perf_counter() - start < warmup_seconds:
            call()
            n += 1
    times = {k: [] for k in runners}
    order = list(runners)
    for r in range(-(-runs // ROUND)):
        for key in order if r % 2 == 0 else order[::-1]:
            call = calls[key]
            for _ in range(min(ROUND, runs - r * ROUND)):
                t0 = time.perf_counter_ns()
                call()
                times[key].append((time.perf_counter_ns() - t0) / 1e6)
                tick()
    return times


def summarize(ms: list) -> dict:
    """Percentiles, mean and spread of per-call milliseconds."""
    arr = np.asarray(ms, dtype=np.float64)
    return {"p50": float(np.percentile(arr, 50)), "p90": float(np.percentile(arr, 90)),
            "p99": float(np.percentile(arr, 99)), "mean": float(arr.mean()),
            "std": float(statistics.pstdev(ms)) if len(ms) > 1 else 0.0, "n": len(ms)}


def flat_outputs(outputs) -> np.ndarray:
    """A model's outputs for one batch as one float32 (N, -1) array: each output flattened per image, in the graph's
    output order. A single (N, K) output is returned as it is. edgekit's OutputLayout splits it back."""
    outputs = [np.asarray(o) for o in outputs]
    if len(outputs) == 1 and outputs[0].ndim == 2:
        return outputs[0].astype(np.float32, copy=False)
    return np.concatenate([o.reshape(len(o), -1) for o in outputs], axis=1).astype(np.float32, copy=False)


def any_batch(run, fixed_batch):
    """A runner for any batch size over a model whose batch is fixed: fixed-size chunks, the last zero-padded."""
    if fixed_batch is None:
        return run

    def call(x):
        if len(x) == fixed_batch:
            return run(x)
        outs = []
        for start in range(0, len(x), fixed_batch):
            chunk = x[start : start + fixed_batch]
            pad = np.zeros((fixed_batch - len(chunk), *chunk.shape[1:]), chunk.dtype)
            outs.append(run(np.concatenate([chunk, pad]))[: len(chunk)])
        return np.concatenate(outs)

    return call
