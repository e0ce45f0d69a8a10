"""report.md / report.html and the terminal tables, on a hand-written workspace (no model, no runtime: fast).

The JSON shapes are copied from a real `quantize` + `compile --target all` + `bench` run on fashion_resnet.pt2
(openvino timed on its own hardware, arm timed as a host proxy and 0.70x slower than fp32 in ONNX Runtime, its
.tflite pair faster, jetson emulated because TensorRT is absent)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgekit.reporting import write_report
from edgekit.table import bench_table, compile_table, points, quantize_table

SHA = "31627dbe66732b01cd738b2a9c41cf9e9be2cc5804ada90d47196f747469592d"
EVAL = {"source": "/data/fashion_mnist_eval.npz (2000 images, labelled)", "images": 2000}
ENV = {"cpu": "Test CPU", "machine": "x86_64", "cores": 2, "isa": ["AVX2"], "versions": {"onnxruntime": "1.0"}}
SVG = "{http://www.w3.org/2000/svg}"

QUANTIZE = {
    "fp32": {"top1": 0.9505, "size_bytes": 2840185},
    "int8": {"top1": 0.9495, "agreement": 0.999, "cosine": 0.99995, "size_bytes": 777233, "worst_class_drop_points": 0.5},
    "drop_points": 0.1, "size_ratio": 0.2737,
    "calibration": {"method": "percentile", "samples": 64, "seconds": 0.9},
    "eval": {"source": "data/fashion_mnist_eval.npz (2000 images, labelled)", "images": 2000, "labelled": True},
    "model": {"path": "models/fashion_resnet.pt2", "sha256": SHA, "format": "exported_program"},
    "fallback": None,
}


def lat(p50, p99):
    return {"p50": p50, "p90": (p50 + p99) / 2, "p99": p99, "mean": p50 * 1.2, "std": 0.1, "n": 30}


def acc(top1, ref=0.9505, agreement=0.998):
    return {"top1": top1, "top5": 0.9995, "reference_top1": ref, "agreement": agreement, "cosine": 0.9999,
            "worst_class_drop_points": 0.5, "labelled": True, "reference_top5": 0.9995}


def bench(target, runtime, latency, reference, *, host_proxy, emulated=False, top1=0.9505, note="", gates=()):
    return {"target": target, "runtime": runtime, "hardware": "hw", "batch": 1, "threads": 2, "emulated": emulated,
            "host_proxy": host_proxy, "device": "CPU", "eval": EVAL, "accuracy": acc(top1),
            "latency_ms": latency, "reference_latency_ms": reference,
            "speedup_vs_reference": None if latency is None else reference["p50"] / latency["p50"],
            "throughput_ips": None, "latency_note": note, "gates": list(gates), "passed": True, "environment": ENV}


def real_benches() -> dict:
    arm = bench("arm", "ONNX Runtime (CPU / XNNPACK EP)", lat(1.6485, 31.28), lat(1.1459, 22.53), host_proxy=True,
                note="host proxy: timed on this host, not on the target device")
    tflite = bench("arm (tflite)", "LiteRT Interpreter + XNNPACK (ai-edge-litert)", lat(0.2625, 3.224), lat(1.8345, 2.28),
                   host_proxy=True, top1=0.9495,
                   note="LiteRT Interpreter + XNNPACK (ai-edge-litert): XNNPACK int8/fp32 kernels, but timed on this "
                        "x86_64 host (XNNPACK's x86_64 kernels), not on an ARM CPU: the milliseconds are not the device's")
    del tflite["eval"], tflite["environment"]  # a variant has neither, as bench writes it
    arm["files"] = {"int8": "model.int8.onnx", "fp32": "model.fp32.onnx"}
    tflite["files"] = {"int8": "model.int8.tflite", "fp32": "model.fp32.tflite"}
    arm["variants"] = {"tflite": tflite}
    return {
        "openvino": {**bench("openvino", "OpenVINO", lat(0.2378, 0.5675), lat(0.6652, 1.1377), host_proxy=False,
                             note="measured on the target's own hardware"),
                     "files": {"int8": "model.int8.xml", "fp32": "model.fp32.xml"}},
        "arm": arm,
        "jetson": bench("jetson", "ONNX Runtime (CPU EP) emulating TensorRT", None, None, host_proxy=True,
                        emulated=True, top1=0.9515,
                        note="not measured: ONNX Runtime (CPU EP) emulating TensorRT; an emulated speed says nothing "
                             "about the device"),
    }


FILES = {"openvino": {"int8": "model.int8.xml", "fp32": "model.fp32.xml"},
         "arm": {"int8": "model.int8.onnx", "fp32": "model.fp32.onnx", "tflite_int8": "model.int8.tflite",
                 "tflite_fp32": "model.fp32.tflite"},
         "jetson": {"int8": "model.qdq.onnx", "fp32": "model.fp32.onnx", "build_script": "build_engine.sh"}}
SIZES = {"openvino": {"int8": 857196, "fp32": 2825187},
         "arm": {"int8": 777563, "fp32": 2840185, "tflite_int8": 753800, "tflite_fp32": 2806576},
         "jetson": {"int8": 2863660, "fp32": 2840185, "build_script": 450}}


def make_workspace(root: Path, benches: dict | None = None, quantize: dict | None = QUANTIZE) -> Path:
    benches = real_benches() if benches is None else benches
    targets = {}
    for name, b in benches.items():
        folder = root / "targets" / name
        folder.mkdir(parents=True)
        (folder / "bench.json").write_text(json.dumps(b))
        (folder / "compile.json").write_text(json.dumps({"target": name, "status": "ok", "files": FILES.get(name, {}),
                                                         "sizes_bytes": SIZES.get(name, {})}))
        targets[name] = {"dir": f"targets/{name}", "files": {}, "options": {}}
    manifest = {"schema": 1, "source": QUANTIZE["model"], "targets": targets}
    (root / "manifest.json").write_text(json.dumps(manifest))
    if quantize is not None:
        (root / "quantize.json").write_text(json.dumps(quantize))
    return root


@pytest.fixture
def report(tmp_path):
    md, page = write_report(make_workspace(tmp_path / "ws"))
    return md.read_text(), page.read_text()


def svg_of(page: str) -> ET.Element:
    return ET.fromstring(page[page.index("<svg"):page.index("</svg>") + len("</svg>")])


def md_row(md: str, target: str) -> dict[str, str]:
    """The target's row of the main results table, by column name (the first table with a row for it)."""
    from edgekit.reporting import REPORT_COLUMNS

    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {target} |"))
    return dict(zip(REPORT_COLUMNS, (c.strip() for c in line.strip("|").split(" | "))))


