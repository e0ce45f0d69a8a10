"""Plain-text tables for the terminal: aligned columns, no dependencies."""

from __future__ import annotations


def format_table(headers: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """align: one letter a column, "l" or "r"; default: the first column left, the rest (numbers) right."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w)
                         for c, w, a in zip(cells, widths, align)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f} %"


def points(x: float, signed: bool = False) -> str:
    """Accuracy points, e.g. a drop. A value that rounds to zero prints without a sign ("+0.00"/"0.00"), never
    "-0.00": a negative zero reads as a loss that did not happen."""
    v = round(x, 2) or 0.0  # -0.0 is falsy: `or` turns it into +0.0
    return f"{v:+.2f} pts" if signed else f"{v:.2f} pts"


def size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def quantize_table(report: dict) -> str:
    fp32, int8 = report["fp32"], report["int8"]
    drop = report["drop_points"]
    cal = report["calibration"]
    rows = [
        ["top-1", pct(fp32["top1"]), pct(int8["top1"]), "-" if drop is None else points(-drop, signed=True)],
        ["top-1 agreement with fp32", "", pct(int8["agreement"]), ""],
        ["output cosine vs fp32", "", f"{int8['cosine']:.5f}", ""],
        ["file size", size(fp32["size_bytes"]), size(int8["size_bytes"]), f"{report['size_ratio']:.2f}x"],
    ]
    if int8.get("worst_class_drop_points") is not None:
        rows.insert(1, ["worst class drop", "", points(int8["worst_class_drop_points"]), ""])
    outputs = report.get("outputs") or {}
    if len(outputs) > 1 or any(o["role"] != "logits" for o in outputs.values()):
        for name, o in outputs.items():  # every output's own fidelity, where there is more than one logits vector
            extra = (f", {pct(o['agreement'])} agree" if "agreement" in o
                     else f", {pct(o['pixel_agreement'])} of pixels agree" if "pixel_agreement" in o else "")
            sqnr = "exact" if o["sqnr_db"] is None else f"SQNR {o['sqnr_db']:.1f} dB"
            rows.append([f"{name} ({o['role']})", "", sqnr + extra, ""])
    footer = (
        f"calibration: {cal['method']}, {cal['samples']} images, {cal['seconds']:.1f} s;"
        f" eval: {report['eval']['source']}"
    )
    return format_table(["", "fp32", "int8", "change"], rows) + "\n" + footer


def compile_table(results: dict) -> str:
    rows = []
    for name, r in results.items():
        if r["status"] != "ok":
            rows.append([name, r["status"], "-", "-", "-", r.get("reason", "")])
            continue
        v = r["validation"]
        main_file = next(iter(r["files"].values()))
        rows.append([
            name, "ok", main_file, size(r["sizes_bytes"][next(iter(r["files"]))]),
            pct(v["agreement"]) + (" (emulated)" if v["emulated"] else ""), f"{r['seconds']:.1f} s",
        ])
        for variant, vv in v.get("variants", {}).items():  # arm's .tflite, held to the same budget
            role = f"{variant}_int8"
            rows.append([f"{name} ({variant})", "ok", r["files"].get(role, variant),
                         size(r["sizes_bytes"][role]) if role in r["sizes_bytes"] else "-", pct(vv["agreement"]), ""])
    # compiling.py times Target.compile alone; the eval-set check that gives the agreement runs after the clock stops.
    return format_table(["target", "status", "int8 artifact", "size", "agreement vs fp32", "build + check"], rows)


def bench_table(results: dict) -> str:
    from .reporting import COLUMNS, row, timing_line

    # arm: + the .tflite pair. row() marks an int8 artifact slower than its fp32 reference in status and speed-up.
    every = [v for r in results.values() for v in [r, *r.get("variants", {}).values()]]
    table = format_table(COLUMNS, [row(v) for v in every], align="lllrrrrrrrll")
    # Below the table: each timed row's interval, the load around its timing and why it is noisy (too long for a cell).
    return "\n".join([table, *filter(None, map(timing_line, every))])
