"""The quantize stage: model file + calibration images -> workspace with fp32 and int8 ONNX, measured.

    load -> settle input/preprocess -> export fp32 ONNX (checked) -> calibrate ranges -> QDQ int8
         -> evaluate both on the eval set -> quantize.json, calibration.json, manifest.json

Scheme: ONNX Runtime static quantization in QDQ format; weights int8 symmetric per output channel,
activations int8 per tensor (asymmetric) from the calibrated ranges. This is the TFLite/ARM integer
scheme too, so the portable model.int8.onnx is a sensible starting point for every target.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from . import fallback, metrics, preflight, sensitivity, stage_keys
from .calibration import METHODS, Calibration, calibrate
from .data import ImageSet, conversions, open_images
from .errors import EdgekitError
from .export import example_batch, export_onnx, fixed_batch, torch_forward
from .inputspec import ModelInputs, parse_shape, resolve_preprocess
from .method_choice import choose_method
from .model import count_params, load_model, sha256_of
from .ort_runner import OrtModel, run_models
from .qdq_build import quantize_qdq
from .workspace import Workspace, check_labels, data_ref, split_images, write_json_atomic

# Chosen by measurement on the bundled teacher (see README, "Choosing the calibration method").
DEFAULT_METHOD = "percentile"
DEFAULT_CALIB_SIZE = 512
EVAL_BATCH = 64


@dataclass
class QuantizeOptions:
    method: str = DEFAULT_METHOD
    calib_size: int | None = DEFAULT_CALIB_SIZE
    seed: int = 0
    batch: int = EVAL_BATCH
    threads: int = 0

    def __post_init__(self) -> None:
        if self.method not in (*METHODS, "auto"):
            raise EdgekitError(f"unknown calibration method {self.method!r}", f"use one of: {', '.join(METHODS)}, auto")
        if self.calib_size is not None and self.calib_size < 1:
            raise EdgekitError(f"--calib-size must be at least 1, got {self.calib_size}", "e.g. --calib-size 300")
        if self.batch < 1:
            raise EdgekitError(f"--batch must be at least 1, got {self.batch}", "e.g. --batch 64")


def quantize(
    model: str | Path,
    calib: str | Path,
    *,
    eval: str | Path | None = None,  # noqa: A002 - mirrors the CLI's --eval
    labels: str | Path | None = None,
    classes: str | Path | None = None,
    workdir: str | Path = "edgekit-out",
    inputs: ModelInputs | None = None,
    method: str = DEFAULT_METHOD,
    calib_size: int | None = DEFAULT_CALIB_SIZE,
    seed: int = 0,
    batch: int = EVAL_BATCH,
    threads: int = 0,
    max_drop: float | None = None,
    strict: bool = False,
    force: bool = False,
    log=print,
) -> dict:
    """Post-training int8 quantization of a trained model, calibrated on real images, its accuracy cost measured.

    model: the model file (TorchScript, torch.export .pt2, a state_dict with `inputs.arch`, or a pickled module
        with `inputs.trust_pickle`). calib: calibration images (a folder, .npy/.npz, or a named set such as
        "fashion-mnist:train"). eval: labelled or unlabelled eval images; default: a held-out 20 % of `calib`.
    labels, classes: for an eval folder whose labels are not one sorted folder per class: a file mapping file name
        -> class (JSON or CSV), and the model's class names in output order (labels.py); integer-named class
        folders (`0007/`) need neither.
    workdir: the workspace (created; a non-empty folder that is not a workspace is refused unless `force`).
    inputs: how to load the model and read its input (ModelInputs: arch, mean/std, size, ...).
    method: "percentile" (default), "minmax", "entropy" or "auto" (try each, keep the best on held-out images).
    calib_size: calibration images used (sampled with `seed`). batch/threads: evaluation batch, ONNX Runtime threads.
    max_drop: accuracy budget in top-1 points; the most sensitive layers stay in float until the drop fits.
    strict: an fp32 top-1 about chance on labelled eval images (preprocessing or labels wrong) is an error, not a
        warning. log: where progress lines go.

    Writes model.fp32.onnx, model.int8.onnx, calibration.json, quantize.json into the workspace, removing compiled
    targets and the report of an earlier model; returns the quantize.json content.
    """
    inputs = inputs or ModelInputs()
    opts = QuantizeOptions(method, calib_size, seed, batch, threads)
    if max_drop is not None and max_drop < 0:
        raise EdgekitError(f"--max-drop must be 0 or more points, got {max_drop}", "e.g. --max-drop 0.5")
    ws = Workspace(workdir)
    ws.read_manifest()  # refuse a foreign/hand-edited workspace before doing any work
    with ws.writing(create=True, force=force):
        return _quantize(ws, model, calib, eval, (labels, classes), inputs, opts, max_drop, strict, log)


def _quantize(ws: Workspace, model, calib, eval, label_files: tuple, inputs: ModelInputs,  # noqa: A002
              opts: QuantizeOptions, max_drop, strict: bool, log) -> dict:
    seed, threads = opts.seed, opts.threads
    loaded = load_model(model, arch=inputs.arch, trust_pickle=inputs.trust_pickle)
    inputs_key = stage_keys.quantize_key(sha256_of(loaded.path), calib, eval, inputs.identity(), opts.method,
                                         opts.calib_size, seed, max_drop, *label_files)
    calib_set = open_images(calib, "calibration")
    if eval is None and any(label_files):
        raise EdgekitError("--labels/--classes label the --eval images, and there is no --eval",
                           "add --eval DIR, or drop --labels/--classes")
    eval_set = open_images(eval, "eval", *label_files) if eval is not None else None
    pre, notes = resolve_preprocess(loaded, calib_set, inputs)
    batch = example_batch(loaded, parse_shape(inputs.input_shape))
    example = np.stack([calib_set.load(i % len(calib_set), pre) for i in range(batch)])
    torch_forward(loaded, example)  # a wrong shape or channel count fails here, before any work
    log(f"model: {loaded.path} ({loaded.format.replace('_', ' ')}, {count_params(loaded.module):,} parameters)")
    log(f"input: {pre.describe()}")
    for note in notes:
        log(f"  note: {note}")
    if calib_set.skipped:
        log(f"  note: {len(calib_set.skipped)} unreadable or non-image calibration files skipped")

    calib_set, eval_set, eval_label = split_images(calib_set, eval_set, opts.calib_size, seed)
    log(f"calibration: {len(calib_set)} images from {calib}, method {opts.method}")
    log(f"eval: {eval_label}" + (f"; labels: {eval_set.mapping}" if eval_set.mapping else ""))
    converted = {"calibration": conversions(calib_set, pre), "eval": conversions(eval_set, pre)}
    for what, notes in converted.items():
        for note in notes:
            log(f"  note: {what}: {note}")

    with ws.stage("quantize") as stage:
        fp32_path, int8_path = stage.path("model.fp32.onnx"), stage.path("model.int8.onnx")
        check = export_onnx(loaded, example, fp32_path)
        num_classes = int(OrtModel(fp32_path)(example).shape[1])
        check_labels(eval_set, num_classes)

        auto = None
        if opts.method == "auto":
            chosen, auto = choose_method(fp32_path, calib_set, pre, seed,
                                         lambda src, out, c: quantize_qdq(src, out, c), threads)
            log(f"  method auto: {auto['reason']}")
        cal = calibrate(fp32_path, calib_set, pre, chosen if auto else opts.method)
        t0 = time.perf_counter()
        bias_corrected = quantize_qdq(fp32_path, int8_path, cal)
        quant_seconds = time.perf_counter() - t0

        logits = run_models({"fp32": OrtModel(fp32_path, threads), "int8": OrtModel(int8_path, threads)},
                            eval_set, pre, opts.batch, "evaluating fp32 + int8")
        labels = np.asarray(eval_set.labels) if eval_set.labels is not None else None
        chance = preflight.near_chance(metrics.topk(logits["fp32"], labels) if labels is not None else None, num_classes)
        if chance and strict:
            raise EdgekitError(chance, "fix the preprocessing or the labels (without --strict this is a warning)")
        if chance:
            log(f"  WARNING: {chance}")
        sens_x = sensitivity.sample_images(eval_set, pre)
        sens = sensitivity.layer_sensitivity(
            fp32_path, sens_x, lambda src, out, nodes: quantize_qdq(src, out, cal, nodes_to_quantize=nodes), threads)
        log(sensitivity.describe(sens))
        fb = None
        if max_drop is not None:
            fb = fallback_search(fp32_path, int8_path, cal, logits, eval_set, pre, opts, sens, max_drop)
            log(fallback.describe("int8", fb))
        report = build_report(loaded, pre, cal, check, logits, eval_set, eval_label,
                              fp32_path.stat().st_size, int8_path.stat().st_size, quant_seconds)
        report["quantization"]["bias_corrected_convs"] = bias_corrected
        report["sensitivity"] = sensitivity.summary(sens, len(sens_x))
        if auto:
            report["calibration"]["auto"] = auto
        report["input_conversions"] = converted
        report["warnings"] = ([chance] if chance else []) + preflight.depthwise_per_tensor(
            onnx.load(str(int8_path))) + preflight.cpu_without_dot_product()
        for warning in report["warnings"][1 if chance else 0:]:  # the chance warning was said above, loudly
            log(f"  warning: {warning}")
        report["fallback"] = fb and {**fb, "size_bytes": int8_path.stat().st_size}
        write_json_atomic(stage.path("sensitivity.json"), {"images": len(sens_x), "layers": sens})
        write_json_atomic(stage.path("calibration.json"), cal.to_dict())
        write_json_atomic(stage.path("quantize.json"), report)
        committed = stage.commit(
            {
                "source": loaded.describe(),
                # batch None: any; a number: the model fixes it and every runner feeds it that many per call
                "input": {"name": "input", "shape": [fixed_batch(fp32_path), pre.channels, pre.height, pre.width],
                          "num_classes": num_classes},
                "preprocess": pre.to_dict(),
                "classes": list(eval_set.classes) if eval_set.classes else None,
                "calibration_data": {"path": data_ref(calib),
                                     "samples": len(calib_set), "calib_size": opts.calib_size, "seed": seed},
                "eval_data": {"path": data_ref(eval), "labels": data_ref(label_files[0]),
                              "classes": data_ref(label_files[1]), "label_mapping": eval_set.mapping,
                              "images": len(eval_set), "labelled": eval_set.labels is not None},
                "files_sha256": {"model.fp32.onnx": sha256_of(fp32_path), "model.int8.onnx": sha256_of(int8_path)},
                # Layers deliberately left in float: every target leaves them out of int8, and its checks accept it.
                "float_layers": fb["float_layers"] if fb else [],
            },
            {"options": {"method": opts.method, "calib_size": opts.calib_size, "seed": seed, "arch": inputs.arch,
                         "max_drop": max_drop}, "inputs_key": inputs_key},
            restart=True,
        )
    if committed["removed"]:
        log(f"removed what was built from the previous model: {', '.join(committed['removed'])}")
    return report


def fallback_search(fp32_path: Path, int8_path: Path, cal: Calibration, logits: dict[str, np.ndarray],
                    eval_set: ImageSet, pre, opts: QuantizeOptions, sens: list[dict], max_drop: float) -> dict:
    """Rebuild model.int8.onnx with the most sensitive layers excluded until the drop fits; logits["int8"] ends
    up the final model's."""
    labels = np.asarray(eval_set.labels) if eval_set.labels is not None else None

    def build(float_layers: list[str]) -> float:
        if float_layers:  # the all-int8 model is already built and evaluated
            quantize_qdq(fp32_path, int8_path, cal, float_layers)
            logits["int8"] = run_models({"int8": OrtModel(int8_path, opts.threads)}, eval_set, pre, opts.batch,
                                        f"evaluating int8, {len(float_layers)} layer(s) in float")["int8"]
        return fallback.drop_points(logits["int8"], logits["fp32"], labels)

    return fallback.search(build, [r["node"] for r in sens], max_drop)


