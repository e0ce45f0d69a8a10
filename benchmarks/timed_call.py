"""What edgekit's Python wrapping adds to a timed call: each int8 artifact timed through its runner's full call
(float batch in, quantized for a full-integer .tflite, outputs gathered out) and through its bound call (the runtime's
inference on an input already handed over, what bench times: edgekit.board.timing.bound_call), in one interleaved run.

    python benchmarks/timed_call.py WORKSPACE [WORKSPACE ...] [--threads 2] [--runs 600]

Each WORKSPACE is a compiled edgekit workspace (quantize + compile --target openvino,arm); every int8 artifact of its
openvino and arm targets that runs here is timed at batch 1. Prints a table: p50 of each way, their difference
(the wrapping's cost per call) and its share of the full call. Writes nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgekit.board.timing import interleaved_latency, summarize  # noqa: E402
from edgekit.table import format_table  # noqa: E402
from edgekit.targets import get_target  # noqa: E402


class FullCall:
    """A runner timed through its full call (what bench timed before bound_call)."""

    def __init__(self, runner) -> None:
        self.runner = runner

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.runner(x)

    def bind(self, x: np.ndarray):
        return lambda: self.runner(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspaces", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=600)
    args = ap.parse_args()
    rows = []
    for ws in args.workspaces:
        x = np.random.default_rng(0).standard_normal((1, *_input_shape(ws))).astype(np.float32)
        for name in ("openvino", "arm"):
            target = get_target(name)
            folder = ws / "targets" / name
            for pair in target.pairs(folder):
                runner = target.runner(folder, pair.int8, args.threads)
                times = interleaved_latency({"full": FullCall(runner), "bound": runner}, x, args.runs, 20, 1.0)
                full, bound = (summarize(times[k])["p50"] for k in ("full", "bound"))
                rows.append([ws.name, f"{name}:{pair.name}", runner.runtime, f"{full:.4f}", f"{bound:.4f}",
                             f"{1000 * (full - bound):.1f}", f"{100 * (full - bound) / full:.0f} %"])
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, batch 1, {args.threads} thread(s), "
          f"{args.runs} calls each way, interleaved")
    print(format_table(["workspace", "int8 artifact", "runtime", "full call p50 ms", "bound call p50 ms",
                        "wrapping us", "share of full"], rows))


def _input_shape(ws: Path) -> tuple[int, ...]:
    pre = json.loads((ws / "manifest.json").read_text())["preprocess"]
    return (pre["channels"], pre["height"], pre["width"])


if __name__ == "__main__":
    main()
