"""The bench stage: latency and accuracy of each compiled target, checked against gates.

Latency method: warm-up (a count and a minimum time), then timed single calls in interleaved rounds of
the int8 artifact and its fp32 reference in the same runtime, alternating which goes first. Both see
the same machine state, so `speedup_vs_reference` (reference p50 / int8 p50) is a ratio that survives a
noisy machine even when absolute milliseconds do not.

Honesty rules: an emulated artifact (the jetson Q/DQ graph on ONNX Runtime) gets accuracy only, never a
latency; an artifact timed on a host that is not its hardware (arm on x86) is labelled `host_proxy`.

With `remote="user@host"` the artifacts run on that board over ssh (edgekit/remote.py): the eval images are
preprocessed here, the board returns logits and per-call timings, and every metric is computed here by the same
code as a local bench; the latency is then the board's own, and the board's machine decides `host_proxy`.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import metrics, remote_runner
from .compiling import require_quantized
from .data import ImageSet, Preprocess, open_images
from .environment import environment
from .errors import EdgekitError
from .quantization import check_labels, workspace_images
from .remote import parse_host, run_remote
from .remote_runner import ACCURACY_BATCH
from .targets import get_target, resolve_targets
from .workspace import Workspace, write_json_atomic

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
          remote: str | None = None, ssh_key: str | Path | None = None, remote_python: str | None = None,
          log=print) -> dict:
    """Bench each compiled target; returns {name: bench.json}. Gate failures are in each result's "gates".

    remote: "user@host[:port]" to run on that board over ssh, with `ssh_key` and the board's `remote_python`
    (default python3); threads then default to all of the board's cores.
    """
    check_limits(runs, warmup, batch, max_drop, max_latency_ms, min_speedup)
    if remote is None and (ssh_key is not None or remote_python is not None):
        raise EdgekitError("--ssh-key and --remote-python only apply to a remote bench", "add --remote user@host")
    if remote is not None:
        parse_host(remote)  # a malformed host is bad input: say so before any work
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
        check_labels(eval_set, manifest["input"]["num_classes"])
    else:
        _, eval_set, eval_label = workspace_images(manifest)
    timing = {"batch": batch, "runs": runs, "warmup": warmup, "warmup_seconds": warmup_seconds}
    if remote is None:
        env, threads = environment(), threads or os.cpu_count() or 1
    results = {}
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:  # holds the inputs sent to a remote
        if remote is not None:
            log(f"preprocessing {len(eval_set)} eval images for {remote}")
            inputs = write_inputs(eval_set, pre, Path(tmp) / "inputs.npy")
        for name in names:
            tgt = get_target(name)
            folder = ws.root / compiled[name]["dir"]
            options = compiled[name].get("options", {})
            device = options.get("device", "CPU")
            if remote is None:
                log(f"{name}: benchmarking ({tgt.runtime}, {threads} threads, batch {batch})")
                run = _measure_here(tgt, folder, options, eval_set, pre, threads, env, timing)
            else:
                log(f"{name}: benchmarking on {remote} ({tgt.runtime}, batch {batch})")
                files = {which: compiled[name]["files"][which] for which in ("int8", "fp32")}
                run = _measure_remote(remote, ssh_key, remote_python, name, folder, files, inputs, device, threads,
                                      timing, log)
            machine = run["environment"]["machine"]
            result = {"target": name, "runtime": tgt.runtime, "hardware": tgt.hardware, "batch": batch,
                      "threads": run["threads"], "emulated": run["emulated"],
                      "host_proxy": _host_proxy(name, machine, run["emulated"]),
                      "device": device, "eval": {"source": eval_label, "images": len(eval_set)}}
            if remote is not None:
                result.update(remote=remote, providers=run["providers"])
            result["accuracy"] = accuracy(*run["logits"], eval_set.labels)
            if result["emulated"]:
                where = "here" if remote is None else f"on {remote}"
                result.update(latency_ms=None, reference_latency_ms=None, speedup_vs_reference=None,
                              throughput_ips=None,
                              latency_note=f"not measured: {tgt.runtime} is not available {where} and the artifact ran "
                                           "emulated on ONNX Runtime; its speed says nothing about the device")
            else:
                lat, ref_lat = summarize(run["timings"]["int8"]), summarize(run["timings"]["reference"])
                result.update(latency_ms=lat, reference_latency_ms=ref_lat,
                              speedup_vs_reference=ref_lat["p50"] / lat["p50"],
                              throughput_ips=batch * 1000.0 / lat["mean"], runs=runs,
                              latency_note=_latency_note(result["host_proxy"], remote, machine))
            result["gates"] = gates(result, max_drop, max_latency_ms, min_speedup)
            result["passed"] = all(g["passed"] for g in result["gates"])
            result["environment"] = run["environment"]
            # A target's further artifact pairs (arm: the .tflite pair, with edgekit[tflite]), here or on the board.
            for variant in getattr(tgt, "variants", lambda _folder, **_: [])(folder, local=remote is None):
                label = f"{tgt.name} ({variant['name']})"
                if remote is None:
                    run = _measure_here(tgt, folder, options, eval_set, pre, threads, env, timing,
                                        (variant["int8"], variant["reference"]), label)
                else:
                    log(f"{label}: benchmarking on {remote} ({variant['runtime']}, batch {batch})")
                    try:
                        run = _measure_remote(remote, ssh_key, remote_python, variant["remote_job"], folder,
                                              variant["files"], inputs, device, threads, timing, log)
                    except EdgekitError as e:  # e.g. no ai-edge-litert on the board: the main pair still counts
                        log(f"{label}: not benched on {remote}: {e.message}")
                        continue
                result.setdefault("variants", {})[variant["name"]] = _variant_result(
                    tgt, label, variant, run, eval_set, timing, remote, log)
            write_json_atomic(folder / "bench.json", result)
            results[name] = result
    return results


def _measure_here(tgt, folder: Path, options: dict, images: ImageSet, pre: Preprocess, threads: int, env: dict,
                  timing: dict, which: tuple[str, str] = ("int8", "fp32"), label: str | None = None) -> dict:
    """Logits and timings of the target's artifacts on this machine, in the shape a remote run returns them.
    which: the runner names of the int8 artifact and its reference."""
    int8, ref = tgt.runner(folder, which[0], threads, options), tgt.runner(folder, which[1], threads, options)
    emulated = bool(getattr(int8, "emulated", False))
    logits, timings = _logits(int8, ref, images, pre, label or tgt.name), None
    if not emulated:
        x = _input_batch(images, pre, timing["batch"])
        timings = interleaved_latency({"int8": int8, "reference": ref}, x, timing["runs"], timing["warmup"],
                                      timing["warmup_seconds"], label or tgt.name)
    return {"logits": logits, "timings": timings, "emulated": emulated, "threads": threads,
            "environment": {**env, "precision": getattr(int8, "precision_hint", None)}}


def _variant_result(tgt, label: str, variant: dict, run: dict, images: ImageSet, timing: dict, remote: str | None,
                    log) -> dict:
    """Accuracy and interleaved latency of a further int8/reference pair of a target, e.g. the arm target's .tflite
    pair in LiteRT + XNNPACK; shaped like a target's result (no gates of its own) so tables can show it as a row."""
    lat, ref_lat = summarize(run["timings"]["int8"]), summarize(run["timings"]["reference"])
    machine = run["environment"]["machine"]
    native = not _host_proxy(tgt.name, machine, False)
    where = f"this {machine} host" if remote is None else f"{remote} ({machine})"
    out = {"target": label, "runtime": variant["runtime"], "hardware": tgt.hardware, "files": variant,
           "batch": timing["batch"], "threads": run["threads"], "emulated": False, "host_proxy": not native,
           "accuracy": accuracy(*run["logits"], images.labels), "latency_ms": lat, "reference_latency_ms": ref_lat,
           "speedup_vs_reference": ref_lat["p50"] / lat["p50"], "int8_over_reference_p50": lat["p50"] / ref_lat["p50"],
           "throughput_ips": timing["batch"] * 1000.0 / lat["mean"], "runs": timing["runs"],
           "latency_note": (f"{variant['runtime']}: {variant['kernels']}; measured on {where}" if native else
                            f"{variant['runtime']}: {variant['kernels']}, but timed on {where} (XNNPACK's "
                            f"{machine} kernels), not on an ARM CPU: the int8/fp32 ratio is XNNPACK's on this CPU, "
                            "the milliseconds are not the device's"),
           "gates": [], "passed": True}
    if remote is not None:
        out.update(remote=remote, providers=run["providers"])
    if timing["batch"] > 1 and variant.get("fixed_batch") == 1:
        out["latency_note"] += f"; the artifact takes one image per call, so a batch of {timing['batch']} is that many calls"
    log(f"{label}: int8 p50 {lat['p50']:.3f} ms vs fp32 p50 {ref_lat['p50']:.3f} ms "
        f"({out['int8_over_reference_p50']:.2f}x the fp32 time) in {variant['runtime']}"
        f"{'' if native else f' on {machine}, not ARM'}; agreement {100 * out['accuracy']['agreement']:.2f} %")
    return out


