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
