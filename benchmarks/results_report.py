"""compare_runtimes.py's results -> RESULTS.md (tables, goals, machine), results.json and results.png; the sections
measured by their own scripts (quantize_memory.py, the CIFAR-10 ones) are rendered from their JSON files.

Kept apart from the measuring so the report can be rebuilt from results.json without re-running anything:

    python benchmarks/results_report.py benchmarks/results.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # cifar10_report.py beside this file
from cifar10_report import cifar10_sections  # noqa: E402
from quantize_memory import OUT_JSON as MEMORY_JSON  # noqa: E402
from quantize_memory import memory_section  # noqa: E402

REFERENCE = "PyTorch fp32 eager"
EK_OV, OV_F32, NNCF, ORT_QS = "edgekit openvino int8", "OpenVINO f32", "NNCF plain (defaults)", "ORT quantize_static defaults"
TFLITE_INT8, TFLITE_FP32 = "edgekit tflite int8 (XNNPACK, HOST PROXY)", "edgekit tflite fp32 (XNNPACK, HOST PROXY)"
# Latencies within this factor count as "equal": interleaved p50s on this shared 2-core machine move by a few %.
EQUAL_LATENCY = 1.05
NOTES_FILE = Path(__file__).resolve().parent / "results_notes.md"  # hand-written analysis, included verbatim


def fmt(x, spec: str, suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def size_mb(n) -> str:
    return "-" if n is None else f"{n / 1e6:.2f} MB"


def model_table(m: dict) -> list[str]:
    acc = "top-1" if m["labelled"] else "agreement"
    lines = [f"| row | {acc} | agreement w/ fp32 | size | p50 ms (b=1) | p99 ms (b=1) | img/s (b=32) | p50 / PyTorch | runtime settings / notes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in m["rows"]:
        if r["skipped"]:
            lines.append(f"| {r['name']} | - | - | - | - | - | - | - | {r['note']} |")
            continue
        main = r["top1"] if m["labelled"] else r["agreement"]
        notes = "; ".join(x for x in (r["config"], r["note"]) if x)
        lines.append(
            f"| {r['name']} | {fmt(100 * main, '.2f', ' %')} | {fmt(100 * r['agreement'], '.2f', ' %')} | "
            f"{size_mb(r['size_bytes'])} | {fmt(r.get('p50_ms'), '.3f')} | {fmt(r.get('p99_ms'), '.3f')} | "
            f"{fmt(r.get('throughput_ips'), '.0f')} | {fmt(r.get('ratio_p50'), '.3f', 'x')} | {notes} |")
    return lines


def by_name(m: dict) -> dict:
    return {r["name"]: r for r in m["rows"] if not r["skipped"]}


def goals(m: dict) -> list[tuple[str, bool, str]]:
    """(goal, met, the numbers) for one model."""
    rows = by_name(m)
    ek = rows.get(EK_OV)
    if ek is None:
        return [("edgekit openvino int8 measured", False, "the row is missing")]
    tflite = tflite_goal(rows)
    if m["key"] in ("efficientnet", "lite0", "lite2"):
        ov_ratio = ek["p50_ms"] / rows[OV_F32]["p50_ms"]
        ref = rows[REFERENCE]
        spread = ref["p99_ms"] / ref["p50_ms"]
        # A busy machine hits PyTorch's OpenMP threads hardest: flag a reference whose tail shows it.
        warn = (f" (unreliable: PyTorch eager p99 is {spread:.0f}x its p50, the machine was busy; see the notes)"
                if spread > 3 else "")
        speed = [("p50 <= 0.15x PyTorch eager", ek["ratio_p50"] <= 0.15, f"{ek['ratio_p50']:.3f}x{warn}"),
                 ("p50 <= 0.35x OpenVINO f32", ov_ratio <= 0.35, f"{ov_ratio:.3f}x"), *tflite]
        if not m["labelled"]:
            return [*speed, (">= 90 % agreement on >= 200 crops", ek["agreement"] >= 0.90 and ek["images"] >= 200,
                             f"{100 * ek['agreement']:.2f} % on {ek['images']} crops")]
        return [*speed, *labelled_goals(rows)]
    out = list(tflite)
    for other in (NNCF, ORT_QS):
        o = rows[other]
        out.append((f"top-1 >= {other}", ek["top1"] >= o["top1"],
                    f"{100 * ek['top1']:.2f} % vs {100 * o['top1']:.2f} %{paired(o)}"))
        ratio = ek["p50_ms"] / o["p50_ms"]
        out.append((f"p50 <= {other} (within {EQUAL_LATENCY:.2f}x)", ratio <= EQUAL_LATENCY,
                    f"{ek['p50_ms']:.3f} vs {o['p50_ms']:.3f} ms ({ratio:.2f}x)"))
    return out


def labelled_goals(rows: dict) -> list[tuple[str, bool, str]]:
    """On labelled photos, every edgekit int8 artifact: top-1 within 0.5 points of fp32, agreement >= 99 %, no
    other tool's int8 row significantly more accurate (McNemar, p < 0.05); and openvino no slower than NNCF."""
    ref = rows[REFERENCE]
    out = []
    for name, r in rows.items():
        if "vs_anchors" not in r:  # compare_runtimes gives every edgekit int8 artifact its paired counts, no other row
            continue
        drop = 100 * (ref["top1"] - r["top1"])
        out.append((f"{name}: top-1 within 0.5 points of fp32, agreement >= 99 %",
                    drop <= 0.5 and r["agreement"] >= 0.99,
                    f"{100 * r['top1']:.2f} % vs {100 * ref['top1']:.2f} % ({drop:+.2f} points below), agreement "
                    f"{100 * r['agreement']:.2f} %"))
        worse = []
        for anchor, c in r.get("vs_anchors", {}).items():
            p = mcnemar_p(c["only_this_right"], c["only_other_right"])
            if c["only_other_right"] > c["only_this_right"]:
                worse.append((p, f"{anchor} right on {c['only_other_right']} images where this is wrong, the reverse "
                                 f"on {c['only_this_right']} (p = {p:.2f})"))
        anchors = len(r.get("vs_anchors", {}))
        out.append((f"{name}: no other tool's int8 significantly more accurate (McNemar p < 0.05)",
                     anchors > 0 and all(p >= 0.05 for p, _ in worse),
                     (min(worse)[1] if worse else f"at least as accurate as all {anchors} anchors") if anchors
                     else "no anchors measured"))
    if NNCF in rows and EK_OV in rows:
        ratio = rows[EK_OV]["p50_ms"] / rows[NNCF]["p50_ms"]
        out.append((f"openvino p50 <= NNCF plain (within {EQUAL_LATENCY:.2f}x)", ratio <= EQUAL_LATENCY,
                    f"{rows[EK_OV]['p50_ms']:.3f} vs {rows[NNCF]['p50_ms']:.3f} ms ({ratio:.2f}x)"
                    + round_spread(rows[EK_OV], rows[NNCF])))
    return out


