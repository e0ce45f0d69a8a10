"""One cross-target report from the targets' bench.json files: report.md and a self-contained report.html
(what was measured: model, eval set, quantize result; the table; an inline SVG plot of each fp32 reference -> int8
pair; no scripts, no external assets)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from .errors import EdgekitError
from .fallback import Budget
from .table import points, size
from .workspace import Workspace, write_text_atomic

# Short headers: the HTML table must fit a 1280 px window, the terminal table a wide terminal.
COLUMNS = ["target", "runtime", "status", "top-1", "fp32 top-1", "agree", "SQNR dB", "p50 ms", "p99 ms", "speedup",
           "gates", "note"]
# The report adds the artifact sizes, which live in compile.json, not in bench.json.
REPORT_COLUMNS = [*COLUMNS[:COLUMNS.index("gates")], "size int8 / fp32", *COLUMNS[COLUMNS.index("gates"):]]
# One row per output of each bench row: how far int8 is from fp32, output by output (outputs.py).
FIDELITY_COLUMNS = ["target", "output", "role", "SQNR dB", "cosine", "max abs err", "agreement"]
GATE_ORDER = ("failed", "not checked", "inconclusive", "passed")


def collect(ws: Workspace) -> list[dict]:
    manifest = ws.read_manifest()
    results = []
    for name, info in manifest.get("targets", {}).items():
        path = ws.root / info["dir"] / "bench.json"
        if path.is_file():
            result = json.loads(path.read_text())
            compiled = _read_json(ws.root / info["dir"] / "compile.json")
            # bytes by file name: each bench row names the two files of its pair
            by_file = {compiled["files"][role]: n for role, n in compiled.get("sizes_bytes", {}).items()
                       if role in compiled.get("files", {})}
            # A target's further artifact pairs (arm: the .tflite pair in LiteRT) get their own rows, as in bench's table.
            for row in [result, *result.get("variants", {}).values()]:
                files = row.get("files", {"int8": info["files"].get("int8"), "fp32": info["files"].get("fp32")})
                row["sizes_bytes"] = {"int8": by_file.get(files.get("int8")), "fp32": by_file.get(files.get("fp32"))}
                row.setdefault("eval", result.get("eval"))  # a variant runs on its target's eval set
            results += [result, *result.get("variants", {}).values()]
    if not results:
        raise EdgekitError(f"no benchmark results in {ws.root}", f"run `edgekit bench --target all --workdir {ws.root}` first")
    return results


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):  # the report says what it lacks instead of refusing to exist
        return {}


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def _ms(lat, key) -> str:
    return "not measured" if lat is None else f"{lat[key]:.3f}"


def _size(n) -> str:
    return "-" if n is None else size(n)


def slower(r: dict) -> bool:
    """int8 slower than its fp32 reference, judged on the speed-up as printed (0.996 prints 1.00x: not slower)."""
    s = r.get("speedup_vs_reference")
    return s is not None and round(s, 2) < 1


def gate_status(g: dict) -> str:
    # bench may say a gate was "not checked" or "inconclusive" (e.g. no latency on an emulated target);
    # older bench.json files only have the boolean.
    return g.get("status") or ("passed" if g["passed"] else "failed")


def gates_cell(gates: list[dict]) -> str:
    if not gates:
        return "none"
    by: dict[str, list[str]] = {}
    for g in gates:
        by.setdefault(gate_status(g), []).append(g["name"])
    if set(by) == {"passed"}:
        return "all passed"
    # The gates that did not pass by name, the passed ones counted: the cell stays short, and "failed: x" does not
    # read as if x were the only gate.
    order = [st for st in (*GATE_ORDER, *sorted(set(by) - set(GATE_ORDER))) if st in by and st != "passed"]
    parts = [f"{st}: {', '.join(by[st])}" for st in order]
    return "; ".join(parts + ([f"{len(by['passed'])} passed"] if "passed" in by else []))


def status_cell(r: dict) -> str:
    """pass/FAIL is the overall verdict; what it does not say (int8 slower than fp32, gates that could not be
    checked, a noisy timing) follows in brackets, so a slow int8 artifact never reads as a plain "pass"."""
    caveats = ["int8 slower than fp32"] if slower(r) else []
    if noisy(r):
        caveats.append("noisy")
    for st in ("not checked", "inconclusive"):
        n = sum(gate_status(g) == st for g in r["gates"])
        if n:
            caveats.append(f"{n} gate{'s' if n > 1 else ''} {st}")
    base = "pass" if r["passed"] else "FAIL"
    return f"{base} ({'; '.join(caveats)})" if caveats else base


def noisy(r: dict) -> bool:
    return bool((r.get("noise") or {}).get("noisy"))  # bench.json from before the noise record: not judged


def speedup_cell(r: dict, interval: bool = True) -> str:
    """e.g. "2.29x (2.10-2.45)": the speed-up and its 95 % interval, "slower" added below 1.00x."""
    s = r["speedup_vs_reference"]
    if s is None:
        return "-"
    span = r.get("speedup_interval") if interval else None
    extra = ([f"{span[0]:.2f}-{span[1]:.2f}"] if span else []) + (["slower"] if slower(r) else [])
    return f"{s:.2f}x" + (f" ({', '.join(extra)})" if extra else "")


def timing_line(r: dict) -> str | None:
    """What the speed-up's trust rests on, in one line: its interval, the load around the timing, and why it is
    noisy if it is (None for a bench.json without that record)."""
    noise = r.get("noise")
    if not noise:
        return None
    span = r.get("speedup_interval")
    parts = [f"speed-up 95 % interval {span[0]:.2f}-{span[1]:.2f}x over {noise['rounds']} rounds" if span
             else f"no speed-up interval ({noise['rounds']} rounds)"]
    before, after = noise.get("load_average_before"), noise.get("load_average_after")
    if before and after:
        parts.append(f"1-min load average {before[0]:.2f} before, {after[0]:.2f} after timing on {noise.get('cores')} cores")
    if noise.get("others_cpu_share") is not None:
        parts.append(f"other processes used {100 * noise['others_cpu_share']:.0f} % of the CPU time meanwhile")
    if noise["noisy"]:
        parts.append("NOISY: " + "; ".join(noise["reasons"]))
    return f"{r['target']}: " + "; ".join(parts)


def note_label(r: dict) -> str:
    return "emulated (accuracy only)" if r["emulated"] else "host proxy" if r["host_proxy"] else "on device"


def row(r: dict) -> list[str]:
    """The cells of COLUMNS for one bench result (the terminal table and the report share them)."""
    acc = r["accuracy"]
    return [r["target"], r["runtime"], status_cell(r), _pct(acc["top1"]), _pct(acc["reference_top1"]),
            _pct(acc["agreement"]), _db(worst_sqnr(r)), _ms(r["latency_ms"], "p50"), _ms(r["latency_ms"], "p99"),
            speedup_cell(r), gates_cell(r["gates"]), note_label(r)]


def worst_sqnr(r: dict) -> float | None:
    """The lowest SQNR over a bench row's outputs (a row written before outputs were recorded: none)."""
    values = [o["sqnr_db"] for o in (r.get("outputs") or {}).values() if o.get("sqnr_db") is not None]
    return min(values) if values else None