def test_model_eval_and_quantize_result_at_the_top(report):
    md, page = report
    for text in (md, page):
        table_at = text.index("| target |") if text is md else text.index('<table id="results">')
        for needle in ("models/fashion_resnet.pt2", SHA, "exported program", EVAL["source"],
                       "95.05 %", "94.95 %", "-0.10 pts", "agreement 99.90 %", "2.71 MB", "759.02 KB", "0.27x",
                       "percentile, 64 images"):
            assert needle in text, needle
            assert text.index(needle) < table_at, f"{needle!r} is not above the table"


@pytest.mark.parametrize("budget,flag", [({"budget_points": 0.5}, "--max-drop 0.5"),
                                         ({"budget_points": 1.0, "measure": "agreement"}, "--min-agreement 99")])
def test_the_report_says_which_budget_kept_layers_in_float(tmp_path, budget, flag):
    quantize = {**QUANTIZE, "fallback": {**budget, "float_layers": ["node_Conv_1", "node_Conv_2"], "met": True}}
    md, _ = write_report(make_workspace(tmp_path / "ws", quantize=quantize))
    assert f"2 layer(s) kept in float for {flag}" in md.read_text()


def test_missing_quantize_json_is_said_not_hidden(tmp_path):
    md, _ = write_report(make_workspace(tmp_path / "ws", quantize=None))
    assert "quantize.json not found" in md.read_text()


