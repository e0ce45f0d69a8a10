"""The bench stage: latency and accuracy of each compiled target, checked against gates.

Latency method: warm-up (a count and a minimum time), then timed single calls in interleaved rounds of
the int8 artifact and its fp32 reference in the same runtime, alternating which goes first. Both see
the same machine state, so `speedup_vs_reference` (reference p50 / int8 p50) is a ratio that survives a
noisy machine even when absolute milliseconds do not.

Honesty rules: an emulated artifact (the jetson Q/DQ graph on ONNX Runtime) gets accuracy only, never a
latency; an artifact timed on a host that is not its hardware (arm on x86) is labelled `host_proxy`.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import metrics
from .compiling import require_quantized
from .data import ImageSet, Preprocess, open_images
from .environment import environment
from .errors import EdgekitError
from .quantization import _check_labels, workspace_images
from .targets import get_target, resolve_targets
from .workspace import Workspace, write_json_atomic

ROUND = 10  # timed calls per runtime per round; rounds alternate int8/reference
ACCURACY_BATCH = 32
NATIVE_MACHINES = {"arm": ("aarch64", "arm64", "armv7l", "armv8l")}  # target -> host machines it runs on natively


def check_limits(runs: int, warmup: int, batch: int, max_drop, max_latency_ms, min_speedup) -> None:
    if runs < 1:
        raise EdgekitError(f"--runs must be at least 1, got {runs}", "e.g. --runs 200")
    if warmup < 0:
        raise EdgekitError(f"--warmup must be 0 or more, got {warmup}", "e.g. --warmup 20")
    if batch < 1:
        raise EdgekitError(f"--batch must be at least 1, got {batch}", "e.g. --batch 1")
    for flag, value in (("--max-drop", max_drop), ("--max-latency-ms", max_latency_ms), ("--min-speedup", min_speedup)):
        if value is not None and value < 0:
            raise EdgekitError(f"{flag} must not be negative, got {value}", "give a limit of 0 or more")


def bench(target: str = "all", *, workdir: str | Path = "edgekit-out", eval: str | Path | None = None,  # noqa: A002
          batch: int = 1, threads: int | None = None, runs: int = 200, warmup: int = 20, warmup_seconds: float = 1.0,
          max_drop: float | None = None, max_latency_ms: float | None = None, min_speedup: float | None = None,
          log=print) -> dict:
    """Bench each compiled target; returns {name: bench.json}. Gate failures are in each result's "gates"."""
    check_limits(runs, warmup, batch, max_drop, max_latency_ms, min_speedup)
    threads = threads or os.cpu_count() or 1
    ws = Workspace(workdir)
    manifest = require_quantized(ws)
    compiled = manifest.get("targets", {})
    names = list(compiled) if target == "all" else resolve_targets(target)
    if not names:
        raise EdgekitError(f"{ws.root} has no compiled targets", f"run `edgekit compile --target all --workdir {ws.root}` first")
    for name in names:
        if name not in compiled:
            raise EdgekitError(f"target {name} has not been compiled in {ws.root}",
                               f"run `edgekit compile --target {name} --workdir {ws.root}` first")
    pre = Preprocess.from_dict(manifest["preprocess"])
    if eval is not None:
        eval_set, eval_label = open_images(eval, "eval"), str(eval)
        _check_labels(eval_set, manifest["input"]["num_classes"])
    else:
        _, eval_set, eval_label = workspace_images(manifest)
    env = environment()
    results = {}
    for name in names:
        tgt = get_target(name)
        folder = ws.root / compiled[name]["dir"]
        options = compiled[name].get("options", {})
        log(f"{name}: benchmarking ({tgt.runtime}, {threads} threads, batch {batch})")
        int8, ref = tgt.runner(folder, "int8", threads, options), tgt.runner(folder, "fp32", threads, options)
        result = {"target": name, "runtime": tgt.runtime, "hardware": tgt.hardware, "batch": batch, "threads": threads,
                  "emulated": bool(getattr(int8, "emulated", False)),
                  "host_proxy": _host_proxy(name, env, int8),
                  "device": options.get("device", "CPU"), "eval": {"source": eval_label, "images": len(eval_set)}}
        result["accuracy"] = accuracy(int8, ref, eval_set, pre, name)
        if result["emulated"]:
            result.update(latency_ms=None, reference_latency_ms=None, speedup_vs_reference=None, throughput_ips=None,
                          latency_note=f"not measured: {tgt.runtime} is not available here and the artifact ran "
                                       "emulated on ONNX Runtime; its speed says nothing about the device")
        else:
            x = _input_batch(eval_set, pre, batch)
            timings = interleaved_latency({"int8": int8, "reference": ref}, x, runs, warmup, warmup_seconds, name)
            lat, ref_lat = summarize(timings["int8"]), summarize(timings["reference"])
            result.update(latency_ms=lat, reference_latency_ms=ref_lat,
                          speedup_vs_reference=ref_lat["p50"] / lat["p50"],
                          throughput_ips=batch * 1000.0 / lat["mean"], runs=runs,
                          latency_note="host proxy: timed on this host, not on the target device" if result["host_proxy"]
                          else "measured on the target's own hardware")
        result["gates"] = gates(result, max_drop, max_latency_ms, min_speedup)
        result["passed"] = all(g["passed"] for g in result["gates"])
        result["environment"] = {**env, "precision": getattr(int8, "precision_hint", None)}
        write_json_atomic(folder / "bench.json", result)
        results[name] = result
    return results


