"""A speed-up with an error bar: the interval from the interleaved rounds, the noisy verdict, inconclusive gates,
and the same on a real compiled workspace (two benches back to back agree; a busy machine is called noisy)."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import edgekit.timing_stats
from edgekit.benchmarking import gates
from edgekit.board.timing import ROUND, load_between, load_snapshot
from edgekit.cli import main
from edgekit.timing_stats import assess, busy_reasons, median_interval, round_ratios

RUNS = ["--runs", "60", "--warmup", "5", "--warmup-seconds", "0.2"]  # 6 rounds: the fewest with a 95 % interval


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def paired(ratios: list[float], base: list[float] | None = None) -> dict:
    """Per-call timings whose round r has int8 calls of base[r] ms and reference calls ratios[r] times that."""
    base = base or [1.0] * len(ratios)
    return {"int8": [t for t in base for _ in range(ROUND)],
            "reference": [t * q for t, q in zip(base, ratios) for _ in range(ROUND)]}


# ---- the interval ---------------------------------------------------------------------------------------------

def test_rounds_are_rebuilt_from_call_order():
    timings = {"int8": [1.0] * 10 + [2.0] * 10 + [4.0] * 3, "reference": [3.0] * 10 + [4.0] * 10 + [6.0] * 3}
    assert round_ratios(timings) == [3.0, 2.0, 1.5]  # the last round is short (runs not a multiple of 10)


def test_known_round_ratios_give_the_order_statistic_interval():
    values = [float(v) for v in range(1, 21)]
    random.Random(0).shuffle(values)
    # n=20: P(Binomial(20, 1/2) <= 5) = 2.07 % <= 2.5 % < P(<= 6) = 5.77 %, so the 6th and 15th smallest
    assert median_interval(values) == [6.0, 15.0]
    assert median_interval([3.0, 1.0, 2.0, 6.0, 5.0, 4.0]) == [1.0, 6.0]  # n=6: 1/64 per side, min..max
    assert median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # 1/32 per side > 2.5 %: no 95 % interval
    out = assess(paired([1.8, 2.0, 2.2, 1.9, 2.1, 2.0, 2.05, 1.95, 2.0, 2.0]), None, 2)
    assert out["speedup_interval"] == pytest.approx([1.9, 2.1])  # n=10: the 2nd and 9th of the sorted ratios


def test_a_constant_ratio_has_zero_width_even_when_the_machine_drifts():
    # Every round 2.5x, while absolute times drift 4-fold: the pairing cancels it.
    out = assess(paired([2.5] * 20, base=[1.0 + 0.15 * r for r in range(20)]), None, 2)
    assert out["speedup_interval"] == pytest.approx([2.5, 2.5])
    assert out["noise"]["noisy"] is False and out["noise"]["rounds"] == 20
    assert out["latency_p50_interval_ms"][0] < out["latency_p50_interval_ms"][1]  # the latency itself drifted


def test_wide_interval_or_too_few_rounds_or_busy_machine_is_noisy():
    wide = assess(paired([1.5, 2.5, 1.6, 2.4, 1.7, 2.3, 2.0, 2.0]), None, 2)
    assert wide["noise"]["noisy"] and "reaches further than +-10 %" in wide["noise"]["reasons"][0]
    few = assess(paired([2.0] * 5), None, 2)
    assert few["speedup_interval"] is None and few["noise"]["noisy"] and "too few" in few["noise"]["reasons"][0]
    quiet = {"load_average_before": [0.3, 0.2, 0.2], "load_average_after": [1.9, 0.5, 0.3], "others_cpu_share": 0.04}
    assert busy_reasons(quiet, 2) == []  # the load after includes the bench's own threads: not judged
    # the load average counts edgekit's own work just before timing: judged only where no CPU share was read
    assert busy_reasons({**quiet, "load_average_before": [2.6, 1, 1]}, 2) == []
    no_share = {k: v for k, v in quiet.items() if k != "others_cpu_share"}
    assert "load average 1.60" in busy_reasons({**no_share, "load_average_before": [1.6, 1, 1]}, 2)[0]
    assert "used 40 %" in busy_reasons({**quiet, "others_cpu_share": 0.4}, 2)[0]
    busy = assess(paired([2.0] * 20), {**quiet, "others_cpu_share": 0.4}, 2)
    assert busy["speedup_interval"] == [2.0, 2.0] and busy["noise"]["noisy"]
    # Every round's medians are 2x apart, but in every other round the machine slowed down and 4 reference calls
    # ran oddly fast: the p50s over all calls (2 ms / 2 ms) say 1.00x, outside the rounds' [2, 2].
    drift = assess({"int8": ([1.0] * 10 + [3.0] * 10) * 10, "reference": ([2.0] * 10 + [6.0] * 6 + [0.5] * 4) * 10},
                   None, 2)
    assert drift["speedup_interval"] == [2.0, 2.0] and "1.00x, lies outside" in drift["noise"]["reasons"][0]


def test_load_snapshots_see_another_process_spin():
    before = load_snapshot()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    load = load_between(before, load_snapshot())
    assert len(load["load_average_before"]) == 3
    if load["others_cpu_share"] is not None:  # Linux: /proc/stat
        assert load["others_cpu_share"] > 0.25 / (os.cpu_count() or 1)  # it had one core, at least a quarter of it


# ---- gates ----------------------------------------------------------------------------------------------------

def timed(noisy: bool) -> dict:
    return {"accuracy": {}, "runtime": "OpenVINO", "latency_ms": {"p50": 2.0}, "latency_p50_interval_ms": [1.6, 2.4],
            "speedup_vs_reference": 2.0, "speedup_interval": [1.5, 2.5],
            "noise": {"noisy": noisy, "reasons": ["busy machine"] if noisy else []}}


@pytest.mark.parametrize("noisy, strict, limit, status", [
    (True, False, 2.2, "inconclusive"),  # inside [1.5, 2.5]
    (True, True, 2.2, "failed"),
    (True, False, 1.8, "inconclusive"),  # inside, on the passing side: not a pass either
    (True, True, 1.8, "failed"),
    (True, False, 3.0, "failed"),  # outside: the measurement is clear enough
    (True, True, 1.0, "passed"),
    (False, False, 2.2, "failed"),  # quiet: judged on the figure
    (False, True, 1.8, "passed"),
])
def test_speedup_gate_inside_a_noisy_interval_is_inconclusive(noisy, strict, limit, status):
    (gate,) = gates(timed(noisy), None, None, limit, strict)
    assert gate["status"] == status
    assert gate["passed"] == {"passed": True, "failed": False, "inconclusive": None}[status]
    if status == "inconclusive" or (noisy and strict and 1.5 <= limit <= 2.5):
        assert "inside the 95 % interval" in gate["reason"]


def test_latency_gate_uses_the_latency_interval():
    (inside,) = gates(timed(True), None, 2.3, None)
    (outside,) = gates(timed(True), None, 1.5, None)
    (strict,) = gates(timed(True), None, 2.3, None, strict_timing=True)
    assert (inside["status"], outside["status"], strict["status"]) == ("inconclusive", "failed", "failed")


# ---- on a real compiled workspace -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def openvino_ws(tmp_path_factory, quantized_workspace):
    pytest.importorskip("openvino")
    ws = tmp_path_factory.mktemp("noise") / "ws"
    shutil.copytree(quantized_workspace, ws)
    result = invoke("compile", "--target", "openvino", "--workdir", ws)
    assert result.exit_code == 0, result.output
    return ws


def bench_json(ws, *extra) -> tuple[dict, str]:
    result = invoke("bench", "--target", "openvino", "--workdir", ws, *RUNS, *extra)
    assert result.exit_code == 0, result.output
    return json.loads((ws / "targets" / "openvino" / "bench.json").read_text()), result.stdout


def test_two_back_to_back_benches_have_overlapping_intervals(openvino_ws):
    (a, _), (b, table) = bench_json(openvino_ws), bench_json(openvino_ws)
    (lo1, hi1), (lo2, hi2) = a["speedup_interval"], b["speedup_interval"]
    assert max(lo1, lo2) <= min(hi1, hi2), (a["speedup_interval"], b["speedup_interval"])
    noise = b["noise"]
    assert noise["rounds"] == 6 and len(noise["load_average_before"]) == 3 and len(noise["load_average_after"]) == 3
    assert f"x ({lo2:.2f}-{hi2:.2f}" in table and "1-min load average" in table  # the cell and the line below


def test_a_busy_machine_is_marked_noisy(openvino_ws):
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.3)
        result, table = bench_json(openvino_ws)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert result["noise"]["noisy"], result["noise"]
    assert any(r.startswith("busy machine") for r in result["noise"]["reasons"]), result["noise"]
    assert re.search(r"pass \(([^)]*; )?noisy", table) and "NOISY: busy machine" in table


def test_inconclusive_gate_passes_the_run_and_strict_timing_fails_it(openvino_ws, monkeypatch):
    # A noisy verdict whose interval holds any limit, to follow the CLI's exit code through (the timing is real).
    real = edgekit.timing_stats.assess

    def noisy(timings, load, cores):
        out = real(timings, load, cores)
        out.update(speedup_interval=[0.0, 1e9], latency_p50_interval_ms=[0.0, 1e9])
        out["noise"].update(noisy=True, reasons=["forced by the test"])
        return out

    monkeypatch.setattr(edgekit.timing_stats, "assess", noisy)
    gates_given = ["--min-speedup", "1", "--max-latency-ms", "1000"]
    result, table = bench_json(openvino_ws, *gates_given)
    assert [g["status"] for g in result["gates"]] == ["inconclusive", "inconclusive"] and result["passed"] is True
    assert re.search(r"pass \(([^)]*; )?noisy; 2 gates inconclusive\)", table), table  # maybe "int8 slower" first
    strict = invoke("bench", "--target", "openvino", "--workdir", openvino_ws, *RUNS, *gates_given, "--strict-timing")
    assert strict.exit_code == 1, strict.output
    assert re.search(r"FAIL \(([^)]*; )?noisy\)", strict.stdout) and "failed: max_latency_ms_p50, min_speedup_vs_reference" in strict.stdout
