"""benchmarks/results_report.py judges the labelled ImageNet goals: McNemar's exact test and the pass/fail lines."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import results_report  # noqa: E402


@pytest.mark.parametrize("b, c, p", [(0, 0, 1.0), (0, 6, 2 / 64), (3, 3, 1.0), (1, 9, 2 * 11 / 1024)])
def test_mcnemar_exact_two_sided(b, c, p):
    assert results_report.mcnemar_p(b, c) == pytest.approx(p)
    assert results_report.mcnemar_p(c, b) == pytest.approx(p)  # symmetric in who is ahead


def rows(agreement: float, anchor_ahead: int) -> dict:
    ref = {"name": results_report.REFERENCE, "top1": 0.88, "p50_ms": 30.0}
    ek = {"name": results_report.EK_OV, "top1": 0.878, "agreement": agreement, "p50_ms": 3.0,
          "vs_anchors": {results_report.NNCF: {"only_this_right": 0, "only_other_right": anchor_ahead}}}
    nncf = {"name": results_report.NNCF, "top1": 0.88, "p50_ms": 3.1}
    return {r["name"]: r for r in (ref, ek, nncf)}


def test_labelled_goals_pass_and_fail_on_the_numbers():
    ok = {goal: met for goal, met, _ in results_report.labelled_goals(rows(agreement=0.992, anchor_ahead=2))}
    assert all(ok.values()) and len(ok) == 3
    bad = {goal: met for goal, met, _ in results_report.labelled_goals(rows(agreement=0.985, anchor_ahead=8))}
    assert [met for goal, met in bad.items() if "agreement" in goal] == [False]  # 98.5 % < 99 %
    assert [met for goal, met in bad.items() if "McNemar" in goal] == [False]  # 8 vs 0: p = 0.008
    assert [met for goal, met in bad.items() if "NNCF" in goal and "p50" in goal] == [True]


def test_the_nncf_latency_verdict_shows_the_round_by_round_spread():
    table = rows(agreement=0.992, anchor_ahead=0)
    table[results_report.EK_OV]["p50_rounds_ms"] = [3.0, 3.3, 2.7, 3.0]
    table[results_report.NNCF]["p50_rounds_ms"] = [3.0, 3.0, 3.0, 2.5]  # ratios 1.0, 1.1, 0.9, 1.2
    detail = next(d for goal, _, d in results_report.labelled_goals(table) if "NNCF" in goal and "p50" in goal)
    assert detail.endswith("round by round 1.05x, middle half 0.97-1.12x over 4 rounds")
    del table[results_report.NNCF]["p50_rounds_ms"]  # a run from before rounds were recorded: no spread
    detail = next(d for goal, _, d in results_report.labelled_goals(table) if "NNCF" in goal and "p50" in goal)
    assert detail == "3.000 vs 3.100 ms (0.97x)"


def test_memory_goals_read_gnu_time_and_judge_each_size():
    import quantize_memory

    report = ("\tElapsed (wall clock) time (h:mm:ss or m:ss): 2:57.31\n"
              "\tMaximum resident set size (kbytes): 1757236\n")
    assert quantize_memory.time_v(report) == (1757236.0, pytest.approx(177.31))
    assert quantize_memory.time_v(report.replace("2:57.31", "1:02:03"))[1] == pytest.approx(3723)
    run = {"cores": 2, "rows": [{"images": 300, "peak_rss_kb": 1757236.0, "wall_s": 177.3},
                                {"images": 1000, "peak_rss_kb": 1960000.0, "wall_s": 336.0}]}
    verdicts = [(goal, met) for goal, met, _ in quantize_memory.memory_goals(run)]
    assert verdicts == [("peak RSS <= 2 GB with 300 calibration images", True),
                        ("wall <= 3 min with 300 on 2 cores", True),
                        ("peak RSS <= 2 GB with 1,000 calibration images", False)]  # 1.87 GiB = 2.007 GB: over