def _db(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def fidelity_rows(results: list[dict]) -> list[list[str]]:
    """The cells of FIDELITY_COLUMNS: every output of every bench row (collect() lists the .tflite pair's too)."""
    rows = []
    for r in results:
        for name, o in (r.get("outputs") or {}).items():
            agree = (_pct(o["agreement"]) if "agreement" in o
                     else f"{_pct(o['pixel_agreement'])} of pixels" if "pixel_agreement" in o else "-")
            if o.get("miou_vs_reference") is not None:
                agree += f", mIoU {_pct(o['miou_vs_reference'])}"
            rows.append([r["target"], name, o["role"], "exact" if o["sqnr_db"] is None else _db(o["sqnr_db"]),
                         f"{o['cosine']:.5f}", f"{o['max_abs_err']:.3g}", agree])
    return rows


class Footnotes:
    """Long explanations (latency notes, gate reasons) leave the table for numbered notes below it: the table
    stays narrow enough to read without scrolling, and a note shared by several rows is printed once."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str | None) -> str:
        if not text:
            return ""
        if text not in self.texts:
            self.texts.append(text)
        return f" [{self.texts.index(text) + 1}]"


def report_row(r: dict, notes: Footnotes) -> list[str]:
    cells = row(r)
    reasons = [f"{r['target']}: gate {g['name']} {gate_status(g)}: {g['reason']}"
               for g in r["gates"] if gate_status(g) != "passed" and g.get("reason")]
    gates_at, note_at = COLUMNS.index("gates"), COLUMNS.index("note")
    cells[gates_at] += "".join(notes.mark(t) for t in reasons)
    cells[note_at] += notes.mark(r.get("latency_note")) + notes.mark(timing_line(r))
    sizes = r.get("sizes_bytes", {})
    return [*cells[:gates_at], f"{_size(sizes.get('int8'))} / {_size(sizes.get('fp32'))}", *cells[gates_at:]]


# ---- what was measured: model, eval set, quantize result --------------------------------------------------------

def context(ws: Workspace) -> dict:
    return {"model": ws.read_manifest().get("source"), "quantize": _read_json(ws.path("quantize.json")) or None}


def facts(results: list[dict], ctx: dict) -> list[tuple[str, str]]:
    """(label, text) pairs for the top of the report: which model, which images, what quantizing cost."""
    src = ctx.get("model")
    model = ("unknown (manifest.json has no source)" if not src else
             f"{src.get('path')} ({str(src.get('format', '?')).replace('_', ' ')}, sha256 {src.get('sha256', '?')})")
    evals = []
    for r in results:
        ev = r.get("eval")
        if ev:
            text = ev["source"]
            if f"{ev['images']} images" not in text:
                text += f", {ev['images']} images"
            if text not in evals:
                evals.append(text)
    out = [("Model", model), ("Eval set (bench)", "; ".join(evals) or "not recorded in bench.json")]
    q = ctx.get("quantize")
    if not q:
        return out + [("Quantize", "quantize.json not found in the workspace")]
    fp32, int8 = q["fp32"], q["int8"]
    if fp32.get("top1") is not None:
        acc = (f"top-1 fp32 {_pct(fp32['top1'])} -> int8 {_pct(int8['top1'])} "
               f"(change {points(-q['drop_points'], signed=True)}), agreement {_pct(int8['agreement'])}")
    elif int8.get("agreement") is not None:
        acc = f"int8 agrees with fp32 top-1 on {_pct(int8['agreement'])} (eval set unlabelled: no top-1)"
    else:
        acc = "no class-logits output: " + "; ".join(
            f"{name} ({o['role']}) SQNR {_db(o['sqnr_db'])} dB" for name, o in q.get("outputs", {}).items())
    text = (f"{acc}; file size fp32 {size(fp32['size_bytes'])} -> int8 {size(int8['size_bytes'])} "
            f"({q['size_ratio']:.2f}x)")
    cal = q.get("calibration")
    if cal:
        text += f"; calibration {cal['method']}, {cal['samples']} images"
    fb = q.get("fallback") or {}
    if fb.get("float_layers"):
        flag = fb.get("flag") or Budget(fb["budget_points"], fb.get("measure", "top1")).flag
        text += f"; {len(fb['float_layers'])} layer(s) kept in float for {flag}"
    if q.get("eval"):
        text += f"; eval: {q['eval']['source']}"
    return out + [("Quantize", text)]


def notes(results: list[dict]) -> list[str]:
    env = results[0]["environment"]
    return [f"Host: {env['cpu']} ({env['machine']}, {env['cores']} cores; {', '.join(env['isa']) or 'no SIMD flags read'}).",
            f"Runtimes: {', '.join(f'{k} {v}' for k, v in env['versions'].items())}.",
            "Speedup = reference p50 / int8 p50, both timed in interleaved rounds in the same run, each target "
            "against its own fp32 reference in its own runtime; below 1.00x the int8 artifact is slower (marked). "
            "In brackets: its 95 % interval from the interleaved rounds. noisy: a busy machine or an interval "
            "reaching further than +-10 %; a latency or speed-up gate inside it is inconclusive (docs/bench.md).",
            "host proxy: timed on hardware that is not the target's (this host, or a board of another kind), never "
            "the device's latency. emulated: accuracy only, no latency: the target's runtime is absent and its "
            "artifact ran on ONNX Runtime (jetson without TensorRT), or the CPU was emulated (arm with --emulate: "
            "the aarch64 runtimes under qemu)."]


def markdown(results: list[dict], ctx: dict | None = None) -> str:
    foot = Footnotes()
    rows = [report_row(r, foot) for r in results]
    cell = lambda c: c.replace("|", "\\|")  # noqa: E731
    lines = ["# edgekit benchmark report", ""]
    lines += [f"- **{k}:** {v}" for k, v in facts(results, ctx or {})]
    lines += ["", "| " + " | ".join(REPORT_COLUMNS) + " |", "|" + "---|" * len(REPORT_COLUMNS)]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    lines += [""] + [f"- [{i}] {t}" for i, t in enumerate(foot.texts, 1)]
    untimed = [f"- {r['target']}: {not_timed_reason(r)}" for r in results if r["latency_ms"] is None]
    if untimed:
        lines += ["", *untimed]
    lines += ["", "## Output fidelity: int8 against fp32, output by output", "",
              "| " + " | ".join(FIDELITY_COLUMNS) + " |", "|" + "---|" * len(FIDELITY_COLUMNS)]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in fidelity_rows(results)]
    for n in notes(results):
        lines += ["", n]
    return "\n".join(lines) + "\n"


# ---- the plot ----------------------------------------------------------------------------------------------------

def not_timed_reason(r: dict) -> str:
    acc = r["accuracy"]
    figure = (f"top-1 {_pct(acc['top1'])} (fp32 {_pct(acc['reference_top1'])})" if acc["top1"] is not None
              else f"agreement with fp32 {_pct(acc['agreement'])}" if acc["agreement"] is not None
              else f"worst output SQNR {_db(worst_sqnr(r))} dB")
    if r["emulated"]:
        where = f" on {r['remote']}" if r.get("remote") else ""
        return f"not timed{where}: {r['runtime']} (numerics right, speed not the device's); accuracy {figure}"
    return f"not timed: {r.get('latency_note') or 'no latency in bench.json'}; accuracy {figure}"


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in (1, 2, 5)]
    return [t for t in ticks if lo <= t <= hi]


ARROW = {"faster": "#1a7f37", "slower": "#cf222e", "even": "#6e7781"}  # what int8 bought: green, red, grey


def svg_plot(results: list[dict], width: int = 1080) -> str:
    """One lane per timed artifact pair: the fp32 reference (grey) and the int8 artifact (blue) at their p50
    latency, whiskers to p99, an arrow from reference to int8 (green: int8 faster, red: slower), marker area
    proportional to file size; log latency axis, since p99 tails can be 10x the p50. Targets without a latency
    get a lane that says why, so they cannot vanish from the picture."""
    timed = [r for r in results if r["latency_ms"] is not None]
    untimed = [r for r in results if r["latency_ms"] is None]
    lane, top, bottom = 62, 12, 48
    left, right = 180, 390  # lane names | plot | per-point text
    pw = width - left - right
    base = top + lane * len(timed) + (bottom if timed else 0)  # where the lanes of untimed targets start
    height = base + 28 * len(untimed) + 10
    lats = [v for r in timed for lat in (r["latency_ms"], r.get("reference_latency_ms")) if lat
            for v in (lat["p50"], lat["p99"]) if v > 0] or [1.0]
    lo, hi = min(lats) / 1.3, max(lats) * 1.3
    if hi / lo < 10:  # at least one decade, centred, so a tight cluster does not look spread out
        mid = math.sqrt(lo * hi)
        lo, hi = mid / math.sqrt(10), mid * math.sqrt(10)
    span = math.log10(hi) - math.log10(lo)
    sx = lambda v: left + (math.log10(max(v, lo)) - math.log10(lo)) / span * pw  # noqa: E731
    biggest = max([n for r in timed for n in r.get("sizes_bytes", {}).values() if n] or [1])
    radius = lambda n: 5.0 if not n else max(2.5, 9.0 * math.sqrt(n / biggest))  # noqa: E731
    esc = html.escape
    plot_bottom = top + lane * len(timed)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="plot" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="latency of each fp32 reference and its int8 artifact">',
             '<defs>' + "".join(
                 f'<marker id="arrow-{k}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
                 f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
                 for k, c in ARROW.items()) + '</defs>']
    if timed:
        parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{plot_bottom - top}" '
                     'fill="#fafafa" stroke="#999"/>')
        for t in _log_ticks(lo, hi):
            parts.append(f'<line x1="{sx(t):.1f}" y1="{top}" x2="{sx(t):.1f}" y2="{plot_bottom}" stroke="#e3e3e3"/>')
            parts.append(f'<text x="{sx(t):.1f}" y="{plot_bottom + 16}" font-size="11" text-anchor="middle">{t:g}</text>')
        batches = sorted({r.get("batch") for r in timed} - {None})
        batch = f"batch {batches[0]}" if len(batches) == 1 else "batch as benched"
        parts.append(f'<text x="{left + pw / 2}" y="{plot_bottom + 36}" font-size="12" text-anchor="middle">'
                     f'latency per call, ms (log scale, {batch}): dot at p50, whisker to p99</text>')
    for i, r in enumerate(timed):
        yc = top + lane * (i + 0.5)
        acc = r["accuracy"]
        proxy = r["host_proxy"]
        name = r["target"] + (" (host proxy)" if proxy else "")
        parts.append(f'<text x="{left - 10}" y="{yc + 4:.1f}" font-size="12" text-anchor="end">{esc(name)}</text>')
        if i:
            y = yc - lane / 2
            parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        sizes = r.get("sizes_bytes", {})
        pair = [("fp32", r.get("reference_latency_ms"), yc - 11, "#6e7781", acc["reference_top1"], sizes.get("fp32"),
                 "ref-point"),
                ("int8", r["latency_ms"], yc + 11, "#1f6feb", acc["top1"], sizes.get("int8"), "point")]
        drawn = []
        for role, lat, y, colour, top1, nbytes, cls in pair:
            if lat is None:
                continue
            x, rad = sx(lat["p50"]), radius(nbytes)
            drawn.append((x, y, rad))
            # Whisker p50 -> p99 with a cap at p99: the tail a user sees, next to the typical call.
            parts.append(f'<line class="whisker" x1="{x:.1f}" y1="{y:.1f}" x2="{sx(lat["p99"]):.1f}" y2="{y:.1f}" '
                         f'stroke="{colour}" stroke-width="1.5"/>')
            parts.append(f'<line x1="{sx(lat["p99"]):.1f}" y1="{y - 4:.1f}" x2="{sx(lat["p99"]):.1f}" y2="{y + 4:.1f}" '
                         f'stroke="{colour}" stroke-width="1.5"/>')
            # A host-proxy latency is drawn hollow: a stand-in, not the device's number.
            fill = f'fill="white" stroke="{colour}" stroke-width="2"' if proxy else f'fill="{colour}"'
            tip = (f"{r['target']} {role}: p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms, {_size(nbytes)}"
                   + (f", top-1 {_pct(top1)}" if top1 is not None else ""))
            parts.append(f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{rad:.1f}" {fill}>'
                         f'<title>{esc(tip)}</title></circle>')
            label = f"{role} {lat['p50']:.3f} ms · {_size(nbytes)}" + (f" · {_pct(top1)}" if top1 is not None else "")
            if role == "int8" and r["speedup_vs_reference"] is not None:
                label += f" · {speedup_cell(r, interval=False)}"  # the interval is in the table
            weight = ' font-weight="bold" fill="#cf222e"' if role == "int8" and slower(r) else ""
            parts.append(f'<text x="{left + pw + 10}" y="{y + 4:.1f}" font-size="12"{weight}>{esc(label)}</text>')
        if len(drawn) == 2:
            (x0, y0, r0), (x1, y1, r1) = drawn
            d = math.hypot(x1 - x0, y1 - y0)
            ux, uy = (x1 - x0) / d, (y1 - y0) / d
            kind = "slower" if slower(r) else "faster" if round(r["speedup_vs_reference"] or 1, 2) > 1 else "even"
            parts.append(f'<line class="arrow {kind}" x1="{x0 + ux * (r0 + 2):.1f}" y1="{y0 + uy * (r0 + 2):.1f}" '
                         f'x2="{x1 - ux * (r1 + 2):.1f}" y2="{y1 - uy * (r1 + 2):.1f}" stroke="{ARROW[kind]}" '
                         f'stroke-width="1.5" marker-end="url(#arrow-{kind})"/>')
    for j, r in enumerate(untimed):
        y = base + 28 * j + 18
        parts.append(f'<text x="{left - 10}" y="{y}" font-size="12" text-anchor="end">{esc(r["target"])}</text>')
        parts.append(f'<text class="untimed" x="{left}" y="{y}" font-size="12" font-style="italic" fill="#57606a">'
                     f'{esc(not_timed_reason(r))}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1216px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0 0 1.2em}
dl.facts dt{font-weight:600}dl.facts dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%}
td,th{border:1px solid #ccc;padding:4px 6px;text-align:right;vertical-align:top}
th{background:#eee;font-size:.92em}
td:first-child,th:first-child,td.text,td.note,th.text,th.note{text-align:left;overflow-wrap:break-word}
td.text,td.note{overflow-wrap:anywhere}
span.nw{white-space:nowrap}
td.num{white-space:nowrap}
td.note{max-width:14em}
td.slower{background:#ffebe9;color:#a40e26;font-weight:600}
ol.footnotes{font-size:.9em;color:#444;padding-left:2.2em}
svg{max-width:100%;height:auto}
p.legend{font-size:.9em;color:#444}"""

# Which REPORT_COLUMNS hold short figures (kept on one line), figures with words that may wrap (right-aligned
# still), and text (left-aligned, wraps).
_NUM = {"top-1", "fp32 top-1", "agree", "SQNR dB"}
_FIG = {"p50 ms", "p99 ms", "speedup", "size int8 / fp32"}  # "not measured", "0.70x (slower)", "759 KB / 2.71 MB"


def _cls(col: str) -> str:
    return "note" if col == "note" else "num" if col in _NUM else "fig" if col in _FIG else "text"


def _td(col: str, text: str, slow: bool) -> str:
    if col == "target":
        return f"<td>{html.escape(text)}</td>"
    cls = _cls(col)
    if slow and col in ("status", "speedup"):
        cls += " slower"
    body = html.escape(text)
    if col.startswith("size"):  # "759.34 KB / 2.71 MB" may break at the slash, never inside a size
        body = " / ".join(f'<span class="nw">{part}</span>' for part in body.split(" / "))
    return f'<td class="{cls}">{body}</td>'


def html_page(results: list[dict], ctx: dict | None = None) -> str:
    foot = Footnotes()
    head = "".join(f'<th class="{_cls(c)}">{html.escape(c)}</th>' for c in REPORT_COLUMNS)
    body = "".join("<tr>" + "".join(_td(c, t, slower(r)) for c, t in zip(REPORT_COLUMNS, report_row(r, foot)))
                   + "</tr>" for r in results)
    dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts(results, ctx or {}))
    footnotes = "".join(f'<li value="{i}">{html.escape(t)}</li>' for i, t in enumerate(foot.texts, 1))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgekit benchmark report</title>
