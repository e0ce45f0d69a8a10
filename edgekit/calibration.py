"""Activation ranges from real images, in a form every backend can reuse.

ONNX Runtime's calibrators do the statistics (min/max, percentile histograms, KL entropy); edgekit feeds
them through ORT's one-method `CalibrationDataReader` and writes the result twice: as ORT's own cache
(so `quantize_static` uses exactly these ranges) and as a portable calibration.json,
`{tensor name in model.fp32.onnx: {"min": f, "max": f}}`, which the other targets read. It also holds the
per-channel means of every Conv input (`channel_means`), the statistics bias correction needs (bias_correction.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import ImageSet, Preprocess
from .export import INPUT_NAME, fixed_batch
from .progress import progress

METHODS = ("minmax", "percentile", "entropy")
CALIB_BATCH = 16
CALIB_CHUNK = 16  # images per collect_data call; their activations are what the calibrator holds at a time


class ImageReader:
    """ORT CalibrationDataReader over an ImageSet: one preprocessed batch per `get_next()`. It stops after `chunk`
    images (None: never) and `more()` says whether images remain, so a calibrator can be fed the set in chunks."""

    def __init__(self, images: ImageSet, pre: Preprocess, bar=None, batch: int = CALIB_BATCH, exact: bool = False,
                 chunk: int | None = None) -> None:
        self._batches = images.batches(pre, batch, exact)
        self._bar, self._chunk, self._left = bar, chunk, len(images)
        self._in_chunk = 0

    def get_next(self) -> dict | None:
        if self._chunk is not None and self._in_chunk >= self._chunk:
            self._in_chunk = 0
            return None  # end of this chunk: the calibrator reduces what it holds before the next
        x = next(self._batches, None)
        if x is None:
            return None
        n = min(len(x), self._left)  # an exact last batch repeats images; count each once
        self._left -= n
        self._in_chunk += len(x)
        if self._bar is not None:
            self._bar.update(n)
        return {INPUT_NAME: x}

    def more(self) -> bool:
        return self._left > 0


@dataclass
class Calibration:
    method: str
    samples: int
    seconds: float
    ranges: dict[str, tuple[float, float]]  # tensor name -> (min, max)
    options: dict
    # Conv input tensor -> mean per channel over the calibration images; empty in older calibration.json files,
    # and then the int8 model is built without bias correction.
    channel_means: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "method": self.method, "samples": self.samples, "seconds": round(self.seconds, 3),
            "options": self.options, "reference_model": "model.fp32.onnx",
            "tensors": {k: {"min": lo, "max": hi} for k, (lo, hi) in sorted(self.ranges.items())},
            "channel_means": dict(sorted(self.channel_means.items())),
        }

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        """calibration.json (written from `to_dict`) back into a Calibration."""
        d = json.loads(Path(path).read_text())
        ranges = {name: (r["min"], r["max"]) for name, r in d["tensors"].items()}
        return cls(d["method"], d["samples"], d["seconds"], ranges, d["options"], d.get("channel_means", {}))

    def write_ort_cache(self, path: Path) -> None:
        """The ranges as ORT's calibration cache, so quantize_static quantizes with exactly these."""
        from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

        method = _ort_method(self.method)
        data = {
            k: TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
            for k, (lo, hi) in self.ranges.items()
        }
        save_tensors_data(TensorsData(method, data), path)


def _ort_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[name]


# Per-method options handed to ORT's calibrator; recorded in calibration.json so a run can be repeated.
METHOD_OPTIONS = {
    "minmax": {},
    "percentile": {"percentile": 99.999, "num_bins": 2048},
    "entropy": {"num_bins": 512, "num_quantized_bins": 128},
}


def calibrate(fp32_onnx: Path, images: ImageSet, pre: Preprocess, method: str) -> Calibration:
    from onnxruntime.quantization.calibrate import create_calibrator

    from .bias_correction import conv_input_means

    options = METHOD_OPTIONS[method]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgekit-calib-") as tmp:
        calibrator = create_calibrator(
            Path(fp32_onnx), None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=_ort_method(method), extra_options=dict(options),
        )
        # ORT's histogram collector stacks per-batch outputs and needs equal batch sizes: feed those
        # methods one image at a time. MinMax only reduces, so it takes batches. A graph with a fixed batch gets
        # exactly that many images per run, whatever the method.
        fixed = fixed_batch(Path(fp32_onnx))
        batch = fixed or (CALIB_BATCH if method == "minmax" else 1)
        # Fed in chunks: ORT's calibrators keep every activation of every image they are given until collect_data
        # returns, then reduce them (histograms merged across calls, ranges kept running), so resident memory grows
        # with the chunk, not with the number of calibration images.
        with progress(len(images), f"calibrating ({method})", "img") as bar:
            reader = ImageReader(images, pre, bar, batch=batch, exact=fixed is not None, chunk=CALIB_CHUNK)
            # ORT's histogram calibrators print their progress and settings to stdout; keep the table clean.
            with contextlib.redirect_stdout(io.StringIO()):
                while reader.more():
                    calibrator.collect_data(reader)
                tensors = calibrator.compute_data()
        del calibrator
    ranges = {
        # MinMax gives shape-(1,) arrays, the histogram methods scalars: reduce both to floats.
        name: (float(np.min(td.range_value[0])), float(np.max(td.range_value[1])))
        for name, td in tensors.data.items()
    }
    means = conv_input_means(Path(fp32_onnx), images, pre, INPUT_NAME)
    return Calibration(method, len(images), time.perf_counter() - start, ranges, options, means)


def quantize_with_ranges(fp32_onnx: Path, out: Path, cal: Calibration, **options) -> None:
    """ORT quantize_static in QDQ format with exactly `cal`'s ranges, handed over as ORT's calibration cache;
    `options` are quantize_static's own (per_channel, activation_type, extra_options, nodes_to_exclude...)."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    with tempfile.TemporaryDirectory(prefix="edgekit-qdq-") as tmp:
        cache = Path(tmp) / "ranges.json"
        cal.write_ort_cache(cache)
        quantize_static(
            str(fp32_onnx), str(out), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
            calibrate_method=_ort_method(cal.method), calibration_cache_path=str(cache), **options,
        )
