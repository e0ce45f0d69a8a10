"""`edgekit bench` and `edgekit report`: honest latency labels, gates, JSON schema, bad input, the HTML."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

import edgekit.benchmarking
from edgekit.cli import main
from edgekit.data import open_images
from tests.conftest import compile_all

FAST = ["--runs", "20", "--warmup", "2", "--warmup-seconds", "0.05", "--threads", "1"]


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, quantized_workspace):
    return compile_all(tmp_path_factory.mktemp("bench") / "ws", quantized_workspace)


# label -> what bench measured before summarizing it (logits, raw per-call timings), to recompute bench.json from.
RAW: dict[str, dict] = {}


@pytest.fixture(scope="module")
def benched(compiled):
    measure = edgekit.benchmarking._Here.measure

    def recording(self, *args, **kwargs):
        run = measure(self, *args, **kwargs)
        RAW[inspect.signature(measure).bind(self, *args, **kwargs).arguments["label"]] = run
        return run

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(edgekit.benchmarking._Here, "measure", recording)
        result = invoke("bench", "--target", "all", "--workdir", compiled, "--json", "--max-drop", "100", *FAST)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_bench_json_schema_and_labels(benched, compiled):
    assert set(benched) == {"openvino", "arm", "jetson"}
    manifest = json.loads((compiled / "manifest.json").read_text())
    labels = np.asarray(open_images(manifest["eval_data"]["path"], "eval").labels)
    for name, r in benched.items():
        on_disk = json.loads((compiled / "targets" / name / "bench.json").read_text())
        assert on_disk == r
        for key in ("target", "emulated", "latency_ms", "reference_latency_ms", "speedup_vs_reference", "accuracy",
                    "gates", "host_proxy", "environment"):
            assert key in r, (name, key)
        assert {"top1", "reference_top1", "agreement"} <= set(r["accuracy"])
        # Every figure recomputed from the logits bench measured and the eval labels.
        int8, ref = RAW[name]["outputs"]
        top1, ref_top1 = np.mean(int8.argmax(1) == labels), np.mean(ref.argmax(1) == labels)
        assert r["accuracy"]["top1"] == pytest.approx(top1) and r["accuracy"]["reference_top1"] == pytest.approx(ref_top1)
        assert r["accuracy"]["top5"] == pytest.approx(np.mean((np.argsort(-int8, 1)[:, :5] == labels[:, None]).any(1)))
        agreement = np.mean(int8.argmax(1) == ref.argmax(1))
        assert r["accuracy"]["agreement"] == pytest.approx(agreement) and agreement >= 0.9
        assert r["environment"]["cores"] == os.cpu_count() and "onnxruntime" in r["environment"]["versions"]
        assert r["gates"] == [{"name": "max_drop_points", "limit": 100.0, "value": pytest.approx(100 * (ref_top1 - top1)),
                               "status": "passed", "passed": True}]
    # Never an emulated latency: jetson here has no TensorRT.
    assert benched["jetson"]["emulated"] and benched["jetson"]["latency_ms"] is None
    assert "not measured" in benched["jetson"]["latency_note"]
    # The arm artifact timed on x86 is a host proxy, not ARM latency.
    assert benched["arm"]["host_proxy"] is True and benched["arm"]["latency_ms"]["n"] == 20
    ov = benched["openvino"]
    assert ov["host_proxy"] is False and ov["environment"]["precision"] == "f32"
    lat = ov["latency_ms"]
    for name in ("openvino", "arm"):  # the percentiles of the raw per-call timings, int8 and reference alike
        for key, which in (("latency_ms", "int8"), ("reference_latency_ms", "reference")):
            ms, got = np.asarray(RAW[name]["timings"][which]), benched[name][key]
            assert got["n"] == len(ms) == 20
            assert [got[q] for q in ("p50", "p90", "p99")] == pytest.approx(np.percentile(ms, [50, 90, 99]).tolist())
            assert got["mean"] == pytest.approx(ms.mean()) and got["std"] == pytest.approx(ms.std())
    assert ov["speedup_vs_reference"] == pytest.approx(ov["reference_latency_ms"]["p50"] / lat["p50"])


def test_failed_gate_exits_1_and_says_which(compiled):
    result = invoke("bench", "--target", "arm", "--workdir", compiled, "--min-speedup", "1000", "--max-drop", "100", *FAST)
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "failed: min_speedup_vs_reference" in result.stdout
    assert "gates failed for arm" in result.stderr


def test_min_agreement_gate_is_the_share_of_images_where_int8_answers_as_fp32(compiled):
    """--min-agreement gates on agreement with the fp32 reference (labels or not): passed at the measured value,
    failed just above it, exit 1 naming the gate."""
    result = invoke("bench", "--target", "arm", "--workdir", compiled, "--json", *FAST)
    measured = 100 * json.loads(result.stdout)["arm"]["accuracy"]["agreement"]
    assert 90 <= measured < 100, "the trained tiny model's int8 disagrees with fp32 on a few images"
    at = invoke("bench", "--target", "arm", "--workdir", compiled, "--min-agreement", measured, "--json", *FAST)
    assert at.exit_code == 0, at.output
    assert json.loads(at.stdout)["arm"]["gates"] == [{"name": "min_agreement_pct", "limit": measured,
                                                       "value": pytest.approx(measured), "status": "passed",
                                                       "passed": True}]
    above = invoke("bench", "--target", "arm", "--workdir", compiled, "--min-agreement", min(measured + 0.01, 100), *FAST)
    assert above.exit_code == 1 and "failed: min_agreement_pct" in above.stdout


def test_latency_gate_on_emulated_target_is_not_checked(compiled):
    """Jetson without TensorRT has no latency: its latency gate is "not checked" (shown, neither pass nor failure),
    and the exit code is left to the gates that can be measured."""
    result = invoke("bench", "--target", "jetson", "--workdir", compiled, "--max-latency-ms", "50",
                    "--max-drop", "100", "--json", *FAST)
    assert result.exit_code == 0, result.output
    latency, drop = json.loads(result.stdout)["jetson"]["gates"][::-1]
    assert latency["status"] == "not checked" and latency["value"] is None and "emulating TensorRT" in latency["reason"]
    assert drop["status"] == "passed" and "not checked" in invoke(
        "bench", "--target", "jetson", "--workdir", compiled, "--max-latency-ms", "50", *FAST).stdout


def test_bench_reuses_compile_outputs_only_for_the_same_images(compiled):
    """Accuracy comes from compile's check when the eval set is the workspace's own; naming the same images with
    --eval makes bench evaluate them itself, with the same result."""
    reused = invoke("bench", "--target", "arm", "--workdir", compiled, "--json", *FAST)
    assert reused.exit_code == 0 and "accuracy from compile's check" in reused.stderr
    manifest = json.loads((compiled / "manifest.json").read_text())
    fresh = invoke("bench", "--target", "arm", "--workdir", compiled, "--json",
                   "--eval", manifest["eval_data"]["path"], *FAST)
    assert fresh.exit_code == 0 and "accuracy from compile's check" not in fresh.stderr
    a, b = json.loads(reused.stdout)["arm"]["accuracy"], json.loads(fresh.stdout)["arm"]["accuracy"]
    assert a == pytest.approx(b)


@pytest.mark.parametrize("args,needle", [
    (["--runs", "0"], "--runs must be at least 1"),
    (["--max-drop", "-1"], "--max-drop must not be negative"),
    (["--min-speedup", "-2"], "--min-speedup must not be negative"),
    (["--min-agreement", "101"], "--min-agreement is a percentage above 0 and at most 100"),
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


@pytest.mark.parametrize("target,role", [("openvino", "int8"), ("openvino", "fp32"), ("arm", "int8"), ("arm", "fp32")])
def test_a_bound_call_runs_the_same_inference_as_the_full_call(compiled, target, role):
    """bench times runner.bind(x)() (the runtime's inference on an input already handed over, as benchmark_app and
    onnxruntime_perf_test time it): it must compute what runner(x) computes, on x, at batch 1 and at 4."""
    from edgekit.data import Preprocess
    from edgekit.targets import get_target

    manifest = json.loads((compiled / "manifest.json").read_text())
    pre = Preprocess.from_dict(manifest["preprocess"])
    images = next(open_images(manifest["eval_data"]["path"], "eval").batches(pre, 4))
    runner = get_target(target).runner(compiled / "targets" / target, role, 1)
    for x in (images[:1], images):
        x = np.ascontiguousarray(x)
        expected = runner(x)
        call = runner.bind(x)
        result = call()
        if hasattr(runner, "session"):  # ONNX Runtime: the outputs stay in the I/O binding the call ran
            got = call.binding.copy_outputs_to_cpu()[0]
        else:  # OpenVINO: the infer request's results
            got = np.asarray(result[runner.compiled_for(len(x)).outputs[0]])
        np.testing.assert_allclose(got.reshape(len(x), -1), expected, rtol=1e-5, atol=1e-5)


def test_interleaved_latency_times_the_bound_call_only():
    """The timed loop calls what bind returned, after one bind per runner, never the runner's full call
    (conversions in, outputs out)."""
    from edgekit.board.timing import interleaved_latency

    calls = {"bind": 0, "bound": 0}

    class Runner:
        def bind(self, x):
            assert x.dtype == np.float32 and x.flags.c_contiguous
            calls["bind"] += 1
            return lambda: calls.__setitem__("bound", calls["bound"] + 1)

        def __call__(self, x):
            raise AssertionError("bench does not time the full call")

    times = interleaved_latency({"a": Runner(), "b": Runner()}, np.zeros((1, 3, 4, 4), np.float64), 25, 3, 0.0)
    assert len(times["a"]) == len(times["b"]) == 25
    assert calls == {"bind": 2, "bound": 2 * (25 + 3)}