<style>{CSS}</style></head>
<body><h1>edgekit benchmark report</h1>
<dl class="facts">{dl}</dl>
<table id="results"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<ol class="footnotes">{footnotes}</ol>
<h2>Output fidelity: int8 against fp32, output by output</h2>
{_fidelity_table(results)}
<h2>Latency: fp32 reference to int8 artifact</h2>
{svg_plot(results)}
<p class="legend">Grey: fp32 reference; blue: int8 artifact; hollow: host proxy. Arrow from reference to int8:
green when int8 is faster, red when slower. Marker area is proportional to the artifact's file size. Percentages
are top-1 on the eval set.</p>
{''.join(f'<p>{html.escape(n)}</p>' for n in notes(results))}
</body></html>
"""


def _fidelity_table(results: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in FIDELITY_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in fidelity_rows(results))
    return f'<table id="fidelity"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def write_report(workdir: str | Path = "edgekit-out") -> tuple[Path, Path]:
    """One report across every benched target of the workspace: report.md and a self-contained report.html (the
    model, the eval set and the quantize result, a table of every target and pair, and a latency plot in which
    each int8 artifact is drawn beside its fp32 reference). Returns their paths."""
    ws = Workspace(workdir)
    with ws.writing():
        return _write(ws)


def _write(ws: Workspace) -> tuple[Path, Path]:
    results = collect(ws)
    ctx = context(ws)
    md, page = ws.path("report.md"), ws.path("report.html")
    write_text_atomic(md, markdown(results, ctx))
    write_text_atomic(page, html_page(results, ctx))
    return md, page