def _host_proxy(name: str, env: dict, runner) -> bool:
    if getattr(runner, "emulated", False):
        return True
    native = NATIVE_MACHINES.get(name)
    return native is not None and env["machine"] not in native


def _input_batch(images: ImageSet, pre: Preprocess, batch: int) -> np.ndarray:
    """A real input batch (cycling the eval images if there are fewer than `batch`)."""
    return np.stack([images.load(i % len(images), pre) for i in range(batch)])


def accuracy(int8, ref, images: ImageSet, pre: Preprocess, name: str) -> dict:
    a, b = [], []
    with tqdm(total=len(images), desc=f"{name}: accuracy", unit="img", leave=False, dynamic_ncols=True) as bar:
        for x in images.batches(pre, ACCURACY_BATCH):
            a.append(int8(x))
            b.append(ref(x))
            bar.update(len(x))
    a, b = np.concatenate(a), np.concatenate(b)
    out = {"top1": None, "top5": None, "reference_top1": None, "agreement": metrics.agreement(a, b),
           "cosine": metrics.cosine(a, b), "worst_class_drop_points": None, "labelled": images.labels is not None}
    if images.labels is not None:
        labels = np.asarray(images.labels)
        out.update(top1=metrics.topk(a, labels), reference_top1=metrics.topk(b, labels))
        if a.shape[1] > 5:
            out.update(top5=metrics.topk(a, labels, 5), reference_top5=metrics.topk(b, labels, 5))
        pairs = zip(metrics.per_class_top1(b, labels, a.shape[1]), metrics.per_class_top1(a, labels, a.shape[1]))
        drops = [r - q for r, q in pairs if r is not None and q is not None]
        out["worst_class_drop_points"] = 100 * max(drops) if drops else None
    return out


def interleaved_latency(runners: dict, x: np.ndarray, runs: int, warmup: int, warmup_seconds: float,
                        name: str) -> dict[str, list[float]]:
    """Per-call milliseconds for each runner, timed in alternating rounds after a warm-up."""
    for run in runners.values():
        start, n = time.perf_counter(), 0
        while n < warmup or time.perf_counter() - start < warmup_seconds:
            run(x)
            n += 1
    times: dict[str, list[float]] = {k: [] for k in runners}
    order = list(runners)
    rounds = -(-runs // ROUND)
    with tqdm(total=runs * len(runners), desc=f"{name}: latency", unit="call", leave=False, dynamic_ncols=True) as bar:
        for r in range(rounds):
            for key in order if r % 2 == 0 else order[::-1]:
                for _ in range(min(ROUND, runs - r * ROUND)):
                    t0 = time.perf_counter_ns()
                    runners[key](x)
                    times[key].append((time.perf_counter_ns() - t0) / 1e6)
                    bar.update(1)
    return times


def summarize(ms: list[float]) -> dict:
    arr = np.asarray(ms)
    return {"p50": float(np.percentile(arr, 50)), "p90": float(np.percentile(arr, 90)),
            "p99": float(np.percentile(arr, 99)), "mean": float(arr.mean()),
            "std": float(statistics.pstdev(ms)) if len(ms) > 1 else 0.0, "n": len(ms)}


def gates(result: dict, max_drop, max_latency_ms, min_speedup) -> list[dict]:
    out = []
    acc = result["accuracy"]
    if max_drop is not None:
        # With labels: top-1 points lost vs the fp32 reference; without: points of disagreement with it.
        value = (100 * (acc["reference_top1"] - acc["top1"]) if acc["labelled"] else 100 * (1 - acc["agreement"]))
        out.append({"name": "max_drop_points", "limit": max_drop, "value": value, "passed": value <= max_drop})
    if max_latency_ms is not None:
        value = None if result["latency_ms"] is None else result["latency_ms"]["p50"]
        out.append({"name": "max_latency_ms_p50", "limit": max_latency_ms, "value": value,
                    "passed": value is not None and value <= max_latency_ms,
                    **({"reason": "latency not measured here"} if value is None else {})})
    if min_speedup is not None:
        value = result["speedup_vs_reference"]
        out.append({"name": "min_speedup_vs_reference", "limit": min_speedup, "value": value,
                    "passed": value is not None and value >= min_speedup,
                    **({"reason": "latency not measured here"} if value is None else {})})
    return out