def _measure_remote(host: str, ssh_key, remote_python: str | None, name: str, folder: Path, files: dict,
                    inputs: Path, device: str, threads: int | None, timing: dict, log) -> dict:
    """What _measure_here returns, measured on `host` over ssh (threads None: all of its cores)."""
    out = run_remote(host, folder, name, files, inputs, threads=threads or 0, device=device, ssh_key=ssh_key,
                     remote_python=remote_python or "python3", log=log, **timing)
    return {"logits": (out["logits"]["int8"], out["logits"]["fp32"]), "timings": out["timings_ms"],
            "emulated": out["emulated"], "threads": out["threads"], "providers": out["providers"],
            "environment": {**out["environment"], "precision": out["precision"]}}


def _host_proxy(name: str, machine: str, emulated: bool) -> bool:
    native = NATIVE_MACHINES.get(name)
    return emulated or (native is not None and machine not in native)


def _latency_note(host_proxy: bool, remote: str | None, machine: str) -> str:
    if remote is None:
        return ("host proxy: timed on this host, not on the target device" if host_proxy
                else "measured on the target's own hardware")
    return (f"host proxy: timed on {remote} ({machine}), not on the target device" if host_proxy
            else f"measured on the device: {remote} ({machine})")


def write_inputs(images: ImageSet, pre: Preprocess, path: Path) -> Path:
    """Every image preprocessed, float32 (N, C, H, W), as an .npy; filled batch by batch, as it can be large."""
    out = None
    for start, x in zip(range(0, len(images), ACCURACY_BATCH), images.batches(pre, ACCURACY_BATCH)):
        if out is None:
            out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(images), *x.shape[1:]))
        out[start : start + len(x)] = x
    out.flush()
    return path