def round_spread(a: dict, b: dict) -> str:
    """How a/b's p50 ratio moves from one interleaved round to the next (runs that recorded each round's p50):
    the spread the verdict's single ratio sits in, so a reader sees whether it is noise."""
    ra, rb = a.get("p50_rounds_ms"), b.get("p50_rounds_ms")
    if not ra or not rb or len(ra) != len(rb):
        return ""
    per_round = np.asarray(ra) / np.asarray(rb)
    q1, med, q3 = np.percentile(per_round, [25, 50, 75])
    return f"; round by round {med:.2f}x, middle half {q1:.2f}-{q3:.2f}x over {len(per_round)} rounds"


def mcnemar_p(b: int, c: int) -> float:
    """McNemar's exact two-sided p-value for "equally accurate", from the discordant pairs b and c."""
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n) if n else 1.0


def paired(row: dict) -> str:
    """The images behind a top-1 difference: where only one of the two is right, and McNemar's exact two-sided
    p-value for "they are equally accurate" (a difference of a few images on 10k is usually noise)."""
    counts = row.get("vs_edgekit_openvino")
    if not counts:
        return ""
    b, c = counts["only_edgekit_right"], counts["only_this_right"]
    p = mcnemar_p(b, c)
    return f" (paired: only edgekit right on {b} images, only this one on {c}; McNemar p = {p:.2f})"


def tflite_goal(rows: dict) -> list[tuple[str, bool, str]]:
    """arm: the .tflite int8 on XNNPACK at most half the p50 of its fp32 .tflite (when the pair was measured)."""
    if TFLITE_INT8 not in rows or TFLITE_FP32 not in rows:
        return [("tflite int8 p50 <= 0.5x tflite fp32 (XNNPACK)", False, "not measured: the tflite rows were skipped")]
    ratio = rows[TFLITE_INT8]["p50_ms"] / rows[TFLITE_FP32]["p50_ms"]
    return [("tflite int8 p50 <= 0.5x tflite fp32 (XNNPACK)", ratio <= 0.5,
             f"{rows[TFLITE_INT8]['p50_ms']:.3f} vs {rows[TFLITE_FP32]['p50_ms']:.3f} ms ({ratio:.2f}x)")]