def test_each_timed_pair_is_two_points_an_arrow_and_whiskers(report):
    _, page = report
    svg = svg_of(page)
    circles = {c: [e for e in svg.iter(f"{SVG}circle") if e.get("class") == c] for c in ("point", "ref-point")}
    arrows = [e for e in svg.iter(f"{SVG}line") if "arrow" in (e.get("class") or "").split()]
    whiskers = [e for e in svg.iter(f"{SVG}line") if e.get("class") == "whisker"]
    # openvino, arm, arm (tflite) timed; jetson not.
    assert len(circles["point"]) == len(circles["ref-point"]) == len(arrows) == 3
    assert len(whiskers) == 6
    for w in whiskers:  # p50 -> p99 goes right on a latency axis
        assert float(w.get("x2")) > float(w.get("x1"))
    lanes = [(ref, int8, arrow) for ref, int8, arrow in zip(circles["ref-point"], circles["point"], arrows)]
    for ref, int8, arrow in lanes:
        rx, ix = float(ref.get("cx")), float(int8.get("cx"))
        ax1, ax2 = float(arrow.get("x1")), float(arrow.get("x2"))
        # the arrow runs from the reference to the int8 point, in the direction int8 moved the latency
        assert (ax2 - ax1) * (ix - rx) > 0 and min(rx, ix) - 1 <= ax1 <= max(rx, ix) + 1
        assert arrow.get("marker-end", "").startswith("url(#arrow-")
        # marker area tracks file size: the fp32 file is ~3.5x the int8 one here
        assert float(ref.get("r")) > float(int8.get("r"))
    ov_ref, ov_int8, _ = lanes[0]
    assert float(ov_int8.get("cx")) < float(ov_ref.get("cx")), "openvino int8 is 2.8x faster: left of its reference"
    assert "slower" in lanes[1][2].get("class"), "arm int8 is slower than fp32: its arrow says so"
    assert "faster" in lanes[2][2].get("class")
    labels = " ".join(t.text or "" for t in svg.iter(f"{SVG}text"))
    assert "arm (host proxy)" in labels and "arm (tflite) (host proxy)" in labels
    assert "736.13 KB" in labels and "2.68 MB" in labels, "the .tflite pair shows its own files' sizes"
    assert "837.11 KB" in labels and "2.69 MB" in labels
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")


def test_emulated_target_is_named_with_its_reason(report):
    md, page = report
    untimed = [t for t in svg_of(page).iter(f"{SVG}text") if t.get("class") == "untimed"]
    assert len(untimed) == 1
    text = untimed[0].text
    assert "not timed" in text and "ONNX Runtime (CPU EP) emulating TensorRT" in text
    assert "95.15 %" in text, "its accuracy is still reported"
    assert "jetson: not timed: ONNX Runtime (CPU EP) emulating TensorRT" in md
    assert md_row(md, "jetson")["p50 ms"] == "not measured"


def test_int8_slower_than_fp32_is_marked_everywhere(report, tmp_path):
    md, page = report
    arm, ov = md_row(md, "arm"), md_row(md, "openvino")
    assert arm["status"] == "pass (int8 slower than fp32)" and arm["speedup"] == "0.70x (slower)"
    assert ov["status"] == "pass" and ov["speedup"] == "2.80x"
    assert '<td class="text slower">pass (int8 slower than fp32)</td>' in page
    assert '<td class="fig slower">0.70x (slower)</td>' in page
    assert page.count(' slower">') == 2, "only arm's status and speed-up cells are marked"
    terminal = bench_table(real_benches())
    arm_line = next(ln for ln in terminal.splitlines() if ln.startswith("arm "))
    assert "pass (int8 slower than fp32)" in arm_line and "0.70x (slower)" in arm_line
    assert "slower" not in next(ln for ln in terminal.splitlines() if ln.startswith("openvino"))


def test_speedup_that_prints_as_1_00x_is_not_called_slower(tmp_path):
    benches = real_benches()
    arm = benches["arm"]
    arm["latency_ms"] = lat(1.0, 2.0)
    arm["reference_latency_ms"] = lat(0.996, 2.0)
    arm["speedup_vs_reference"] = 0.996
    md, _ = write_report(make_workspace(tmp_path / "ws", benches))
    assert md_row(md.read_text(), "arm")["speedup"] == "1.00x"


def test_gate_status_not_checked_is_rendered_with_reason(tmp_path):
    benches = real_benches()
    benches["jetson"]["gates"] = [
        {"name": "max_drop_points", "limit": 1.0, "value": 0.1, "passed": True, "status": "passed"},
        {"name": "max_latency_ms", "limit": 5.0, "value": None, "passed": True, "status": "not checked",
         "reason": "latency not measured here"},
    ]
    benches["openvino"]["gates"] = [{"name": "min_speedup_vs_reference", "limit": 9.0, "value": 2.8, "passed": False}]
    benches["openvino"]["passed"] = False
    md, page = (p.read_text() for p in write_report(make_workspace(tmp_path / "ws", benches)))
    jetson = md_row(md, "jetson")
    assert jetson["status"] == "pass (1 gate not checked)"
    assert jetson["gates"].startswith("not checked: max_latency_ms; 1 passed [")
    assert "jetson: gate max_latency_ms not checked: latency not measured here" in md
    assert md_row(md, "openvino")["gates"] == "failed: min_speedup_vs_reference"  # no status key: from "passed"
    assert md_row(md, "openvino")["status"] == "FAIL"
    assert "latency not measured here" in page


