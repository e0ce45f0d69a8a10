"""`edgekit bench` and `edgekit report`: honest latency labels, gates, JSON schema, bad input, the HTML."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from edgekit.cli import main
from tests.conftest import compile_all

FAST = ["--runs", "20", "--warmup", "2", "--warmup-seconds", "0.05", "--threads", "1"]


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, quantized_workspace):
    return compile_all(tmp_path_factory.mktemp("bench") / "ws", quantized_workspace)


@pytest.fixture(scope="module")
def benched(compiled):
    result = invoke("bench", "--target", "all", "--workdir", compiled, "--json", "--max-drop", "100", *FAST)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_bench_json_schema_and_labels(benched, compiled):
    assert set(benched) == {"openvino", "arm", "jetson"}
    for name, r in benched.items():
        on_disk = json.loads((compiled / "targets" / name / "bench.json").read_text())
        assert on_disk == r
        for key in ("target", "emulated", "latency_ms", "reference_latency_ms", "speedup_vs_reference", "accuracy",
                    "gates", "host_proxy", "environment"):
            assert key in r, (name, key)
        assert {"top1", "reference_top1", "agreement"} <= set(r["accuracy"])
        assert 0 <= r["accuracy"]["top1"] <= 1 and r["accuracy"]["agreement"] >= 0.9
        assert r["accuracy"]["top5"] >= r["accuracy"]["top1"], "10 classes: top-5 reported"
        assert r["environment"]["cores"] >= 1 and "onnxruntime" in r["environment"]["versions"]
        assert r["gates"] == [{"name": "max_drop_points", "limit": 100.0, "value": r["gates"][0]["value"], "passed": True}]
    # Never an emulated latency: jetson here has no TensorRT.
    assert benched["jetson"]["emulated"] and benched["jetson"]["latency_ms"] is None
    assert "not measured" in benched["jetson"]["latency_note"]
    # The arm artifact timed on x86 is a host proxy, not ARM latency.
    assert benched["arm"]["host_proxy"] is True and benched["arm"]["latency_ms"]["n"] == 20
    ov = benched["openvino"]
    assert ov["host_proxy"] is False and ov["environment"]["precision"] == "f32"
    lat = ov["latency_ms"]
    assert lat["p50"] <= lat["p90"] <= lat["p99"] and lat["std"] >= 0
    assert ov["speedup_vs_reference"] == pytest.approx(ov["reference_latency_ms"]["p50"] / lat["p50"])


def test_failed_gate_exits_1_and_says_which(compiled):
    result = invoke("bench", "--target", "arm", "--workdir", compiled, "--min-speedup", "1000", "--max-drop", "100", *FAST)
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "failed: min_speedup_vs_reference" in result.stdout
    assert "gates failed for arm" in result.stderr


def test_latency_gate_on_emulated_target_fails_with_reason(compiled):
    result = invoke("bench", "--target", "jetson", "--workdir", compiled, "--max-latency-ms", "1000", "--json", *FAST)
    assert result.exit_code == 1
    gate = json.loads(result.stdout)["jetson"]["gates"][0]
    assert gate["passed"] is False and gate["value"] is None and "not measured" in gate["reason"]


@pytest.mark.parametrize("args,needle", [
    (["--runs", "0"], "--runs must be at least 1"),
    (["--max-drop", "-1"], "--max-drop must not be negative"),
    (["--min-speedup", "-2"], "--min-speedup must not be negative"),
    (["--target", "armm"], "did you mean 'arm'"),
])
def test_bad_input(args, needle, compiled):
    result = invoke("bench", "--workdir", compiled, *args)
    assert result.exit_code == 2 and needle in result.stderr and "Traceback" not in result.output


def test_bench_before_compile(quantized_workspace, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(quantized_workspace, ws)
    result = invoke("bench", "--target", "openvino", "--workdir", ws)
    assert result.exit_code == 2 and "run `edgekit compile --target openvino" in result.stderr


def test_eval_classes_must_match(compiled, tmp_path):
    from tests.conftest import write_pngs
    import numpy as np

    write_pngs(tmp_path / "ev", np.zeros((2, 28, 28), np.uint8), np.array([0, 1]), ["a", "b"])
    result = invoke("bench", "--workdir", compiled, "--eval", tmp_path / "ev", *FAST)
    assert result.exit_code == 2 and "2 classes but the model outputs 10" in result.stderr


def test_report_md_and_html(benched, compiled):
    result = invoke("report", "--workdir", compiled)
    assert result.exit_code == 0, result.output
    md = (compiled / "report.md").read_text()
    page = (compiled / "report.html").read_text()
    for name in ("openvino", "arm", "jetson"):
        assert f"| {name} |" in md and f"<td>{name}</td>" in page
    assert "emulated (accuracy only)" in md and "host proxy" in md and "arm (host proxy)" in page
    # openvino and arm were timed, jetson was not; arm's .tflite pair is a point too where the tflite extra wrote it
    tflite = json.loads((compiled / "targets" / "arm" / "bench.json").read_text()).get("variants", {})
    assert page.count('class="point"') == 2 + len(tflite), "openvino, arm (and its .tflite pair) timed; jetson not"
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(benched, compiled, tmp_path):
    invoke("report", "--workdir", compiled)
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (compiled / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    assert '<table id="results">' in dom and "<circle" in dom and "<td>openvino</td>" in dom
