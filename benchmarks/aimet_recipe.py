"""AIMET-ONNX's recommended post-training recipe for CNNs, as an anchor row of benchmarks/compare_runtimes.py.

The recipe, as aimet-onnx 2.42's documentation gives it for CNNs: batch-norm folding + cross-layer equalization
(`equalize_model`), a QuantizationSimModel with the per-channel config that ships with aimet
(`default_config_per_channel.json`: int8 per-channel symmetric weights, int8 activations) and the `tf_enhanced`
range scheme, AdaRound on every Conv/Gemm (`apply_adaround`), then activation encodings computed on the same
calibration images. Logits come from aimet's own simulation session (its quantizers run as ONNX Runtime custom ops):
accuracy only, no latency, since that session is a simulator and not a deployable artifact.

Runs in its own process because aimet-onnx pins torch/torchvision versions that need not match the main
environment; compare_runtimes.py calls it with the Python that has aimet (`--aimet-python`).

    python benchmarks/aimet_recipe.py --model fp32.onnx --calib calib.npy --eval eval.npy --out logits.npy \\
        [--iterations 300] [--batch 16]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="fp32 ONNX model (one image input)")
    ap.add_argument("--calib", type=Path, required=True, help=".npy, (N, C, H, W) float32, preprocessed")
    ap.add_argument("--eval", type=Path, required=True, help=".npy, (M, C, H, W) float32, preprocessed")
    ap.add_argument("--out", type=Path, required=True, help="logits .npy; a .json beside it says what ran")
    ap.add_argument("--iterations", type=int, default=300,
                    help="AdaRound steps per layer (aimet recommends 10,000 for 8-bit; 300 is what fits a CPU run)")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()

    import onnx
    from aimet_onnx import QuantizationSimModel, apply_adaround
    from aimet_onnx.cross_layer_equalization import equalize_model

    import aimet_onnx

    config = Path(aimet_onnx.__file__).parent / "common/quantsim_config/default_config_per_channel.json"
    model = onnx.load(str(args.model))
    input_name = model.graph.input[0].name
    calib = np.load(args.calib, mmap_mode="r")
    inputs = [{input_name: np.ascontiguousarray(calib[i:i + args.batch])} for i in range(0, len(calib), args.batch)]
    seconds = {}

    t0 = time.perf_counter()
    equalize_model(model)  # folds batch norms, replaces ReLU6 with ReLU, equalizes and absorbs biases
    seconds["cle"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="aimet-recipe-") as tmp:
        sim = QuantizationSimModel(model, param_type="int8", activation_type="int8", quant_scheme="tf_enhanced",
                                   config_file=str(config), path=tmp)
        t0 = time.perf_counter()
        print(f"aimet: AdaRound, {args.iterations} iterations per layer, {len(calib)} calibration images",
              file=sys.stderr, flush=True)
        apply_adaround(sim, inputs, num_iterations=args.iterations)
        seconds["adaround"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sim.compute_encodings(inputs)
        seconds["encodings"] = time.perf_counter() - t0
        data = np.load(args.eval, mmap_mode="r")
        logits = [sim.session.run(None, {input_name: np.ascontiguousarray(data[i:i + args.batch])})[0]
                  for i in range(0, len(data), args.batch)]
    np.save(args.out, np.concatenate(logits))
    args.out.with_suffix(".json").write_text(json.dumps({
        "aimet_onnx": aimet_onnx.__version__ if hasattr(aimet_onnx, "__version__") else "unknown",
        "recipe": "CLE (equalize_model) + AdaRound + per-channel config, tf_enhanced",
        "config_file": config.name, "iterations": args.iterations, "calibration_images": len(calib),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(), "threads": os.environ.get("OMP_NUM_THREADS")}, indent=1))


def cpu_name() -> str:
    """The CPU the timings above are from (they are kept with the cached logits)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
