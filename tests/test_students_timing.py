"""Students chosen by measured latency: `edgekit students --target`, `edgekit distill --target --speedup`.

The teacher is the CIFAR-10 ResNet-9-style net (zoo/cifar_net.py: 1.9 M parameters, 114 M MACs at 32x32x3) with
random weights. The candidates: resnet_s_050 (the fast-at-small-inputs family: 0.15 M parameters, 12 M MACs, measured
3-4x faster than that teacher in OpenVINO int8 on one thread) and `wide_plain_test`, registered here: four 3x3 convs
of 128 channels at full resolution (0.45 G MACs, 4x the teacher's), slower than the teacher on any CPU, and quick to
export (a MobileNetV3 as the slow one would cost 20-30 s more to build on a busy machine). It has the most MACs, so
a choice of resnet_s_050 shows the rule takes the largest student that *meets* the requirement. A 1.5x requirement
separates the two by a wide margin at any machine load; the timing runs on one thread, which a busy 2-core machine
disturbs least.

Building the three int8 models is most of the cost (~10 s each on a busy 2-core machine), so the students test builds
and times them for real once, and the distill tests reuse that timing (`reused_timing`): they test the choice, its
error and what distill.json records, not the timing loop again.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import edgekit.distillation
import edgekit.student_registry
import edgekit.student_timing as st
from edgekit.cli import main
from tests.conftest import fashion_train_eval_npz, save_model

pytest.importorskip("openvino")

FAST, SLOW = "resnet_s_050", "wide_plain_test"
PATTERN = f"{FAST},{SLOW}"


def wide_plain(in_channels: int, num_classes: int, size: int) -> nn.Module:
    layers, cin = [], in_channels
    for _ in range(4):
        layers += [nn.Conv2d(cin, 128, 3, 1, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU()]
        cin = 128
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))


@pytest.fixture(scope="module", autouse=True)
def slow_student():
    edgekit.student_registry.register_student(SLOW, "test", 1.0, "4 full-resolution 3x3 convs, 128 wide", wide_plain)
    yield
    edgekit.student_registry._REGISTRY.pop(SLOW)


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from edgekit.zoo.cifar_net import cifar_net

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "cifar_net.pt2"
    return save_model(cifar_net(10), "exported_program", path, torch.zeros(2, 3, 32, 32))


@pytest.fixture(scope="module")
def timing_cache():
    """time_candidates, memoized by candidate names and targets, for the whole module."""
    real, cache, calls = st.time_candidates, {}, []

    def cached(candidates, targets, *args, **kwargs):
        key = (tuple(candidates), tuple(targets))
        if key not in cache:
            calls.append(key)
            cache[key] = real(candidates, targets, *args, **kwargs)
        return cache[key]

    mp = pytest.MonkeyPatch()
    mp.setattr(st, "time_candidates", cached)
    yield calls
    mp.undo()


@pytest.fixture(scope="module")
def overview(teacher, timing_cache):
    result = run_cli("students", PATTERN, "--teacher", teacher, "--target", "openvino", "--speedup", "1.5",
                     "--threads", "1", "--runs", "100", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def test_students_table_times_students_against_the_teacher(overview, timing_cache):
    data, log = overview
    assert data["input"] == [3, 32, 32] and data["classes"] == 10
    assert [r["name"] for r in data["students"]] == [FAST, SLOW]  # registration order
    assert data["students"][1]["macs"] > data["teacher"]["macs"] > data["students"][0]["macs"]
    (entry,) = data["timing"]["targets"]
    assert entry["target"] == "openvino" and entry["pair"] == "main" and entry["batch"] == 1
    assert entry["threads"] == 1 and entry["runs"] == 100 and entry["artifact"] == "model.int8.xml"
    assert entry["runtime"].startswith("OpenVINO")
    # Every candidate, the teacher included, timed in the same run, the same number of calls.
    assert set(entry["latency_ms"]) == {"teacher", FAST, SLOW}
    assert all(s["n"] == 100 for s in entry["latency_ms"].values())
    teacher_p50 = entry["latency_ms"]["teacher"]["p50"]
    assert data["teacher"]["latency"]["openvino"] == teacher_p50
    rows = {r["name"]: r for r in data["students"]}
    for name, row in rows.items():
        lat = row["latency"]["openvino"]
        assert lat["speedup"] == pytest.approx(teacher_p50 / entry["latency_ms"][name]["p50"])
        low, high = lat["speedup_interval"]  # 10 rounds of 10 calls: a 95 % interval exists
        assert 0 < low <= high
    measured = {k: round(v["p50"], 4) for k, v in entry["latency_ms"].items()}, entry["load"]
    assert rows[FAST]["latency"]["openvino"]["speedup"] > 1.5 and rows[FAST]["meets"] is True, measured
    assert rows[SLOW]["latency"]["openvino"]["speedup"] < 1.5 and rows[SLOW]["meets"] is False, measured
    assert data["chosen"] == FAST and data["requirement"] == {"speedup": 1.5, "budget_ms": None}
    assert "timing 3 int8 models, batch 1, 1 thread(s)" in log
    assert len(timing_cache) == 1


def test_students_table_prints_latency_and_speedup(overview):
    from edgekit.distill_report import students_table

    text = students_table(overview[0])
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("student"))
    for column in ("openvino p50", "vs teacher", "95 % interval", "meets"):
        assert column in header
    fast = next(line for line in lines if line.startswith(FAST))
    assert fast.startswith(f"{FAST} *") and fast.rstrip().endswith("yes") and " ms" in fast
    assert next(line for line in lines if line.startswith(SLOW)).rstrip().endswith("no")
    assert f"meeting >= 1.5x the teacher on every target: {FAST}" in text


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return fashion_train_eval_npz(tmp_path_factory.mktemp("students-data"), 64, 32)


@pytest.fixture
def reused_timing(overview, timing_cache, monkeypatch):
    """The students test's timing (built and timed once), and no export or teacher/student comparison in distill
    (test_distill.py covers those)."""
    monkeypatch.setattr(edgekit.distillation, "export_student", lambda *_: None)
    monkeypatch.setattr(edgekit.distillation, "compare", lambda *_: {"teacher": {}, "student": {}})
    return timing_cache


def distill_args(teacher, data, folder, *extra):
    return ["distill", "--teacher", teacher, "--data", data[0], "--eval", data[1], "--epochs", "1", "--batch", "16",
            "--out", folder / "student.pt2", "--json", *extra]


def test_distill_picks_the_largest_student_that_meets_the_speedup(teacher, data, tmp_path, reused_timing):
    result = run_cli(*distill_args(teacher, data, tmp_path, "--student", PATTERN, "--target", "openvino",
                                   "--speedup", "1.5"))
    assert result.exit_code == 0, result.output
    assert len(reused_timing) == 1, "the timing was reused, not run again"
    report = json.loads((tmp_path / "distill.json").read_text())
    choice = report["student_choice"]
    assert report["student"]["name"] == FAST == choice["chosen"] and choice["meets"] is True
    assert choice["targets"] == ["openvino"] and choice["requirement"] == {"speedup": 1.5, "budget_ms": None}
    assert choice["pattern"] == PATTERN
    assert {r["name"]: r["meets"] for r in choice["students"]} == {FAST: True, SLOW: False}
    assert choice["timing"][0]["latency_ms"]["teacher"]["p50"] == choice["teacher_p50_ms"]["openvino"]
    assert f"student: {FAST} by measured int8 latency" in result.stderr
    # The checkpoint carries the choice: a resumed run keeps the student without timing anything again.
    state = torch.load(tmp_path / "distill.ckpt", weights_only=True)
    assert state["run"]["student"] == FAST and state["run"]["student_choice"] == choice


def test_distill_none_meets_the_speedup(teacher, data, tmp_path, reused_timing):
    (tmp_path / "distill.json").write_text("{}")
    result = run_cli(*distill_args(teacher, data, tmp_path, "--student", PATTERN, "--target", "openvino",
                                   "--speedup", "1000"))
    assert result.exit_code == 2, result.output
    err = result.stderr.strip().splitlines()[-1]
    assert err.startswith("edgekit: error: no student matching") and ">= 1000x the teacher's speed on openvino" in err
    assert f"the fastest, {FAST}, runs openvino p50" in err and "lower --speedup" in err
    assert json.loads((tmp_path / "distill.json").read_text()) == {}, "nothing written"
    assert not (tmp_path / "distill.ckpt").exists()


def test_named_student_wins_and_is_checked(teacher, data, tmp_path, reused_timing, monkeypatch):
    """--student NAME with --speedup: that student is distilled even when it misses, with a warning."""
    real = st.time_candidates

    def slow_only(candidates, targets, *args, **kwargs):  # the shared timing, narrowed to the teacher and SLOW
        timing = real({"teacher": None, FAST: None, SLOW: None}, targets)
        entries = [{**e, "latency_ms": {k: v for k, v in e["latency_ms"].items() if k != FAST},
                    "speedup": {SLOW: e["speedup"][SLOW]}, "speedup_interval": {SLOW: e["speedup_interval"][SLOW]}}
                   for e in timing["targets"]]
        assert set(candidates) == {"teacher", SLOW}
        return {"targets": entries}

    monkeypatch.setattr(st, "time_candidates", slow_only)
    result = run_cli(*distill_args(teacher, data, tmp_path, "--student", SLOW, "--target", "openvino",
                                   "--speedup", "1.5"))
    assert result.exit_code == 0, result.output
    assert f"warning: {SLOW} does not meet >= 1.5x the teacher's speed on openvino" in result.stderr
    choice = json.loads((tmp_path / "distill.json").read_text())["student_choice"]
    assert choice["chosen"] == SLOW and choice["meets"] is False


@pytest.mark.parametrize("args, needle", [
    (["--target", "openvino"], "no requirement was given"),
    (["--speedup", "2"], "none was given"),
    (["--student", "resnet_s*"], "is a pattern"),
    (["--student", "nothing*", "--target", "openvino", "--speedup", "2"], "no student matches 'nothing*'"),
    (["--target", "nowhere", "--speedup", "2"], "unknown target 'nowhere'"),
    (["--target", "openvino", "--speedup", "-1"], "--speedup must be positive"),
])
def test_distill_latency_options_bad_input(teacher, data, tmp_path, args, needle):
    result = run_cli(*distill_args(teacher, data, tmp_path, *args))
    assert result.exit_code == 2, result.output
    assert needle in result.stderr.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_students_speedup_needs_a_target_and_a_teacher():
    result = run_cli("students", "--speedup", "2")
    assert result.exit_code == 2 and "none was given" in result.stderr
    result = run_cli("students", FAST, "--size", "32", "--target", "openvino", "--speedup", "2")
    assert result.exit_code == 2 and "no teacher was given" in result.stderr


def test_choice_rule_largest_that_meets_on_every_target():
    """The rule alone, on a made-up timing: most MACs among those meeting it on every target."""
    rows = [{"name": n, "params": p, "macs": m, "fits": f} for n, p, m, f in
            [("a", 1, 10, True), ("b", 2, 30, True), ("c", 3, 50, True), ("d", 4, 90, False)]]
    timing = {"targets": [
        {"target": "openvino", "pair": "main", "latency_ms": {k: {"p50": v} for k, v in
                                                             {"teacher": 1.0, "a": 0.2, "b": 0.4, "c": 0.45}.items()},
         "speedup": {"a": 5.0, "b": 2.5, "c": 2.2}, "speedup_interval": {}},
        {"target": "arm", "pair": "tflite", "latency_ms": {k: {"p50": v} for k, v in
                                                          {"teacher": 1.0, "a": 0.3, "b": 0.6, "c": 0.4}.items()},
         "speedup": {"a": 3.3, "b": 1.7, "c": 2.5}, "speedup_interval": {}},
    ]}
    two = st.Requirement(speedup=2.0)
    assert st.choose(rows, timing, two)["name"] == "c", "c meets 2x on both; b misses on arm:tflite"
    assert st.choose(rows, timing, st.Requirement(speedup=3.0))["name"] == "a"
    assert st.choose(rows, timing, st.Requirement(speedup=6.0)) is None
    assert st.choose(rows, timing, st.Requirement(budget_ms=0.5))["name"] == "c"
    assert st.choose(rows, timing, st.Requirement(speedup=2.0, budget_ms=0.35))["name"] == "a"
    annotated = {r["name"]: r for r in st.annotate(rows, timing, two)}
    assert set(annotated["c"]["latency"]) == {"openvino", "arm:tflite"}
    assert annotated["b"]["meets"] is False and annotated["d"]["meets"] is False and annotated["d"]["latency"] == {}
    assert st.parse_targets("openvino, arm:tflite") == [("openvino", "main"), ("arm", "tflite")]
