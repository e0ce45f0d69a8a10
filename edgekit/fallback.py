"""Accuracy-aware fallback (`--max-drop PTS`): keep the most sensitive layers in float until the drop fits.

The drop is top-1 points lost against the fp32 reference with labels, else disagreement (100 x (1 - top-1
agreement)), the same measure bench's `--max-drop` gate uses. The search is greedy along the sensitivity
ranking, one layer at a time, and each target runs it with its own build (its own way of leaving a layer
in float) and its own runtime, so the budget is checked on the artifact that ships.

Before any layer is kept in float, the accuracy-recovery methods (recovery.py: cross-layer equalization, then
AdaRound where aimet-onnx is installed) are tried in turn on an adjusted copy of the graph, every layer still int8
(`recovery_first`); the float search then starts from the best of them.

Not meeting the budget is not an error: the artifacts are still written (the last attempt, with the most
layers in float) and the result says `"met": false`; the CLI prints a warning, and `bench --max-drop` is the
gate that fails.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from . import metrics


def drop_points(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> float:
    if labels is not None:
        return round(100 * (metrics.topk(reference, labels) - metrics.topk(logits, labels)), 4)
    return round(100 * (1 - metrics.agreement(logits, reference)), 4)


def validation_drop(validation: dict) -> float:
    """The same measure from a compile validation record (top-1 of int8 and its fp32 reference, or agreement)."""
    if "top1" in validation:
        return round(100 * (validation["reference_top1"] - validation["top1"]), 4)
    return round(100 * (1 - validation["agreement"]), 4)


def search(build: Callable[[list[str]], float], ranking: list[str], budget: float,
           start: list[str] | None = None) -> dict:
    """`build(float_layers)` makes the artifact with those layers in float and returns its drop in points.
    The artifact left behind is the last one built."""
    kept = list(start or [])
    drop = build(kept)
    steps = [{"float_layers": list(kept), "drop_points": drop}]
    candidates = [n for n in ranking if n not in kept]
    while drop > budget and candidates:
        kept.append(candidates.pop(0))
        drop = build(kept)
        steps.append({"float_layers": list(kept), "drop_points": drop})
    return {"budget_points": budget, "met": drop <= budget, "float_layers": kept, "drop_points": drop,
            "initial_drop_points": steps[0]["drop_points"], "steps": steps}


def recovery_first(attempt: Callable[[str], float | None], methods, budget: float, drop: float, log=print) -> dict:
    """Try each recovery method in order (`attempt(method)` builds the all-int8 artifact from that method's adjusted
    graph and returns its drop, or None when the method cannot run here) until one meets `budget`. The record says
    which one to keep ("chosen": None when none beat `drop`, the all-int8 drop without recovery)."""
    tried, best, best_drop = [], None, drop
    for method in methods:
        d = attempt(method)
        tried.append({"method": method, "drop_points": d})
        if d is None:
            continue
        log(f"  recovery {method}: drop {d:.2f} pts, every layer int8 (was {drop:.2f})")
        if d < best_drop:
            best, best_drop = method, d
        if d <= budget:
            break
    return {"initial_drop_points": drop, "tried": tried, "chosen": best, "drop_points": best_drop,
            "met": best_drop <= budget}


def describe(name: str, result: dict) -> str:
    """The log line: met, or a warning that says what to try."""
    n, drop, budget = len(result["float_layers"]), result["drop_points"], result["budget_points"]
    chosen = (result.get("recovery") or {}).get("chosen")
    if result["met"] and chosen and not n:
        return (f"{name}: drop {drop:.2f} pts within --max-drop {budget:g} with every layer in int8, by {chosen} "
                f"(int8 alone: {result['recovery']['initial_drop_points']:.2f} pts)")
    if result["met"]:
        return (f"{name}: drop {drop:.2f} pts within --max-drop {budget:g} with {n} layer(s) kept in float"
                + (f" (int8 alone: {result['initial_drop_points']:.2f} pts)" if n else ""))
    return (f"  warning: {name}: drop {drop:.2f} pts exceeds --max-drop {budget:g} even with {n} layer(s) in float; "
            "artifacts written anyway: try --method auto, more calibration images, or a larger budget")
