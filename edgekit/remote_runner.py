"""The on-device half of `edgekit bench --remote`, and the timing loop and environment facts every bench uses.

Copied to the board and run there as `python3 remote_runner.py job.json`. A board has its runtime but not edgekit,
so this file imports only the standard library, numpy and that runtime (onnxruntime, openvino, or for the arm
target's .tflite pair ai_edge_litert through edgekit's tflite_runner.py, copied beside it), and keeps to
Python 3.8 (JetPack 5). It does only what has to happen on the device: load the int8 artifact and its fp32
reference, compute both logits on the preprocessed eval inputs, time both. The metrics are computed back on the
host by edgekit/bench.py, by the same code as a local bench; edgekit imports `interleaved_latency` and
`environment` from here, so a local and a remote bench time and describe the machine with one implementation.

job.json: {"target", "files": {"int8", "fp32"} (names beside job.json), "inputs" (.npy, float32 N,C,H,W),
"batch", "threads" (0: all cores there), "runs", "warmup", "warmup_seconds", "device"}. It writes result.json
beside job.json, with the logits in int8.npy / fp32.npy. Progress goes to stderr; a failure exits 1 with
"error: ..." as its last line.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROUND = 10  # timed calls per runner per round; rounds alternate their order
ACCURACY_BATCH = 32  # logits are computed in batches of this size, here and in a local bench alike
# job target -> the runtime it imports; "arm-tflite" is the arm target's .tflite pair on LiteRT + XNNPACK
MODULES = {"openvino": "openvino", "arm": "onnxruntime", "jetson": "onnxruntime", "arm-tflite": "ai_edge_litert"}
TRT, CUDA, XNNPACK, CPU = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "XnnpackExecutionProvider",
                           "CPUExecutionProvider")

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
    """The facts a latency figure depends on: CPU, cores, the ISA features int8 kernels use, runtime versions."""
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


def interleaved_latency(runners: dict, x: np.ndarray, runs: int, warmup: int, warmup_seconds: float,
                        tick=lambda: None) -> dict:
    """Per-call milliseconds for each runner, timed in alternating rounds after a warm-up by count and by time.

    Both runners see the same machine state (clocks, caches, other load), so the ratio of their medians survives
    a noisy machine. `tick` is called after each timed call (progress).
    """
    for run in runners.values():
        start, n = time.perf_counter(), 0
        while n < warmup or time.perf_counter() - start < warmup_seconds:
            run(x)
            n += 1
    times = {k: [] for k in runners}
    order = list(runners)
    for r in range(-(-runs // ROUND)):
        for key in order if r % 2 == 0 else order[::-1]:
            for _ in range(min(ROUND, runs - r * ROUND)):
                t0 = time.perf_counter_ns()
                runners[key](x)
                times[key].append((time.perf_counter_ns() - t0) / 1e6)
                tick()
    return times


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


def open_openvino(path: Path, device: str, threads: int):
    """(runner, providers, precision hint), configured as edgekit.targets.openvino.OpenVINOModel is."""
    import openvino as ov

    core = ov.Core()
    if device != "AUTO" and device not in core.available_devices:
        sys.exit(f"error: OpenVINO finds no {device} device on this board "
                 f"(it has: {', '.join(core.available_devices)})")
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if device != "NPU":  # bf16/f16 defaults would make the fp32 reference something else; the NPU computes in f16
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if device == "CPU":
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(core.read_model(str(path)), device, config)
    batch = compiled.inputs[0].get_partial_shape()[0]
    if batch.is_static:
        run = any_batch(lambda x: compiled(np.ascontiguousarray(x, dtype=np.float32))[0], batch.get_length())
    else:
        static = StaticShapes(core, path, device, config, compiled)
        run = lambda x: static(len(x))(np.ascontiguousarray(x, dtype=np.float32))[0]  # noqa: E731
    return run, [device], config.get("INFERENCE_PRECISION_HINT", "device default")


class StaticShapes:
    """OpenVINO compilations of one dynamic-batch IR with a static input shape, one per batch size asked for.

    With static shapes the CPU plugin skips per-call shape inference and picks kernels for the real shape (the
    28x28 models here: 10-30 % of a batch-1 call). A few sizes are kept (an eval runs one batch size and its
    remainder, a bench one more); past that, or when another dimension is dynamic too, `dynamic` runs the call.
    Shared by edgekit's OpenVINO runner and this file's, so a local and a remote bench compile alike."""

    KEEP = 4

    def __init__(self, core, path: Path, device: str, config: dict, dynamic) -> None:
        self.core, self.path, self.device, self.config, self.dynamic = core, path, device, config, dynamic
        self.compiled: dict[int, object] = {}

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


def open_tflite(path: Path, threads: int):
    """(runner, providers, None): edgekit's own TfliteModel, its module copied beside this file (it imports only
    numpy and ai_edge_litert), so the board runs the .tflite exactly as a local bench does."""
    from tflite_runner import TfliteModel

    model = TfliteModel(path, threads)
    return model, model.providers, None


def open_onnx(path: Path, target: str, which: str, threads: int):
    """(runner, providers, None) on the best execution provider this onnxruntime build has for the target."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    options = ort.SessionOptions()
    if target == "arm" and XNNPACK in available:
        # As edgekit.targets.arm.ArmModel: XNNPACK runs its own thread pool, so ORT's stays at one, not spinning.
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [(XNNPACK, {"intra_op_num_threads": str(threads)}), CPU]
    else:
        options.intra_op_num_threads = threads
        providers = [CPU]
        if target == "jetson" and CUDA in available:
            providers.insert(0, CUDA)
        if target == "jetson" and TRT in available:
            # The int8 graph as build_engine.sh's trtexec --int8 --fp16 builds it; the reference stays fp32.
            providers.insert(0, (TRT, {"trt_int8_enable": True, "trt_fp16_enable": True} if which == "int8" else {}))
    session = ort.InferenceSession(str(path), options, providers=providers)
    inp = session.get_inputs()[0]
    fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
    run = any_batch(lambda x: session.run(None, {inp.name: x})[0], fixed_batch)
    return run, session.get_providers(), None