def build_report(loaded, pre, cal: Calibration, check, logits: dict[str, np.ndarray], eval_set: ImageSet,
                 eval_label: str, fp32_size: int, int8_size: int, quant_seconds: float) -> dict:
    fp32, int8 = logits["fp32"], logits["int8"]
    labels = np.asarray(eval_set.labels) if eval_set.labels is not None else None
    fp32_top1 = metrics.topk(fp32, labels) if labels is not None else None
    int8_top1 = metrics.topk(int8, labels) if labels is not None else None
    report = {
        "fp32": {"top1": fp32_top1, "size_bytes": fp32_size},
        "int8": {
            "top1": int8_top1,
            "agreement": metrics.agreement(int8, fp32),
            "cosine": metrics.cosine(int8, fp32),
            "size_bytes": int8_size,
        },
        "drop_points": None if labels is None else round(100 * (fp32_top1 - int8_top1), 4),
        "size_ratio": int8_size / fp32_size,
        "calibration": {"method": cal.method, "samples": cal.samples, "seconds": round(cal.seconds, 3)},
        "quantization": {
            "format": "QDQ", "weights": "int8 symmetric per-channel", "activations": "int8 asymmetric per-tensor",
            "seconds": round(quant_seconds, 3),
        },
        "eval": {"source": eval_label, "images": len(eval_set), "labelled": labels is not None},
        "export": check.to_dict(),
        "model": loaded.describe(),
        "preprocess": pre.to_dict(),
    }
    if labels is not None:
        fp32_pc = metrics.per_class_top1(fp32, labels, fp32.shape[1])
        int8_pc = metrics.per_class_top1(int8, labels, fp32.shape[1])
        drops = [(a - b) for a, b in zip(fp32_pc, int8_pc) if a is not None and b is not None]
        report["int8"]["worst_class_drop_points"] = round(100 * max(drops), 4) if drops else None
    return report
