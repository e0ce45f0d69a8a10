"""Which calibration method should be edgekit's default? Measure, don't guess.

Quantizes one model with each of ORT's calibrators on the same calibration images and reports the int8
top-1 drop and agreement on the eval set. On the bundled teacher (the README's numbers):

    python benchmarks/calibration_methods.py            # defaults: bundled teacher, fashion-mnist:test
"""

from __future__ import annotations

import argparse
import json
import tempfile

from edgekit.calibration import METHODS
from edgekit.inputspec import ModelInputs
from edgekit.quantization import quantize
from edgekit.table import format_table, pct


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/fashion_resnet.pt2")
    ap.add_argument("--calib", default="calibration")
    ap.add_argument("--eval", default="fashion-mnist:test")
    ap.add_argument("--mean", default="0.286")
    ap.add_argument("--std", default="0.353")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = {}
    for method in METHODS:
        with tempfile.TemporaryDirectory() as ws:
            results[method] = quantize(args.model, args.calib, eval=args.eval, workdir=ws,
                                       inputs=ModelInputs(mean=args.mean, std=args.std), method=method,
                                       log=lambda *_: None)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    rows = [[m, pct(r["fp32"]["top1"]), pct(r["int8"]["top1"]),
             "-" if r["drop_points"] is None else f"{r['drop_points']:.2f}", pct(r["int8"]["agreement"]),
             f"{r['int8']['cosine']:.5f}", f"{r['calibration']['seconds']:.1f}"] for m, r in results.items()]
    print(format_table(["method", "fp32 top-1", "int8 top-1", "drop (pts)", "agreement", "cosine", "calib s"], rows))
    print(f"eval: {next(iter(results.values()))['eval']['source']}")


if __name__ == "__main__":
    main()