def main(job_path: str) -> None:
    job_file = Path(job_path)
    here = job_file.parent
    job = json.loads(job_file.read_text())
    name, threads = job["target"], job["threads"] or os.cpu_count() or 1
    inputs = np.load(here / job["inputs"], mmap_mode="r")  # a board's memory may be smaller than the eval set
    runners, providers, hints = {}, {}, {}
    for which in ("int8", "fp32"):
        path = here / job["files"][which]
        if name == "openvino":
            runners[which], providers[which], hints[which] = open_openvino(path, job["device"], threads)
        elif name == "arm-tflite":
            runners[which], providers[which], hints[which] = open_tflite(path, threads)
        else:
            runners[which], providers[which], hints[which] = open_onnx(path, name, which, threads)
        log(f"{name}: loaded {path.name} on {', '.join(providers[which])}")
    # Only the jetson graph can fall back to running somewhere that is not its hardware: ONNX Runtime's CPU EP.
    emulated = name == "jetson" and not {TRT, CUDA} & set(providers["int8"])

    log(f"{name}: logits of both on {len(inputs)} images")
    for which, run in runners.items():
        logits = [run(np.asarray(inputs[i : i + ACCURACY_BATCH])) for i in range(0, len(inputs), ACCURACY_BATCH)]
        np.save(here / f"{which}.npy", np.concatenate(logits))

    timings = None
    if not emulated:  # an emulated latency says nothing about the device: not measured, as in a local bench
        x = np.asarray(inputs[np.arange(job["batch"]) % len(inputs)])
        total, done = 2 * job["runs"], 0

        def tick():
            nonlocal done
            done += 1
            if done % max(1, total // 4) == 0 or done == total:
                log(f"{name}: latency {done}/{total} calls")

        timings = interleaved_latency({"int8": runners["int8"], "reference": runners["fp32"]}, x, job["runs"],
                                      job["warmup"], job["warmup_seconds"], tick)

    env = environment()
    runtime = sys.modules[MODULES[name]]
    # A runtime from JetPack or a vendor image may have no pip metadata; the loaded module knows its version.
    env["versions"].setdefault(MODULES[name], getattr(runtime, "__version__", "unknown"))
    result = {"int8_logits_file": "int8.npy", "fp32_logits_file": "fp32.npy", "timings_ms": timings,
              "providers": providers, "emulated": emulated, "threads": threads, "precision": hints["int8"],
              "environment": env}
    (here / "result.json").write_text(json.dumps(result))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 remote_runner.py job.json")
    main(sys.argv[1])
