"""Teacher vs student, measured the same way: accuracy on the eval images, size, and latency on this machine.

Both models are exported to fp32 ONNX (the graph `edgekit quantize` would start from) and run in ONNX
Runtime. Latency: batch 1, 2 threads, the two models timed in interleaved rounds in the same run (the loop
`edgekit bench` uses), so `speedup` (teacher p50 / student p50) survives a busy machine.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from . import metrics
from .board.timing import interleaved_latency, summarize
from .export import export_onnx
from .macs import count_macs
from .model import LoadedModel, count_params, load_model
from .ort_runner import OrtModel
from .table import format_table, pct

LATENCY_THREADS = 2
LATENCY_RUNS, LATENCY_WARMUP, LATENCY_WARMUP_SECONDS = 200, 20, 1.0
EVAL_BATCH = 256


def compare(teacher: LoadedModel, student_file: Path, x: np.ndarray, labels: np.ndarray | None) -> dict:
    """x: (N, C, H, W) preprocessed eval images; labels (N,) or None. Returns the teacher/student figures.

    The student is loaded back from the file just written: what is measured is what `edgekit quantize` will read.
    """
    student = load_model(student_file)
    shape = tuple(x.shape[1:])
    with tempfile.TemporaryDirectory(prefix="edgekit-distill-") as tmp:
        paths = {"teacher": Path(tmp) / "teacher.onnx", "student": Path(tmp) / "student.onnx"}
        for (name, loaded) in (("teacher", teacher), ("student", student)):
            export_onnx(loaded, x[:2], paths[name])
        sessions = {name: OrtModel(p) for name, p in paths.items()}
        logits = {name: np.concatenate([run(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])
                  for name, run in sessions.items()}
        timers = {name: OrtModel(p, LATENCY_THREADS) for name, p in paths.items()}
        times = interleaved_latency(timers, x[:1], LATENCY_RUNS, LATENCY_WARMUP, LATENCY_WARMUP_SECONDS)
    out = {}
    for name, loaded in (("teacher", teacher), ("student", student)):
        out[name] = {
            "top1": metrics.topk(logits[name], labels) if labels is not None else None,
            "params": count_params(loaded.module),
            "macs": count_macs(loaded.module, shape),
            "latency_ms": summarize(times[name]),
        }
    out["student"]["agreement"] = metrics.agreement(logits["student"], logits["teacher"])
    out["latency"] = {"runtime": "onnxruntime fp32, CPUExecutionProvider", "batch": 1, "threads": LATENCY_THREADS,
                      "runs": LATENCY_RUNS, "method": "interleaved rounds in one run"}
    out["speedup"] = out["teacher"]["latency_ms"]["p50"] / out["student"]["latency_ms"]["p50"]
    out["macs_ratio"] = out["teacher"]["macs"] / out["student"]["macs"]
    return out


def distill_table(report: dict) -> str:
    t, s = report["teacher"], report["student"]
    top1 = (["top-1", pct(t["top1"]), pct(s["top1"]), f"{100 * (s['top1'] - t['top1']):+.2f} pts"]
            if t["top1"] is not None else ["top-1", "-", "-", "no labels"])
    lat = report["latency"]
    rows = [
        top1,
        ["top-1 agreement with teacher", "", pct(s["agreement"]), ""],
        ["parameters", f"{t['params'] / 1e6:.2f} M", f"{s['params'] / 1e6:.2f} M", f"{s['params'] / t['params']:.2f}x"],
        ["MACs", f"{t['macs'] / 1e6:.1f} M", f"{s['macs'] / 1e6:.1f} M", f"{report['macs_ratio']:.1f}x fewer"],
        [f"latency p50 (ORT fp32, batch {lat['batch']}, {lat['threads']} threads)",
         f"{t['latency_ms']['p50']:.3f} ms", f"{s['latency_ms']['p50']:.3f} ms", speed(report["speedup"])],
    ]
    tr = report["training"]
    footer = (f"student {report['student']['name']}: {tr['epochs_run']} epochs run of {tr['options']['epochs']},"
              f" {tr['seconds'] / 60:.1f} min training, {tr['objective']}; eval: {report['eval']['source']}")
    return format_table(["", "teacher", "student", "change"], rows) + "\n" + footer


def speed(ratio: float) -> str:
    """Teacher/student latency as words: fewer MACs do not always mean faster (small inputs, many small ops)."""
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def students_table(overview: dict) -> str:
    """The registry at one input size: parameters, MACs and, given a teacher, MACs as a fraction of its; with a
    timing (--target), each student's int8 p50 and speed-up over the teacher per target and whether it meets the
    requirement."""
    teacher = overview.get("teacher")
    timing = overview.get("timing")
    c, h, w = overview["input"]
    head = f"at {c}x{h}x{w} inputs, {overview['classes']} classes"
    if teacher:
        head += (f"; teacher {teacher['path']}: {teacher['params'] / 1e6:.2f} M parameters,"
                 f" {teacher['macs'] / 1e6:.1f} M MACs")
    if timing:
        return head + "\n" + _timed_students_table(overview)
    rows = []
    for r in overview["students"]:
        if not r["fits"]:
            rows.append([r["name"], r["family"], f"{r['width']:g}", "-", "-", "-", "input too small"])
            continue
        ratio = f"{teacher['macs'] / r['macs']:.1f}x fewer" if teacher else ""
        rows.append([r["name"], r["family"], f"{r['width']:g}", f"{r['params'] / 1e6:.2f} M",
                     f"{r['macs'] / 1e6:.1f} M", ratio, r["description"]])
    table = format_table(["student", "family", "width", "params", "MACs", "vs teacher", "blocks"], rows,
                         align="llrrrrl")
    return head + "\n" + table


def count(n: int) -> str:
    """Parameters in millions, or as they are below 10,000 (a tiny test model's 2,034 is not "0.00 M")."""
    return f"{n / 1e6:.2f} M" if n >= 10_000 else f"{n:,}"


def _timed_students_table(overview: dict) -> str:
    from .student_timing import spec

    teacher, entries, req = overview.get("teacher"), overview["timing"]["targets"], overview.get("requirement") or {}
    required = req.get("speedup") is not None or req.get("budget_ms") is not None
    specs = [spec(e) for e in entries]
    headers = ["student", "params", "MACs"]
    for s in specs:
        headers += [f"{s} p50"] + (["vs teacher", "95 % interval"] if teacher else [])
    headers += ["meets"] if required else []
    rows = []
    if teacher:
        row = ["(teacher)", count(teacher["params"]), f"{teacher['macs'] / 1e6:.1f} M"]
        for s in specs:
            row += [f"{teacher['latency'][s]:.3f} ms", "1.00x", ""]
        rows.append(row + ([""] if required else []))
    for r in overview["students"]:
        if not r["fits"]:
            rows.append([r["name"], "-", "-"] + ["-"] * (len(headers) - 4) + ["input too small"])
            continue
        row = [r["name"] + (" *" if r["name"] == overview.get("chosen") else ""), count(r["params"]),
               f"{r['macs'] / 1e6:.1f} M"]
        for s in specs:
            v = r["latency"][s]
            row.append(f"{v['p50_ms']:.3f} ms")
            if teacher:
                iv = v["speedup_interval"]
                row += [f"{v['speedup']:.2f}x", f"{iv[0]:.2f}-{iv[1]:.2f}x" if iv else "-"]
        rows.append(row + (["yes" if r["meets"] else "no"] if required else []))
    lines = [format_table(headers, rows)]
    for e in entries:
        load = (e.get("load") or {}).get("others_cpu_share")
        busy = f"; other processes took {100 * load:.0f} % of the CPU meanwhile" if load is not None else ""
        lines.append(f"{spec(e)}: int8 {e['artifact']} in {e['runtime']}, batch {e['batch']}, {e['threads']} thread(s), "
                     f"{e['runs']} calls each, {e['method']}{busy}")
    if required:
        want = " and ".join(([f">= {req['speedup']:g}x the teacher"] if req.get("speedup") is not None else []) +
                            ([f"p50 <= {req['budget_ms']:g} ms"] if req.get("budget_ms") is not None else []))
        chosen = overview.get("chosen")
        lines.append(f"* the largest student (most MACs) meeting {want} on every target: {chosen}" if chosen
                     else f"no student meets {want} on every target")
    return "\n".join(lines)
