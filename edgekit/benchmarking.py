"""The bench stage: latency and accuracy of each compiled target, checked against gates.

Latency method: warm-up (a count and a minimum time), then timed single calls in interleaved rounds of
the int8 artifact and its fp32 reference in the same runtime, alternating which goes first. Both see
the same machine state, so `speedup_vs_reference` (reference p50 / int8 p50) is a ratio that survives a
noisy machine even when absolute milliseconds do not. It still comes with a 95 % interval from the rounds and a
"noisy" verdict (edgekit/timing_stats.py); a latency or speed-up gate whose limit lies inside the interval of a
noisy measurement is "inconclusive" (a failure with strict_timing).

Accuracy: the outputs of both artifacts on the eval images. Compile already computed them for the main pair on
the workspace's eval set (validation.npz); when the eval set is the same and the run is local, bench reads them
back instead of evaluating the same artifacts on the same images a second time, and only times.

Honesty rules: an emulated artifact (the jetson Q/DQ graph without TensorRT) gets accuracy only, never a
latency, and a gate that needs a latency is "not checked" there (shown, neither a pass nor a failure); every
row names the runtime that actually ran; an artifact timed on a host that is not its hardware (arm on x86) is
labelled `host_proxy`.

With `remote="user@host"` the artifacts run on that board over ssh (edgekit/remote.py): the eval images are
preprocessed here, the board returns outputs and per-call timings, and every metric is computed here by the
same code as a local bench; the latency is then the board's own, and the board's machine decides `host_proxy`.

With `emulate="cortex-a76"` the arm target's int8 artifacts run on that emulated aarch64 CPU, in the aarch64 builds
of their runtimes, by the same board runner (edgekit/emulator.py), on a bounded, evenly spread part of the eval
set: accuracy, and how the outputs differ from this host's on the same inputs; never a latency.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from . import emulator
from . import fallback, metrics, outputs, preflight, stage_keys, timing_stats
from .board.timing import ACCURACY_BATCH, TIMED_CALL, interleaved_latency, load_between, load_snapshot, summarize
from .data import ImageSet, Preprocess, open_images
from .environment import environment
from .errors import EdgekitError
from .outputs import OutputLayout
from .progress import progress
from .remote import parse_host, run_remote
from .targets import ArtifactPair, get_target, resolve_targets
from .workspace import (Workspace, check_labels, require_compiled, require_quantized, workspace_images,
                        write_json_atomic)


def check_limits(runs: int, warmup: int, batch: int, max_drop, max_latency_ms, min_speedup, min_sqnr=None,
                 min_agreement=None) -> None:
    if runs < 1:
        raise EdgekitError(f"--runs must be at least 1, got {runs}", "e.g. --runs 200")
    if warmup < 0:
        raise EdgekitError(f"--warmup must be 0 or more, got {warmup}", "e.g. --warmup 20")
    if batch < 1:
        raise EdgekitError(f"--batch must be at least 1, got {batch}", "e.g. --batch 1")
    for flag, value in (("--max-drop", max_drop), ("--max-latency-ms", max_latency_ms), ("--min-speedup", min_speedup),
                        ("--min-sqnr", min_sqnr)):
        if value is not None and value < 0:
            raise EdgekitError(f"{flag} must not be negative, got {value}", "give a limit of 0 or more")
    if min_agreement is not None:
        fallback.check_min_agreement(min_agreement)


def bench(target: str = "all", *, workdir: str | Path = "edgekit-out", eval: str | Path | None = None,  # noqa: A002
          labels: str | Path | None = None, classes: str | Path | None = None,
          batch: int = 1, threads: int | None = None, runs: int = 200, warmup: int = 20, warmup_seconds: float = 1.0,
          max_drop: float | None = None, max_latency_ms: float | None = None, min_speedup: float | None = None,
          min_sqnr: float | None = None, min_agreement: float | None = None, strict_timing: bool = False, remote: str | None = None, ssh_key: str | Path | None = None,
          remote_python: str | None = None, emulate: str | None = None, emulate_images: int | None = None,
          log=print) -> dict:
    """Latency and accuracy of each compiled target, against its own fp32 reference, with pass/fail gates.

    target: a name, a comma list, or "all" compiled. workdir: the workspace. eval: other eval images (default:
        the ones quantize used), with `labels` / `classes` files as quantize takes them. batch, threads (default: all cores, the board's with `remote`), runs, warmup,
        warmup_seconds: the timing. Gates: max_drop (top-1 points lost vs fp32; disagreement without labels),
        max_latency_ms (int8 p50), min_speedup (int8 over its fp32 reference), min_sqnr (dB: every output's SQNR
        against the fp32 reference's at least this), min_agreement (percent of eval images on which int8's top-1
        is fp32's, labels or not). A gate a target cannot measure
        (a latency where the runtime is emulated) is "not checked". A latency or speed-up gate whose limit lies
        inside the 95 % interval of a noisy measurement is "inconclusive"; strict_timing makes it "failed".
    remote: "user@host[:port]" (IPv6: user@[addr]:port) to run on that board over ssh, with `ssh_key` and the
        board's `remote_python` (default python3); the board needs python3, numpy and the runtime, not edgekit.
    emulate: a CPU model qemu emulates ("cortex-a76"): the arm target's int8 artifacts run on that emulated
        aarch64 CPU (`edgekit setup arm-emulator` first), on `emulate_images` eval images (default: sized to the
        input, emulator.default_images); accuracy and the difference from this host's outputs, no latency.

    Writes targets/<name>/bench.json and returns {name: bench.json content}; result["passed"] is False when a
    gate failed.
    """
    check_limits(runs, warmup, batch, max_drop, max_latency_ms, min_speedup, min_sqnr, min_agreement)
    if remote is None and (ssh_key is not None or remote_python is not None):
        raise EdgekitError("--ssh-key and --remote-python only apply to a remote bench", "add --remote user@host")
    if remote is not None:
        parse_host(remote)  # a malformed host is bad input: say so before any work
    guest = emulator.check_request(target, emulate, emulate_images, remote)  # None without emulate
    ws = Workspace(workdir)
    require_quantized(ws)
    with ws.writing():
        manifest = require_quantized(ws)
        compiled = manifest.get("targets", {})
        names = [emulator.TARGET] if guest else list(compiled) if target == "all" else resolve_targets(target)
        require_compiled(ws, manifest, names)
        gates_wanted = {"max_drop": max_drop, "max_latency_ms": max_latency_ms, "min_speedup": min_speedup,
                        "min_sqnr": min_sqnr}
        if min_agreement is not None:  # keyed only when asked: benches recorded before the gate existed stay valid
            gates_wanted["min_agreement"] = min_agreement
        layout = OutputLayout.from_list(manifest.get("outputs"), manifest["input"].get("num_classes"))
        timing = {"batch": batch, "runs": runs, "warmup": warmup, "warmup_seconds": warmup_seconds}
        pre = Preprocess.from_dict(manifest["preprocess"])
        if eval is not None:
            eval_set, eval_label = open_images(eval, "eval", labels, classes), str(eval)
            if layout.logits is not None:
                check_labels(eval_set, layout.num_classes)
        else:
            _, eval_set, eval_label = workspace_images(manifest)
        where = (_Emulated(guest, threads, layout) if guest else _Here(threads) if remote is None
                 else _Board(remote, ssh_key, remote_python, threads))
        if guest:
            eval_set, eval_label = emulator.eval_subset(eval_set, eval_label, emulate_images, pre)
        # compile's outputs are reusable only for the workspace's own eval set (computed once: it stats the files)
        eval_key = stage_keys.workspace_eval_key(manifest) if eval is None and remote is None and not guest else None
        results = {}
        with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:  # holds the inputs sent to a remote
            where.prepare(eval_set, pre, Path(tmp), log)
            for name in names:
                tgt = get_target(name)
                folder = ws.inside(compiled[name]["dir"])
                options = compiled[name].get("options", {})
                local = remote is None and guest is None
                reuse = _validation_outputs(ws, compiled[name], eval_key, options) if local else None
                pairs = tgt.pairs(folder, local=remote is None)
                result = None
                for pair in pairs:
                    label = name if pair.name == "main" else f"{name} ({pair.name})"
                    try:
                        run = where.measure(tgt, pair, folder, options, eval_set, pre, timing, label,
                                            reuse if pair.name == "main" else None, log)
                    except EdgekitError as e:
                        if pair.name == "main":
                            raise
                        log(f"{label}: not benched: {e.message}")  # e.g. no ai-edge-litert on the board
                        continue
                    row = _result(tgt, label, pair, run, eval_set, eval_label, options, timing, remote, layout)
                    _note_fixed_batch(row, manifest["input"]["shape"][0], pair, batch)
                    chance = preflight.near_chance(row["accuracy"]["reference_top1"], layout.num_classes or 0)
                    if chance:  # said before any gate is judged: the gates compare two broken pipelines
                        log(f"{label}: WARNING: {chance}")
                        row.setdefault("warnings", []).append(chance)
                    if result is None:
                        row["gates"] = gates(row, max_drop, max_latency_ms, min_speedup, strict_timing, min_sqnr,
                                             min_agreement)
                        row["passed"] = not any(g["status"] == "failed" for g in row["gates"])
                        result = row
                    else:  # a further pair: its own row, no gates of its own
                        row.update(gates=[], passed=True)
                        result.setdefault("variants", {})[pair.name] = row
                        _log_variant(row, log)
                key = stage_keys.bench_key(compiled[name].get("inputs_key"), eval, batch, runs, warmup, warmup_seconds,
                                           gates_wanted, f"emulate:{emulate}:{emulate_images}" if guest else remote,
                                           strict_timing, labels, classes)
                write_json_atomic(folder / "bench.json", result)
                ws.record("targets", {name: {"bench": {"inputs_key": key, "file": f"{compiled[name]['dir']}/bench.json"}}})
                results[name] = result
    return results


def _note_fixed_batch(row: dict, model_batch: int | None, pair: ArtifactPair, batch: int) -> None:
    """A model (or artifact) that fixes its batch runs a larger bench batch as repeated calls: say so, in numbers."""
    fixed = pair.fixed_batch or model_batch
    row["model_batch"] = fixed
    if fixed and batch > fixed and row.get("latency_note") and "calls" not in row["latency_note"]:
        calls = -(-batch // fixed)
        row["latency_note"] += (f"; the artifact takes {fixed} image(s) per call, so a batch of {batch} is {calls} "
                                "calls (timed together)")


def _validation_outputs(ws: Workspace, compiled: dict, eval_key: str | None, options: dict) -> dict | None:
    """The main pair's outputs that compile computed, when they are outputs of this bench's images: the
    workspace's own eval set (eval_key: its key now; None when bench was given other images), unchanged since
    compile, on the CPU (compile validates there)."""
    record = compiled.get("validation")
    if eval_key is None or record is None or options.get("device", "CPU") != record.get("device"):
        return None
    path = ws.inside(record["file"])
    if not path.is_file() or eval_key != record.get("eval_key"):
        return None
    with np.load(path) as z:
        return {"int8": z["int8"], "fp32": z["fp32"]}


class _Here:
    """Runs pairs on this machine."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads or os.cpu_count() or 1
        self.env = environment()

    def prepare(self, images, pre, tmp: Path, log) -> None:
        pass

    def measure(self, tgt, pair: ArtifactPair, folder: Path, options: dict, images: ImageSet, pre: Preprocess,
                timing: dict, label: str, reuse: dict | None, log) -> dict:
        int8 = tgt.runner(folder, pair.int8, self.threads, options)
        ref = tgt.runner(folder, pair.reference, self.threads, options)
        log(f"{label}: {int8.runtime}, {self.threads} threads, batch {timing['batch']}"
            + ("; accuracy from compile's check" if reuse is not None else ""))
        both = (reuse["int8"], reuse["fp32"]) if reuse is not None else _outputs(int8, ref, images, pre, label)
        timings = load = None
        if not int8.emulated:
            x = _input_batch(images, pre, timing["batch"])
            before = load_snapshot()
            with progress(timing["runs"] * 2, f"{label}: latency", "call") as bar:
                timings = interleaved_latency({"int8": int8, "reference": ref}, x, timing["runs"], timing["warmup"],
                                              timing["warmup_seconds"], lambda: bar.update(1))
            load = load_between(before, load_snapshot())
        return {"outputs": both, "timings": timings, "load": load,
                "emulated": bool(int8.emulated), "runtime": int8.runtime,
                "threads": self.threads, "providers": {"int8": list(int8.providers), "fp32": list(ref.providers)},
                "environment": {**self.env, "precision": int8.precision_hint}}


class _Board:
    """Runs pairs on a board over ssh; the eval images are preprocessed once and sent with each pair."""

    def __init__(self, remote: str, ssh_key, remote_python: str | None, threads: int | None) -> None:
        self.remote, self.ssh_key, self.python, self.threads = remote, ssh_key, remote_python or "python3", threads

    def prepare(self, images, pre, tmp: Path, log) -> None:
        log(f"preprocessing {len(images)} eval images for {self.remote}")
        self.inputs = write_inputs(images, pre, tmp / "inputs.npy")

    def measure(self, tgt, pair: ArtifactPair, folder: Path, options: dict, images, pre, timing: dict, label: str,
                reuse, log) -> dict:
        log(f"{label}: benchmarking on {self.remote} (batch {timing['batch']})")
        out = run_remote(self.remote, folder, pair, self.inputs, threads=self.threads or 0, options=options,
                         ssh_key=self.ssh_key, remote_python=self.python, log=log, **timing)
        return {"outputs": (out["outputs"]["int8"], out["outputs"]["fp32"]), "timings": out["timings_ms"],
                "load": out.get("load"),  # None from a runner older than the load record
                "emulated": out["emulated"], "runtime": out["runtime"], "threads": out["threads"],
                "providers": out["providers"], "environment": {**out["environment"], "precision": out["precision"]}}


class _Emulated:
    """Runs each pair's int8 artifact on an emulated aarch64 CPU: the board runner, in the aarch64 builds of the
    runtimes, under qemu (emulator.py). The pair also runs here on the same inputs, for the fp32 reference's outputs
    and the x86 outputs the aarch64 ones are compared with. No latency: emulation time is not device time."""

    def __init__(self, guest, threads: int | None, layout: OutputLayout) -> None:
        self.guest, self.threads = guest, threads or os.cpu_count() or 1
        self.logits = layout.primary if layout.logits else None

    def prepare(self, images, pre, tmp: Path, log) -> None:
        log(f"preprocessing {len(images)} eval images for the emulated {self.guest.cpu}")
        self.inputs = write_inputs(images, pre, tmp / "inputs.npy")

    def measure(self, tgt, pair: ArtifactPair, folder: Path, options: dict, images, pre, timing: dict, label: str,
                reuse, log) -> dict:
        here_int8 = tgt.runner(folder, pair.int8, self.threads, options)  # fails before minutes of emulation
        here_ref = tgt.runner(folder, pair.reference, self.threads, options)
        log(f"{label}: int8 artifact on an emulated aarch64 {self.guest.cpu}, {len(images)} images (not timed: "
            "emulation time is not device time)")
        out = emulator.run_pair(self.guest, folder, pair, self.inputs, threads=self.threads, options=options, log=log)
        int8_here, ref = _outputs(here_int8, here_ref, images, pre, f"{label} on this host")
        record = emulator.record(self.guest, out, int8_here, here_int8.runtime, self.logits)
        log(emulator.summary(label, record))
        return {"outputs": (out["outputs"]["int8"], ref), "timings": None, "load": None, "emulated": True,
                "runtime": f"{out['runtime']}, aarch64 (emulated CPU {self.guest.cpu})", "threads": out["threads"],
                "providers": {"int8": out["providers"]["int8"], "fp32": list(here_ref.providers)},
                "environment": {**out["environment"], "cpu": f"{self.guest.cpu} (emulated: qemu {record['qemu'].split()[0]})",
                                "precision": out["precision"]},
                "emulation": record}


def _result(tgt, label: str, pair: ArtifactPair, run: dict, images: ImageSet, eval_label: str, options: dict,
            timing: dict, remote: str | None, layout: OutputLayout) -> dict:
    """bench.json's shape for one pair (the main pair's gets gates added)."""
    machine = run["environment"]["machine"]
    host_proxy = run["emulated"] or bool(tgt.native_machines and machine not in tgt.native_machines)
    result = {"target": label, "runtime": run["runtime"], "hardware": tgt.hardware, "batch": timing["batch"],
              "threads": run["threads"], "emulated": run["emulated"], "host_proxy": host_proxy,
              "device": options.get("device", "CPU"), "providers": run["providers"],
              "files": dict(pair.files), "eval": {"source": eval_label, "images": len(images)},
              "accuracy": accuracy(*run["outputs"], images.labels, layout),
              "outputs": outputs.fidelity(layout, *run["outputs"])}
    if remote is not None:
        result["remote"] = remote
    if run.get("emulation"):
        result["emulation"] = run["emulation"]
    if run["emulated"]:
        result.update(latency_ms=None, reference_latency_ms=None, speedup_vs_reference=None, throughput_ips=None,
                      speedup_interval=None, latency_p50_interval_ms=None, noise=None,
                      latency_note=f"not measured: {run['runtime']}; an emulated speed says nothing about the device")
    else:
        lat, ref_lat = summarize(run["timings"]["int8"]), summarize(run["timings"]["reference"])
        result.update(latency_ms=lat, reference_latency_ms=ref_lat, speedup_vs_reference=ref_lat["p50"] / lat["p50"],
                      int8_over_reference_p50=lat["p50"] / ref_lat["p50"], throughput_ips=timing["batch"] * 1000.0 / lat["mean"], runs=timing["runs"],
                      timed_call=TIMED_CALL, latency_note=_latency_note(host_proxy, remote, machine, pair))
        result.update(timing_stats.assess(run["timings"], run.get("load"), run["environment"].get("cores")))
    result["environment"] = run["environment"]
    return result


def _latency_note(host_proxy: bool, remote: str | None, machine: str, pair: ArtifactPair) -> str:
    where = f"this {machine} host" if remote is None else f"{remote} ({machine})"
    kernels = f"{pair.kernels}; " if pair.kernels else ""
    if host_proxy:
        return f"{kernels}host proxy: timed on {where}, not on the target device"
    return f"{kernels}measured on " + ("the target's own hardware" if remote is None else f"the device: {where}")


def _log_variant(row: dict, log) -> None:
    lat, ref = row["latency_ms"], row["reference_latency_ms"]
    if lat is None:
        return
    log(f"{row['target']}: int8 p50 {lat['p50']:.3f} ms vs fp32 p50 {ref['p50']:.3f} ms "
        f"({lat['p50'] / ref['p50']:.2f}x the fp32 time) on {row['runtime']}"
        f"{', host proxy' if row['host_proxy'] else ''}; {outputs.summary(row['outputs'])}")


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


def _outputs(int8, ref, images: ImageSet, pre: Preprocess, name: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = [], []
    with progress(len(images), f"{name}: accuracy", "img") as bar:
        for x in images.batches(pre, ACCURACY_BATCH):
            a.append(int8(x))
            b.append(ref(x))
            bar.update(len(x))
    return np.concatenate(a), np.concatenate(b)


def accuracy(flat: np.ndarray, reference: np.ndarray, labels, layout: OutputLayout | None = None) -> dict:
    """Metrics of the int8 outputs against the fp32 reference's and, where there are labels, the labels: top-1 and
    agreement on the class-logits output (None without one), cosine and the worst SQNR over all outputs."""
    layout = layout or OutputLayout.from_list(None, flat.shape[1])
    a, b = layout.primary(flat), layout.primary(reference)
    labels = labels if a is not None else None
    out = {"top1": None, "top5": None, "reference_top1": None,
           "agreement": metrics.agreement(a, b) if a is not None else None,
           "cosine": metrics.cosine(flat, reference), "min_sqnr_db": outputs.min_sqnr(outputs.fidelity(layout, flat, reference)),
           "worst_class_drop_points": None, "labelled": labels is not None}
    if labels is not None:
        labels = np.asarray(labels)
        out.update(top1=metrics.topk(a, labels), reference_top1=metrics.topk(b, labels))
        if a.shape[1] > 5:
            out.update(top5=metrics.topk(a, labels, 5), reference_top5=metrics.topk(b, labels, 5))
        pairs = zip(metrics.per_class_top1(b, labels, a.shape[1]), metrics.per_class_top1(a, labels, a.shape[1]))
        drops = [r - q for r, q in pairs if r is not None and q is not None]
        out["worst_class_drop_points"] = 100 * max(drops) if drops else None
    return out


def gates(result: dict, max_drop, max_latency_ms, min_speedup, strict_timing: bool = False,
          min_sqnr: float | None = None, min_agreement: float | None = None) -> list[dict]:
    """Each requested gate: {"name", "limit", "value", "status": passed | failed | inconclusive | not checked,
    "passed"}. A gate whose value cannot be measured on this target (a latency where the runtime is emulated) is
    "not checked": shown with its reason, and it neither passes nor fails the target. A latency or speed-up gate
    whose limit lies inside the 95 % interval of a noisy timing is "inconclusive" (neither, too), or "failed" with
    strict_timing: which side of the limit the truth lies on is more than the measurement can say."""
    out = []
    acc = result["accuracy"]
    if max_drop is not None and acc["agreement"] is None:
        out.append({**_gate("max_drop_points", max_drop, None, False), "status": "not checked", "passed": None,
                    "reason": "the model has no class-logits output (gate its outputs with --min-sqnr)"})
    elif max_drop is not None:
        # With labels: top-1 points lost vs the fp32 reference; without: points of disagreement with it.
        value = (100 * (acc["reference_top1"] - acc["top1"]) if acc["labelled"] else 100 * (1 - acc["agreement"]))
        out.append(_gate("max_drop_points", max_drop, value, value <= max_drop))
    if min_agreement is not None and acc["agreement"] is None:
        out.append({**_gate("min_agreement_pct", min_agreement, None, False), "status": "not checked", "passed": None,
                    "reason": "the model has no class-logits output (gate its outputs with --min-sqnr)"})
    elif min_agreement is not None:
        value = round(100 * acc["agreement"], 6)  # 99.4, not 99.39999999999999, against a limit of 99.4
        out.append(_gate("min_agreement_pct", min_agreement, value, value >= min_agreement))
    if min_sqnr is not None:
        # The worst output decides; an output identical to fp32 (no noise at all) has no SQNR and cannot fail.
        worst = outputs.min_sqnr(result["outputs"])
        gate = _gate("min_sqnr_db", min_sqnr, worst, worst is None or worst >= min_sqnr)
        if worst is None:
            gate["reason"] = "every output is identical to the fp32 reference's"
        out.append(gate)
    lat = result["latency_ms"]
    noisy = bool((result.get("noise") or {}).get("noisy"))
    if max_latency_ms is not None:
        value = None if lat is None else lat["p50"]
        out.append(_timing_gate("max_latency_ms_p50", max_latency_ms, value, value is not None and value <= max_latency_ms,
                                result.get("latency_p50_interval_ms"), noisy, strict_timing))
    if min_speedup is not None:
        value = result["speedup_vs_reference"]
        out.append(_timing_gate("min_speedup_vs_reference", min_speedup, value, value is not None and value >= min_speedup,
                                result.get("speedup_interval"), noisy, strict_timing))
    for gate in out:
        if gate["value"] is None and gate["name"] in ("max_latency_ms_p50", "min_speedup_vs_reference"):
            gate.update(status="not checked", passed=None, reason=f"no latency measured: {result['runtime']}")
    return out


def _timing_gate(name: str, limit: float, value, ok: bool, interval, noisy: bool, strict: bool) -> dict:
    gate = _gate(name, limit, value, ok)
    if value is not None:
        status, reason = timing_stats.timing_gate_status(ok, limit, interval, noisy, strict)
        gate.update(status=status, passed={"passed": True, "failed": False}.get(status), interval=interval)
        if reason:
            gate["reason"] = reason
    return gate


def _gate(name: str, limit: float, value, ok: bool) -> dict:
    return {"name": name, "limit": limit, "value": value, "status": "passed" if ok else "failed", "passed": ok}