def _input_batch(images: ImageSet, pre: Preprocess, batch: int) -> np.ndarray:
    """A real input batch (cycling the eval images if there are fewer than `batch`)."""
    return np.stack([images.load(i % len(images), pre) for i in range(batch)])


def _logits(int8, ref, images: ImageSet, pre: Preprocess, name: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = [], []
    with tqdm(total=len(images), desc=f"{name}: accuracy", unit="img", leave=False, dynamic_ncols=True) as bar:
        for x in images.batches(pre, ACCURACY_BATCH):
            a.append(int8(x))
            b.append(ref(x))
            bar.update(len(x))
    return np.concatenate(a), np.concatenate(b)


def accuracy(a: np.ndarray, b: np.ndarray, labels) -> dict:
    """Metrics of int8 logits `a` against the fp32 reference's `b` and, where there are labels, the labels."""
    out = {"top1": None, "top5": None, "reference_top1": None, "agreement": metrics.agreement(a, b),
           "cosine": metrics.cosine(a, b), "worst_class_drop_points": None, "labelled": labels is not None}
    if labels is not None:
        labels = np.asarray(labels)
        out.update(top1=metrics.topk(a, labels), reference_top1=metrics.topk(b, labels))
        if a.shape[1] > 5:
            out.update(top5=metrics.topk(a, labels, 5), reference_top5=metrics.topk(b, labels, 5))
        pairs = zip(metrics.per_class_top1(b, labels, a.shape[1]), metrics.per_class_top1(a, labels, a.shape[1]))
        drops = [r - q for r, q in pairs if r is not None and q is not None]
        out["worst_class_drop_points"] = 100 * max(drops) if drops else None
    return out


def interleaved_latency(runners: dict, x: np.ndarray, runs: int, warmup: int, warmup_seconds: float,
                        name: str) -> dict[str, list[float]]:
    """remote_runner.interleaved_latency (the one timing loop, shared with the remote bench) with a progress bar."""
    with tqdm(total=runs * len(runners), desc=f"{name}: latency", unit="call", leave=False, dynamic_ncols=True) as bar:
        return remote_runner.interleaved_latency(runners, x, runs, warmup, warmup_seconds, lambda: bar.update(1))


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
