"""How far a bench's speed-up can be trusted: a 95 % interval from the interleaved rounds, whether the machine was
busy while it timed, and what that means for a latency or speed-up gate.

Why rounds: bench times the int8 artifact and its fp32 reference in alternating rounds of ROUND calls each
(board/timing.py), so the two halves of a round saw the same machine. The ratio of their medians in one round is
one paired observation of the speed-up: what slows both (clocks, another process) cancels inside a round and shows
up as scatter between rounds, which is what the interval measures.

Why this interval: the distribution-free 95 % interval of a median (the sign-test interval): the k-th smallest
and k-th largest of n round values, with k the largest rank that leaves at most 2.5 % on either side under
Binomial(n, 1/2). It assumes only that rounds are independent draws of the same thing; it is exact, deterministic
(no resampling seed: two reports of one bench.json agree) and cheap. Six rounds (`--runs 60`) are the fewest
that give one; a bootstrap over so few rounds would print a narrower interval than the data support.

Noisy, concretely (the thresholds below; docs/bench.md says the same): the machine was busy (other processes took
over 25 % of the machine's CPU time while it timed; where that cannot be read, no /proc/stat, a 1-min load
average before timing over 0.75 x cores), or the speed-up's interval reaches further than +-10 % from the
speed-up, or there were too few rounds for one. The load averages are recorded but judged only as that fallback:
they include edgekit's own work (the compile and accuracy passes just before timing in `edgekit run` put the
1-min load of an otherwise idle 2-core machine at ~2.5), while the CPU share of other processes does not.

The headline speed-up stays reference p50 / int8 p50 over all calls; the interval is that of the median round
ratio. The two agree on a steady machine; when the headline falls outside the interval the machine changed during
the run, and that is called noisy too.
"""

from __future__ import annotations

import math

import numpy as np

from .board.timing import ROUND

CONFIDENCE = 0.95
MAX_RELATIVE_HALF_WIDTH = 0.10  # an interval reaching further than +-10 % from the speed-up: noisy
BUSY_LOAD_PER_CORE = 0.75  # 1-min load average before timing above this x cores: busy
BUSY_OTHERS_CPU_SHARE = 0.25  # other processes' share of the machine's CPU time while timing above this: busy


def rounds(ms: list, size: int = ROUND) -> list[list[float]]:
    """Per-call milliseconds of one runner, in call order, cut back into its rounds (the last may be short)."""
    return [list(ms[i : i + size]) for i in range(0, len(ms), size)]


def round_ratios(timings: dict) -> list[float]:
    """reference median / int8 median in each round: one paired speed-up per round."""
    pairs = zip(rounds(timings["int8"]), rounds(timings["reference"]))
    return [float(np.median(ref) / np.median(q)) for q, ref in pairs if q and ref]


def round_medians(ms: list) -> list[float]:
    return [float(np.median(r)) for r in rounds(ms) if r]


def median_interval(values: list, confidence: float = CONFIDENCE) -> list[float] | None:
    """[low, high]: the distribution-free interval of the median of `values` (at least `confidence` coverage);
    None when there are too few values for one (fewer than 6 at 95 %)."""
    n, tail = len(values), (1 - confidence) / 2
    k, below = 0, 0.0  # k: how many of the smallest (and largest) values the interval may leave out
    while k < n // 2:
        # P(Binomial(n, 1/2) = k), in logs: 2**-n underflows a float past ~1000 rounds
        below += math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2))
        if below > tail:
            break
        k += 1
    if k == 0:
        return None
    ordered = sorted(values)
    return [float(ordered[k - 1]), float(ordered[n - k])]


def busy_reasons(load: dict | None, cores: int | None) -> list[str]:
    """Why the machine counts as busy for this timing (empty: it does not, or nothing was recorded)."""
    if not load:
        return []
    reasons = []
    before, share = load.get("load_average_before"), load.get("others_cpu_share")
    if share is None and before and cores and before[0] > BUSY_LOAD_PER_CORE * cores:
        reasons.append(f"busy machine: 1-min load average {before[0]:.2f} before timing on {cores} cores "
                       f"(over {BUSY_LOAD_PER_CORE:g} x cores)")
    if share is not None and share > BUSY_OTHERS_CPU_SHARE:
        reasons.append(f"busy machine: other processes used {100 * share:.0f} % of the CPU time while timing "
                       f"(over {100 * BUSY_OTHERS_CPU_SHARE:.0f} %)")
    return reasons


def assess(timings: dict, load: dict | None, cores: int | None) -> dict:
    """The intervals and the noise verdict bench.json records for one timed pair:
    {"speedup_interval", "latency_p50_interval_ms", "noise": {"noisy", "reasons", "rounds", "confidence", load...}}."""
    ratios = round_ratios(timings)
    interval = median_interval(ratios)
    speedup = float(np.percentile(timings["reference"], 50) / np.percentile(timings["int8"], 50))
    reasons = busy_reasons(load, cores)
    if interval is None:
        reasons.append(f"only {len(ratios)} rounds of {ROUND} calls: too few for a 95 % interval "
                       f"(--runs {6 * ROUND} or more gives one)")
    elif speedup < interval[0] * (1 - 1e-9) or speedup > interval[1] * (1 + 1e-9):  # not a rounding difference
        # The p50s over all calls and the rounds' paired ratios disagree: the machine changed between rounds.
        reasons.append(f"the speed-up over all calls, {speedup:.2f}x, lies outside its rounds' interval "
                       f"{interval[0]:.2f}-{interval[1]:.2f}x")
    elif interval[0] < (1 - MAX_RELATIVE_HALF_WIDTH) * speedup or interval[1] > (1 + MAX_RELATIVE_HALF_WIDTH) * speedup:
        reasons.append(f"speed-up interval {interval[0]:.2f}-{interval[1]:.2f}x reaches further than "
                       f"+-{100 * MAX_RELATIVE_HALF_WIDTH:.0f} % from {speedup:.2f}x")
    noise = {"noisy": bool(reasons), "reasons": reasons, "rounds": len(ratios), "confidence": CONFIDENCE,
             **(load or {}), "cores": cores}
    return {"speedup_interval": interval, "speedup_round_median": float(np.median(ratios)) if ratios else None,
            "latency_p50_interval_ms": median_interval(round_medians(timings["int8"])),
            "noise": noise}


def timing_gate_status(ok: bool, limit: float, interval: list | None, noisy: bool, strict: bool) -> tuple[str, str | None]:
    """(status, reason) of a latency or speed-up gate: on a noisy measurement whose interval holds the limit the
    figure cannot say which side of the limit the truth is on, so the gate is "inconclusive" (strict: "failed")."""
    if noisy and interval is not None and interval[0] <= limit <= interval[1]:
        reason = (f"noisy timing: the limit {limit:g} lies inside the 95 % interval "
                  f"{interval[0]:.3g}-{interval[1]:.3g}")
        if strict:
            return "failed", reason + "; --strict-timing counts that as a failure"
        return "inconclusive", reason + "; rerun on a quiet machine (docs/bench.md) or pass --strict-timing"
    return ("passed" if ok else "failed"), None
