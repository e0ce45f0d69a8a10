"""`--method auto`: calibrate with each method on part of the calibration set, keep the one whose int8 model
agrees best with fp32 on the rest.

The held-out part is never calibrated on, so the score is not flattered by ranges fitted to the very images it
is scored on; the eval set is left alone (it is what the final drop is reported on). Ties on agreement go to
the higher logit cosine, a finer measure on few images.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from . import metrics
from .calibration import METHODS, Calibration, calibrate
from .data import ImageSet, Preprocess
from .errors import EdgekitError
from .ort_runner import OrtModel

HELD_OUT_FRACTION = 0.25
MIN_IMAGES = 4


def choose_method(fp32_path: Path, images: ImageSet, pre: Preprocess, seed: int,
                  build: Callable[[Path, Path, Calibration], None], threads: int = 0) -> tuple[str, dict]:
    """(best method, the record for quantize.json). `build(fp32, out, cal)` writes the int8 model being chosen for."""
    if len(images) < MIN_IMAGES:
        raise EdgekitError(f"--method auto needs at least {MIN_IMAGES} calibration images, got {len(images)}",
                           "give more calibration images, or name a method")
    fit, held = images.split(HELD_OUT_FRACTION, seed)
    x = np.concatenate(list(held.batches(pre, 64)))
    ref = OrtModel(fp32_path, threads)(x)
    scores = {}
    with tempfile.TemporaryDirectory(prefix="edgekit-auto-") as tmp:
        for method in METHODS:
            cal = calibrate(fp32_path, fit, pre, method)
            out = Path(tmp) / f"{method}.onnx"
            build(fp32_path, out, cal)
            y = OrtModel(out, threads)(x)
            scores[method] = {"agreement": metrics.agreement(y, ref), "cosine": round(metrics.cosine(y, ref), 6),
                              "calib_seconds": round(cal.seconds, 3)}
    best = max(METHODS, key=lambda m: (scores[m]["agreement"], scores[m]["cosine"]))
    s = scores[best]
    reason = (f"{best}: highest top-1 agreement with fp32 ({100 * s['agreement']:.2f} %, cosine {s['cosine']:.5f}) "
              f"on {len(held)} held-out calibration images, calibrated on the other {len(fit)}")
    return best, {"chosen": best, "reason": reason, "scores": scores, "fit_images": len(fit), "held_out_images": len(held)}
