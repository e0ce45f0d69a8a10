"""One cross-target report from the targets' bench.json files: report.md and a self-contained report.html
(the table plus an inline SVG latency-vs-accuracy plot; no scripts, no external assets)."""

from __future__ import annotations

import html
import json
from pathlib import Path

from .errors import EdgekitError
from .workspace import Workspace, write_text_atomic

COLUMNS = ["target", "runtime", "status", "top-1", "ref top-1", "agreement", "p50 ms", "p99 ms", "speedup", "gates", "note"]


def collect(ws: Workspace) -> list[dict]:
    manifest = ws.read_manifest()
    results = []
    for name, info in manifest.get("targets", {}).items():
        path = ws.root / info["dir"] / "bench.json"
        if path.is_file():
            result = json.loads(path.read_text())
            # A target's further artifact pairs (arm: the .tflite pair in LiteRT) get their own rows, as in bench's table.
            results += [result, *result.get("variants", {}).values()]
    if not results:
        raise EdgekitError(f"no benchmark results in {ws.root}", f"run `edgekit bench --target all --workdir {ws.root}` first")
    return results


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def _ms(lat, key) -> str:
    return "not measured" if lat is None else f"{lat[key]:.3f}"


def row(r: dict) -> list[str]:
    acc, gates = r["accuracy"], r["gates"]
    status = "pass" if r["passed"] else "FAIL"
    failed = [g["name"] for g in gates if not g["passed"]]
    note = "emulated (accuracy only)" if r["emulated"] else "host proxy" if r["host_proxy"] else "on device"
    return [r["target"], r["runtime"], status, _pct(acc["top1"]), _pct(acc["reference_top1"]), _pct(acc["agreement"]),
            _ms(r["latency_ms"], "p50"), _ms(r["latency_ms"], "p99"),
            "-" if r["speedup_vs_reference"] is None else f"{r['speedup_vs_reference']:.2f}x",
            "none" if not gates else ("all passed" if not failed else "failed: " + ", ".join(failed)), note]


def notes(results: list[dict]) -> list[str]:
    env = results[0]["environment"]
    return [f"Host: {env['cpu']} ({env['machine']}, {env['cores']} cores; {', '.join(env['isa']) or 'no SIMD flags read'}).",
            f"Runtimes: {', '.join(f'{k} {v}' for k, v in env['versions'].items())}.",
            "Speedup = reference p50 / int8 p50, both timed in interleaved rounds in the same run, each target "
            "against its own fp32 reference in its own runtime.",
            "host proxy: timed on hardware that is not the target's (this host, or a board of another kind), never "
            "the device's latency. emulated: the target's runtime is "
            "absent; accuracy comes from running its artifact on ONNX Runtime and no latency is reported."]


def markdown(results: list[dict]) -> str:
    lines = ["# edgekit benchmark report", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results]
    lines += ["", *notes(results)]
    return "\n".join(lines) + "\n"


def svg_plot(results: list[dict], width: int = 680, height: int = 340) -> str:
    """Latency p50 (x) vs accuracy (y: top-1, or agreement without labels) for the targets that were timed."""
    points = []
    for r in results:
        if r["latency_ms"] is None:
            continue
        acc = r["accuracy"]
        y = acc["top1"] if acc["top1"] is not None else acc["agreement"]
        points.append((r["target"] + (" (host proxy)" if r["host_proxy"] else ""), r["latency_ms"]["p50"], y, r["host_proxy"]))
    m = {"l": 60, "r": 140, "t": 20, "b": 50}  # the right margin holds the last point's label
    w, h = width - m["l"] - m["r"], height - m["t"] - m["b"]
    xs = [p[1] for p in points] or [0.0, 1.0]
    ys = [p[2] for p in points] or [0.0, 1.0]
    x0, x1 = 0.0, max(xs) * 1.15 or 1.0
    y0, y1 = min(ys) - 0.01, min(1.0, max(ys) + 0.01)
    if y1 - y0 < 0.02:
        y0, y1 = y0 - 0.01, y1 + 0.01
    sx = lambda v: m["l"] + (v - x0) / (x1 - x0) * w  # noqa: E731
    sy = lambda v: m["t"] + h - (v - y0) / (y1 - y0) * h  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="plot" width="{width}" height="{height}" role="img" '
             f'aria-label="latency versus accuracy">',
             f'<rect x="{m["l"]}" y="{m["t"]}" width="{w}" height="{h}" fill="#fafafa" stroke="#999"/>']
    for i in range(5):
        xv, yv = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        parts.append(f'<text x="{sx(xv):.1f}" y="{m["t"] + h + 18}" font-size="11" text-anchor="middle">{xv:.2f}</text>')
        parts.append(f'<text x="{m["l"] - 6}" y="{sy(yv) + 4:.1f}" font-size="11" text-anchor="end">{100 * yv:.1f}</text>')
    parts.append(f'<text x="{m["l"] + w / 2}" y="{height - 8}" font-size="12" text-anchor="middle">latency p50 (ms, batch as benched)</text>')
    parts.append(f'<text x="14" y="{m["t"] + h / 2}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 14 {m["t"] + h / 2})">accuracy (%)</text>')
    for name, x, y, proxy in points:
        # A host-proxy latency is drawn hollow: a stand-in, not the device's number.
        fill = 'fill="white" stroke="#1f6feb" stroke-width="2"' if proxy else 'fill="#1f6feb"'
        parts.append(f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="6" {fill}/>')
        parts.append(f'<text x="{sx(x) + 9:.1f}" y="{sy(y) - 8:.1f}" font-size="12">{html.escape(name)}</text>')
    if not points:
        parts.append(f'<text x="{m["l"] + w / 2}" y="{m["t"] + h / 2}" text-anchor="middle">no target was timed here</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def html_page(results: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row(r)) + "</tr>" for r in results)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgekit benchmark report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}}td:first-child,th:first-child{{text-align:left}}
th{{background:#eee}}</style></head>
<body><h1>edgekit benchmark report</h1>
<table id="results"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<h2>Latency vs accuracy</h2>
{svg_plot(results)}
{''.join(f'<p>{html.escape(n)}</p>' for n in notes(results))}
</body></html>
"""


def write_report(workdir: str | Path = "edgekit-out") -> tuple[Path, Path]:
    ws = Workspace(workdir)
    results = collect(ws)
    md, page = ws.path("report.md"), ws.path("report.html")
    write_text_atomic(md, markdown(results))
    write_text_atomic(page, html_page(results))
    return md, page
