"""Accuracy recovery (CLE) against today's float fallback, on the two hostile test models of tests/test_recovery.py.

For each model (test_fallback's OutlierCNN, the MobileNetV2-style net with an unbalanced depthwise layer), quantize
with `--max-drop 0.5` twice: the float-only fallback (recovery.FALLBACK_METHODS emptied: what edgekit did before
recovery) and the default (recovery first); compile the openvino target of both and time their int8 IRs against
each other at batch 1, interleaved (edgekit/board/timing.py: alternating rounds, so a busy machine slows both alike).

    python benchmarks/recovery.py [--out DIR] [--runs 2000]

Measured 2026-11-30 (openvino 2026.4.1, 2 threads, 2-core machine shared with other jobs, load ~6; 32 calibration
images, 600 labelled Fashion-MNIST eval images): see docs/quantize.md, "Recovering accuracy: CLE and AdaRound".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BUDGET = 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--runs", type=int, default=2000, help="timed calls per IR")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgekit-recovery-bench-"))
    out.mkdir(parents=True, exist_ok=True)

    import torch

    from edgekit import recovery
    from edgekit.board.timing import interleaved_latency, summarize
    from edgekit.targets import get_target
    from tests.conftest import CALIB_DIR, fashion_arrays, save_model, train_tiny
    from tests.test_fallback import OutlierCNN
    from tests.test_recovery import MobileNetV2Style, invoke, quantize_args

    calib = out / "calib"
    if not calib.is_dir():
        for class_dir in sorted(CALIB_DIR.iterdir()):
            (calib / class_dir.name).mkdir(parents=True)
            for png in sorted(class_dir.glob("*.png"))[:4]:
                (calib / class_dir.name / png.name).write_bytes(png.read_bytes())
    images, labels = fashion_arrays(600)
    np.savez(out / "eval.npz", images=images, labels=labels)
    models = {}
    torch.manual_seed(0)
    models["outlier"] = train_tiny(OutlierCNN(), 1, 28, steps=200).add_outlier_channel()
    torch.manual_seed(0)
    models["mbv2"] = train_tiny(MobileNetV2Style(), 1, 28, steps=200).unbalance_depthwise()

    ov = get_target("openvino")
    rows = []
    for name, module in models.items():
        path = save_model(module, "exported_program", out / f"{name}.pt2", torch.zeros(2, 1, 28, 28))
        result = {}
        for label, methods in (("float fallback", ()), ("recovery", recovery.FALLBACK_METHODS)):
            recovery.FALLBACK_METHODS = methods
            ws = out / f"{name}-{label.replace(' ', '-')}"
            t0 = time.perf_counter()
            r = invoke(*quantize_args(path, calib, out / "eval.npz", ws, "--max-drop", BUDGET, "--force"))
            assert r.exit_code == 0, r.output
            q = json.loads(r.stdout)
            r = invoke("compile", "--target", "openvino", "--workdir", ws, "--max-drop", BUDGET, "--json")
            assert r.exit_code == 0, r.output
            c = json.loads(r.stdout)["openvino"]
            result[label] = {"ws": ws, "seconds": time.perf_counter() - t0, "quantize": q, "compile": c}
        recovery.FALLBACK_METHODS = recovery.METHODS
        x = np.load(out / "eval.npz")["images"][:1]
        x = ((x.astype(np.float32) / 255 - 0.286) / 0.353)[:, None]
        runners = {label: ov.runner(info["ws"] / "targets" / "openvino", "int8", 2) for label, info in result.items()}
        times = interleaved_latency(runners, x, args.runs, warmup=50, warmup_seconds=2.0)
        p50 = {label: summarize(ms)["p50"] for label, ms in times.items()}
        for label, info in result.items():
            q, c = info["quantize"], info["compile"]
            rows.append((name, label, q["fallback"]["initial_drop_points"] if not q["fallback"].get("recovery")
                         else q["fallback"]["recovery"]["initial_drop_points"], q["drop_points"],
                         len(q["fallback"]["float_layers"]), len(c["details"]["fallback"]["float_layers"]),
                         c["details"]["fallback"]["drop_points"], c["precision"].get("Convolution"), p50[label],
                         info["seconds"]))
        rows.append((name, "ratio (float fallback / recovery)", None, None, None, None, None, None,
                     p50["float fallback"] / p50["recovery"], None))
    header = ("model", "fallback", "int8 drop", "final drop", "float (quantize)", "float (openvino)",
              "openvino drop", "openvino Convolution", "p50 ms", "s")
    print(" | ".join(header))
    for row in rows:
        print(" | ".join("-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    print(f"workspaces in {out}")


if __name__ == "__main__":
    main()