def test_html_table_wraps_instead_of_scrolling(report):
    _, page = report
    css = page[page.index("<style>") + 7:page.index("</style>")]
    rules = {sel.strip(): body for sel, body in re.findall(r"([^{}]+)\{([^}]*)\}", css)}
    nowrap = [sel for sel, body in rules.items() if "nowrap" in body]
    # only short figures and the halves of a size cell stay on one line; notes, runtimes and headers wrap
    assert nowrap and all(s.strip() in ("td.num", "span.nw") for sel in nowrap for s in sel.split(","))
    assert "max-width" in rules["td.note"]
    assert "width:100%" in rules["table"]
    assert page.count('<td class="note">') == 4
    # the long latency notes are footnotes below the table, not cells in it
    table = page[page.index('<table id="results">'):page.index("</table>")]
    assert "not on an ARM CPU" not in table and "not on an ARM CPU" in page


def test_no_negative_zero_points(tmp_path):
    assert points(-0.004, signed=True) == "+0.00 pts" and points(-0.0) == "0.00 pts"
    assert points(-0.006, signed=True) == "-0.01 pts" and points(0.1, signed=True) == "+0.10 pts"
    q = copy.deepcopy(QUANTIZE)
    q["int8"].update(top1=q["fp32"]["top1"], worst_class_drop_points=-0.001)
    q["drop_points"] = 0.0  # int8 matched fp32: the change is -0.0 before the fix
    table = quantize_table(q)
    assert "-0.00" not in table and "+0.00 pts" in table and "0.00 pts" in table
    md, page = (p.read_text() for p in write_report(make_workspace(tmp_path / "ws", quantize=q)))
    assert "-0.00" not in md and "-0.00" not in page and "+0.00 pts" in md


def test_compile_table_says_what_the_time_covers():
    result = {"status": "ok", "files": {"int8": "model.int8.xml"}, "sizes_bytes": {"int8": 857196}, "seconds": 1.3,
              "validation": {"agreement": 1.0, "emulated": False}}
    header = compile_table({"openvino": result}).splitlines()[0]
    assert "build + check" in header and "compile time" not in header


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("long_strings", [False, True])
def test_page_fits_1280px_without_horizontal_scroll(tmp_path, long_strings):
    benches = real_benches()
    if long_strings:  # the worst we expect: long runtime names, notes, gate lists and a remote board's name
        for b in benches.values():
            b["runtime"] += " with a rather long execution provider description"
            b["latency_note"] = "x " * 200
            b["gates"] = [{"name": f"gate_{i}_with_a_long_name", "limit": 1, "value": None, "passed": False,
                           "status": "inconclusive", "reason": "y " * 50} for i in range(3)]
            if b["speedup_vs_reference"] is not None:  # a noisy timing: the widest speed-up cell and status
                b["speedup_vs_reference"] = 0.7
                b["speedup_interval"] = [0.55, 12.34]
                b["noise"] = {"noisy": True, "reasons": ["z " * 50], "rounds": 20, "cores": 2,
                              "load_average_before": [3.1, 3, 3], "load_average_after": [3.2, 3, 3]}
    _, page = write_report(make_workspace(tmp_path / "ws", benches))
    probe = tmp_path / "probe.html"
    # The report has no scripts; the probe copy gets one that writes the page's scroll width into the DOM.
    probe.write_text(page.read_text().replace(
        "</body>", '<script>document.body.setAttribute("data-scroll", document.documentElement.scrollWidth + " " '
                   "+ document.documentElement.clientWidth)</script></body>"))
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    found = re.search(r'data-scroll="(\d+) (\d+)"', dom)
    assert found, dom[-2000:]
    scroll_width, client_width = map(int, found.groups())
    # clientWidth is the window less a vertical scrollbar: wider content than that means a horizontal scrollbar.
    assert scroll_width <= client_width <= 1280
