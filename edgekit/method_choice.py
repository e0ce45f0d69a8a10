"""`--method auto`: calibrate with each method on part of the calibration set, keep the one whose int8 model
agrees best with fp32 on the rest.

The held-out part is never calibrated on, so the score is not flattered by ranges fitted to the very images it
is scored on; the eval set is left alone (it is what the final drop is reported on). Ties on agreement go to
the higher logit cosine, a finer measure on few images.

Then the accuracy-recovery methods (recovery.py) are scored the same way, with the winning range method:
`cle` always (data-free, seconds), `cle+adaround` where aimet-onnx is installed, within recovery.ADAROUND_BUDGET_S
(it stops early past it). One is chosen only when it scores strictly higher than plain calibration; its adjusted
graph is kept (`keep`), so quantize does not run it again.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from . import metrics, recovery
from .calibration import METHODS, Calibration, calibrate
from .data import ImageSet, Preprocess
from .errors import EdgekitError
from .ort_runner import OrtModel
from .outputs import OutputLayout, fidelity, min_sqnr

HELD_OUT_FRACTION = 0.25
MIN_IMAGES = 4


def choose_method(fp32_path: Path, images: ImageSet, pre: Preprocess, seed: int,
                  build: Callable[[Path, Path, Calibration], None], threads: int = 0,
                  layout: OutputLayout | None = None,
                  recover: Callable[[str, Path, ImageSet], dict] | None = None, keep: Path | None = None,
                  log=print) -> tuple[str, dict]:
    """(best method, the record for quantize.json). `build(fp32, out, cal)` writes the int8 model being chosen for.
    Judged by top-1 agreement on the class-logits output, then cosine; a model without one by its worst output's
    SQNR (layout: the model's outputs; None: one logits output). `recover(method, out, images)` writes the adjusted
    graph of a recovery method (None: recovery is not considered); the winner's is copied to `keep`."""
    if len(images) < MIN_IMAGES:
        raise EdgekitError(f"--method auto needs at least {MIN_IMAGES} calibration images, got {len(images)}",
                           "give more calibration images, or name a method")
    fit, held = images.split(HELD_OUT_FRACTION, seed)
    x = np.concatenate(list(held.batches(pre, 64)))
    ref = OrtModel(fp32_path, threads)(x)
    layout = layout or OutputLayout.from_list(None, ref.shape[1])
    logits = layout.logits is not None
    scores = {}
    first = "agreement" if logits else "min_sqnr_db"

    def score(source: Path, out: Path, method: str) -> dict:
        cal = calibrate(source, fit, pre, method)
        build(source, out, cal)
        y = OrtModel(out, threads, exact_int8=True)(x)
        if logits:
            result = {"agreement": metrics.agreement(layout.primary(y), layout.primary(ref))}
        else:
            worst = min_sqnr(fidelity(layout, y, ref))
            result = {"min_sqnr_db": math.inf if worst is None else worst}
        return {**result, "cosine": round(metrics.cosine(y, ref), 6), "calib_seconds": round(cal.seconds, 3)}

    recovered, skipped = {}, {}
    with tempfile.TemporaryDirectory(prefix="edgekit-auto-") as tmp:
        for method in METHODS:
            scores[method] = score(fp32_path, Path(tmp) / f"{method}.onnx", method)
        ranges = max(METHODS, key=lambda m: (scores[m][first], scores[m]["cosine"]))
        for method in recovery.METHODS if recover else ():
            why = recovery.available(method)
            if why:
                skipped[method] = why
                log(f"  method auto: {method} not tried: {why}")
                continue
            adjusted = Path(tmp) / f"{method}.adjusted.onnx"
            record = recover(method, adjusted, fit)
            scores[method] = {**score(adjusted, Path(tmp) / f"{method}.onnx", ranges), "range_method": ranges,
                              "recovery_seconds": record.get("seconds")}
            recovered[method] = (adjusted, record)
        best = max(scores, key=lambda m: (scores[m][first], scores[m]["cosine"], m in METHODS))
        if best in recovered and keep is not None:
            import shutil

            shutil.copyfile(recovered[best][0], keep)
    s = scores[best]
    figure = (f"highest top-1 agreement with fp32 ({100 * s['agreement']:.2f} %" if logits
              else f"highest worst-output SQNR ({s['min_sqnr_db']:.1f} dB")
    reason = (f"{best}: {figure}, cosine {s['cosine']:.5f}) "
              f"on {len(held)} held-out calibration images, calibrated on the other {len(fit)}")
    record = {"chosen": best, "reason": reason, "scores": scores, "fit_images": len(fit), "held_out_images": len(held),
              "range_method": best if best in METHODS else ranges}
    if recover:
        record["recovery_not_tried"] = skipped
        if best in recovered:
            record["recovery"] = recovered[best][1]
    return best, record
