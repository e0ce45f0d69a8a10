"""Accuracy-aware fallback (`--max-drop PTS` or `--min-agreement PCT`): keep the most sensitive layers in float until
the budget holds.

Two budgets, one measure each (Budget), both in points lost against the fp32 reference:
- `--max-drop PTS`: top-1 points lost with labels, else disagreement (100 x (1 - top-1 agreement)), the same measure
  bench's `--max-drop` gate uses;
- `--min-agreement PCT`: disagreement always, labels or not, at most 100 - PCT points: how often int8's top-1 is not
  fp32's. The fidelity budget for users who ship the int8 model as a stand-in for the fp32 one (its answers, not
  only its accuracy, must match), and the one that sees regressions a top-1 average hides (as many images newly
  right as newly wrong).
Given together, both limits must hold (the measure is then the larger share of its limit either one uses).

The search is greedy along the sensitivity ranking, one layer at a time, and each target runs it with its own build
(its own way of leaving a layer in float) and its own runtime, so the budget is checked on the artifact that ships.

Before any layer is kept in float, the accuracy-recovery methods (recovery.py: cross-layer equalization, then
AdaRound where aimet-onnx is installed) are tried in turn on an adjusted copy of the graph, every layer still int8
(`recovery_first`); the float search then starts from the best of them.

Not meeting the budget is not an error: the artifacts are still written (the last attempt, with the most
layers in float) and the result says `"met": false`; the CLI prints a warning, and `bench --max-drop` /
`--min-agreement` is the gate that fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import metrics
from .errors import EdgekitError


@dataclass(frozen=True)
class Budget:
    """How many points int8 may lose, and in what: "top1" (--max-drop; disagreement without labels),
    "agreement" (--min-agreement), or "both" (the two flags together: both limits must hold). A "both" budget
    measures the share of its limits used, the larger of disagreement / (100 - min_agreement) and
    top-1 drop / max_drop, so `points` is 1.0 and the search needs one number, as for the others."""

    points: float
    measure: str = "top1"
    max_drop: float | None = None  # "both": the two limits
    min_agreement: float | None = None

    @classmethod
    def from_options(cls, max_drop: float | None, min_agreement: float | None) -> "Budget | None":
        """The budget the user asked for, None without one; bad values are exit 2 with the reason."""
        if max_drop is not None and max_drop < 0:
            raise EdgekitError(f"--max-drop must be 0 or more points, got {max_drop}", "e.g. --max-drop 0.5")
        if min_agreement is not None:
            check_min_agreement(min_agreement)
        if max_drop is not None and min_agreement is not None:
            return cls(1.0, "both", max_drop, min_agreement)
        if max_drop is not None:
            return cls(max_drop)
        if min_agreement is not None:
            return cls(round(100.0 - min_agreement, 6), "agreement")
        return None

    def limits(self) -> tuple[float | None, float | None]:
        """(--max-drop, --min-agreement) as the user gave them, None for the one not given."""
        if self.measure == "both":
            return self.max_drop, self.min_agreement
        return (self.points, None) if self.measure == "top1" else (None, round(100 - self.points, 6))

    @property
    def option(self) -> str:
        return {"agreement": "--min-agreement", "top1": "--max-drop"}.get(self.measure, "--max-drop/--min-agreement")

    @property
    def flag(self) -> str:
        max_drop, min_agreement = self.limits()
        return " ".join(([f"--min-agreement {min_agreement:g}"] if min_agreement is not None else [])
                        + ([f"--max-drop {max_drop:g}"] if max_drop is not None else []))

    @property
    def unit(self) -> str:
        """What the measure is, for log lines."""
        return {"agreement": "disagreement", "top1": "drop"}.get(self.measure, "budget use")

    def amount(self, value: float) -> str:
        """A value of the measure, for log lines: points, or for "both" a share of the limits (1 = at the limit)."""
        return f"{value:.2f} of the limits" if self.measure == "both" else f"{value:.2f} pts"

    def drop(self, logits: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> float:
        if self.measure == "both":
            return self._share(drop_points(logits, reference, None), drop_points(logits, reference, labels))
        return drop_points(logits, reference, labels if self.measure == "top1" else None)

    def validation_drop(self, validation: dict) -> float:
        disagreement = round(100 * (1 - validation["agreement"]), 4)
        if self.measure == "both":
            return self._share(disagreement, validation_drop(validation))
        return disagreement if self.measure == "agreement" else validation_drop(validation)

    def _share(self, disagreement: float, top1_drop: float) -> float:
        """The larger share of its limit either measure uses: at most 1.0 when both hold."""
        def share(value: float, limit: float) -> float:
            return value / limit if limit > 0 else (0.0 if value <= 0 else float("inf"))

        return round(max(share(disagreement, 100 - self.min_agreement), share(top1_drop, self.max_drop)), 4)

    def key(self) -> float | list:
        """For the stage keys: a --max-drop budget keys as the bare number, as before --min-agreement existed."""
        if self.measure == "both":
            return ["min_agreement", self.min_agreement, "max_drop", self.max_drop]
        return self.points if self.measure == "top1" else ["min_agreement", 100 - self.points]


def check_min_agreement(pct: float) -> None:
    """--min-agreement, as a budget (quantize, compile) or a gate (bench): a percentage of eval images."""
    if not 0 < pct <= 100:
        raise EdgekitError(f"--min-agreement is a percentage above 0 and at most 100, got {pct}",
                           "e.g. --min-agreement 99")


def drop_points(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> float:
    if labels is not None:
        return round(100 * (metrics.topk(reference, labels) - metrics.topk(logits, labels)), 4)
    return round(100 * (1 - metrics.agreement(logits, reference)), 4)


def validation_drop(validation: dict) -> float:
    """The same measure from a compile validation record (top-1 of int8 and its fp32 reference, or agreement)."""
    if "top1" in validation:
        return round(100 * (validation["reference_top1"] - validation["top1"]), 4)
    return round(100 * (1 - validation["agreement"]), 4)


def search(build: Callable[[list[str]], float], ranking: list[str], budget: Budget,
           start: list[str] | None = None, start_drop: float | None = None) -> dict:
    """`build(float_layers)` makes the artifact with those layers in float and returns its drop in `budget`'s measure.
    The artifact left behind is the last one built. `start_drop`: the drop of the artifact already built with the
    `start` layers, which is then not built again."""
    kept = list(start or [])
    drop = build(kept) if start_drop is None else start_drop
    steps = [{"float_layers": list(kept), "drop_points": drop}]
    candidates = [n for n in ranking if n not in kept]
    while drop > budget.points and candidates:
        kept.append(candidates.pop(0))
        drop = build(kept)
        steps.append({"float_layers": list(kept), "drop_points": drop})
    return {"budget_points": budget.points, "measure": budget.measure, "flag": budget.flag, "met": drop <= budget.points,
            "float_layers": kept, "drop_points": drop, "initial_drop_points": steps[0]["drop_points"], "steps": steps}


def prune(build: Callable[[list[str]], float], kept: list[str], candidates: list[str], budget: Budget,
          drop: float) -> dict:
    """Give each of `candidates` (layers in `kept`, in the order to try) back to int8, one at a time, keeping every
    change after which the budget still holds. `build` and `drop` are as in `search`; the folder is left holding
    the artifact of the returned layers (built once more when the last trial was not kept)."""
    steps, last = [], list(kept)
    for layer in candidates:
        trial = [n for n in kept if n != layer]
        d = build(trial)
        last = trial
        steps.append({"int8_again": layer, "drop_points": d, "kept": d <= budget.points})
        if d <= budget.points:
            kept, drop = trial, d
    if last != kept:
        drop = build(kept)
    return {"float_layers": list(kept), "drop_points": drop, "steps": steps}


def give_back(record: dict, build: Callable[[list[str]], float], candidates: list[str], ranking: list[str],
              budget: Budget) -> list[str]:
    """`prune` on a met `search` record: `candidates` (of its float layers) tried back in int8 least sensitive first
    (the end of `ranking`), the record updated to the result ("pruned": the steps). Returns the layers given back."""
    order = {n: i for i, n in enumerate(ranking)}
    tries = sorted((n for n in candidates if n in record["float_layers"]), key=lambda n: order.get(n, -1),
                   reverse=True)
    pruned = prune(build, record["float_layers"], tries, budget, record["drop_points"])
    record.update(float_layers=pruned["float_layers"], drop_points=pruned["drop_points"], pruned=pruned["steps"])
    return [s["int8_again"] for s in pruned["steps"] if s["kept"]]


def recovery_first(attempt: Callable[[str], float | None], methods, budget: Budget, drop: float, log=print) -> dict:
    """Try each recovery method in order (`attempt(method)` builds the all-int8 artifact from that method's adjusted
    graph and returns its drop, or None when the method cannot run here) until one meets `budget`. The record says
    which one to keep ("chosen": None when none beat `drop`, the all-int8 drop without recovery)."""
    tried, best, best_drop = [], None, drop
    for method in methods:
        d = attempt(method)
        tried.append({"method": method, "drop_points": d})
        if d is None:
            continue
        log(f"  recovery {method}: {budget.unit} {budget.amount(d)}, every layer int8 (was {drop:.2f})")
        if d < best_drop:
            best, best_drop = method, d
        if d <= budget.points:
            break
    return {"initial_drop_points": drop, "tried": tried, "chosen": best, "drop_points": best_drop,
            "met": best_drop <= budget.points}


def describe(name: str, result: dict) -> str:
    """The log line: met, or a warning that says what to try."""
    n, drop = len(result["float_layers"]), result["drop_points"]
    budget = Budget(result["budget_points"], result.get("measure", "top1"))
    what, flag = budget.unit, result.get("flag") or budget.flag
    chosen = (result.get("recovery") or {}).get("chosen")
    if result["met"] and chosen and not n:
        return (f"{name}: {what} {budget.amount(drop)} within {flag} with every layer in int8, by {chosen} "
                f"(int8 alone: {budget.amount(result['recovery']['initial_drop_points'])})")
    if result["met"]:
        # The search's first build: every layer int8, or (compile) the float layers quantize handed over.
        start = len(result["steps"][0]["float_layers"]) if result.get("steps") else 0
        first = "int8 alone" if not start else f"with quantize's {start} float layer(s)"
        return (f"{name}: {what} {budget.amount(drop)} within {flag} with {n} layer(s) kept in float"
                + (f" ({first}: {budget.amount(result['initial_drop_points'])})" if n else ""))
    return (f"  warning: {name}: {what} {budget.amount(drop)} exceeds {flag} even with {n} layer(s) in float; "
            "artifacts written anyway: try --method auto, more calibration images, or a larger budget")