def environment_lines(env: dict, settings: dict) -> list[str]:
    v = env["versions"]
    return [
        f"- Date: {env['date']}; total run time {env['seconds']} s",
        f"- Command: `{env['command']}`",
        f"- CPU: {env['cpu']} ({env['machine']}, {env['cores']} cores); int8 ISA: {', '.join(env['isa']) or 'none found'}"
        f"; int8 dot product: {'yes' if env['int8_dot_product'] else 'no'}",
        f"- Threads: {env['threads']} everywhere (torch.set_num_threads, ORT intra_op_num_threads, "
        f"OpenVINO INFERENCE_NUM_THREADS)",
        f"- Load average (1/5/15 min) before: {', '.join(f'{x:.2f}' for x in env['load_before'])}; after: "
        f"{', '.join(f'{x:.2f}' for x in env['load_after'])}",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + f"; Python {env['python']}; {env['os']}",
        f"- Latency: batch 1, {settings['runs']} calls per row in {settings['rounds']} interleaved rounds (10 warm-up "
        f"calls each); throughput: batch 32, {settings['tp_rounds']} interleaved rounds x 2 calls, median call",
        # results.json from before the bound call timed the whole runner call, conversions included
        f"- A timed call: {settings.get('timed_call', 'the runner call, float batch in and outputs out included')}",
    ]


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = ["# edgekit vs plain runtimes: measured results", "",
             "Generated by `benchmarks/compare_runtimes.py` (see benchmarks/README.md). Ratios are p50 latency over "
             "PyTorch fp32 eager p50 measured in the same interleaved rounds; absolute milliseconds on this shared "
             "machine swing between runs, ratios much less.", "", "## Machine and settings", "",
             *environment_lines(env, results["settings"]), ""]
    for note in results["notes"]:
        lines += [f"- Note: {note}"]
    for m in results["models"]:
        lines += ["", f"## {m['title']}", "",
                  f"Eval: {m['eval']} ({m['eval_note']}); calibration: {m['calibration_images']} images, the same "
                  "sample for every quantizer.", "", *model_table(m), "", "Goals:", ""]
        lines += [f"- {'PASS' if ok else 'FAIL'}: {goal}: {nums}" for goal, ok, nums in goals(m)]
    lines += [""] + (memory_section(json.loads(MEMORY_JSON.read_text())) if MEMORY_JSON.is_file() else
                     [f"- Note: {MEMORY_JSON.name} not found; `python benchmarks/quantize_memory.py` writes it."])
    lines += cifar10_sections()
    if NOTES_FILE.is_file():
        lines += ["", NOTES_FILE.read_text().strip()]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    """One panel per model: p50 ratio to PyTorch eager (x, log) against top-1 / agreement (y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 5), squeeze=False)
    for ax, m in zip(axes[0], models):
        for r in m["rows"]:
            if r["skipped"] or r.get("ratio_p50") is None:
                continue
            y = 100 * (r["top1"] if m["labelled"] else r["agreement"])
            edge = r["name"].startswith("edgekit")
            ax.scatter(r["ratio_p50"], y, s=60, marker="*" if edge else "o", color="C3" if edge else "C0")
            ax.annotate(r["name"].replace(" (defaults)", "").replace(" defaults", ""), (r["ratio_p50"], y),
                        fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency / PyTorch fp32 eager p50 (batch 1, lower is better)")
        ax.set_ylabel("top-1 (%)" if m["labelled"] else "top-1 agreement with fp32 (%)")
        ax.set_title(m["title"], fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_results(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "RESULTS.md").write_text(markdown(results))
    plot(results, out / "results.png")
    print(f"wrote {out / 'RESULTS.md'}, {out / 'results.png'}, {out / 'results.json'}")
    for m in results["models"]:
        print("\n" + m["title"])
        print("\n".join(model_table(m)))
        for goal, ok, nums in goals(m):
            print(f"  {'PASS' if ok else 'FAIL'}: {goal}: {nums}")


if __name__ == "__main__":
    path = Path(sys.argv[1])
    write_results(json.loads(path.read_text()), path.parent)
