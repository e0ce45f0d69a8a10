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

from . import fallback, metrics, outputs, preflight, recovery, sensitivity, stage_keys
from .calibration import METHODS, Calibration, calibrate
from .data import ImageSet, conversions, open_images
from .errors import EdgekitError
from .export import example_batch, export_onnx, fixed_batch, torch_outputs
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
        if self.method not in (*METHODS, *recovery.METHODS, "auto"):
            raise EdgekitError(f"unknown calibration method {self.method!r}",
                               f"use one of: {', '.join((*METHODS, *recovery.METHODS))}, auto")
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
    min_agreement: float | None = None,
    task: str | None = None,
    output_roles: dict[str, str] | list[str] | None = None,
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
    method: "percentile" (default), "minmax", "entropy", "cle" / "cle+adaround" (accuracy recovery on an adjusted graph,
        percentile ranges: recovery.py) or "auto" (try each, keep the best on held-out images).
    calib_size: calibration images used (sampled with `seed`). batch/threads: evaluation batch, ONNX Runtime threads.
    max_drop: accuracy budget in top-1 points; when int8 misses it, the recovery methods are tried first (every layer
        int8), then the most sensitive layers stay in float until the drop fits (needs a class-logits output).
    min_agreement: the other budget (with max_drop too, both must hold): int8's top-1 must equal fp32's on at least
        this percentage of the eval images, labels or not; met the same way (fallback.Budget).
    task: "classify", "segment", "detect" or "features": what the outputs are, where their shapes do not say
        (outputs.py); output_roles: {output name: role} (or ["NAME=ROLE", ...]) for single outputs, winning over both.
    strict: an fp32 top-1 about chance on labelled eval images (preprocessing or labels wrong) is an error, not a
        warning. log: where progress lines go.

    Writes model.fp32.onnx, model.int8.onnx, calibration.json, quantize.json into the workspace, removing compiled
    targets and the report of an earlier model; returns the quantize.json content.
    """
    inputs = inputs or ModelInputs()
    opts = QuantizeOptions(method, calib_size, seed, batch, threads)
    overrides = outputs.parse_overrides(output_roles)
    if task is not None and task not in outputs.TASKS:
        raise EdgekitError(f"unknown --task {task!r}", f"use one of: {', '.join(outputs.TASKS)}")
    budget = fallback.Budget.from_options(max_drop, min_agreement)
    ws = Workspace(workdir)
    ws.read_manifest()  # refuse a foreign/hand-edited workspace before doing any work
    with ws.writing(create=True, force=force):
        return _quantize(ws, model, calib, eval, (labels, classes), inputs, opts, budget, (task, overrides), strict,
                         log)


def _quantize(ws: Workspace, model, calib, eval, label_files: tuple, inputs: ModelInputs,  # noqa: A002
              opts: QuantizeOptions, budget: "fallback.Budget | None", roles: tuple, strict: bool, log) -> dict:
    seed, threads = opts.seed, opts.threads
    loaded = load_model(model, arch=inputs.arch, trust_pickle=inputs.trust_pickle)
    inputs_key = stage_keys.quantize_key(sha256_of(loaded.path), calib, eval, inputs.identity(), opts.method,
                                         opts.calib_size, seed, budget and budget.key(),
                                         *label_files, *roles)  # task, overrides
    calib_set = open_images(calib, "calibration")
    if eval is None and any(label_files):
        raise EdgekitError("--labels/--classes label the --eval images, and there is no --eval",
                           "add --eval DIR, or drop --labels/--classes")
    eval_set = open_images(eval, "eval", *label_files) if eval is not None else None
    pre, notes = resolve_preprocess(loaded, calib_set, inputs)
    batch = example_batch(loaded, parse_shape(inputs.input_shape))
    example = np.stack([calib_set.load(i % len(calib_set), pre) for i in range(batch)])
    # A wrong shape or channel count, or outputs no target can carry, fail here, before any work.
    torch_outputs(loaded, example)
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
        layout = outputs.detect_layout(check.output_names, check.output_shapes, *roles,
                                       num_labels=len(eval_set.classes) if eval_set.classes else None)
        for line in layout.describe():
            log(f"output {line}")
        num_classes = layout.num_classes
        if num_classes is not None:
            check_labels(eval_set, num_classes)
        elif eval_set.labels is not None:
            log("  note: the eval labels are not used: the model has no class-logits output (see --task, --output)")
        if budget is not None and num_classes is None:
            flag = budget.option
            raise EdgekitError(f"{flag} is a top-1 budget and the model has no class-logits output",
                               f"drop {flag} and gate fidelity with `edgekit bench --min-sqnr DB`, or mark the "
                               "logits: --output NAME=logits")

        auto, rec, adjusted = None, None, stage.path(recovery.ADJUSTED_ONNX)
        recover_method = opts.method if opts.method in recovery.METHODS else None
        range_method = recovery.RANGE_METHOD if recover_method else opts.method
        if opts.method == "auto":
            chosen, auto = choose_method(fp32_path, calib_set, pre, seed,
                                         lambda src, out, c: quantize_qdq(src, out, c), threads, layout,
                                         recover=lambda m, out, images: recovery.recover_images(
                                             m, fp32_path, out, images, pre, log),
                                         keep=adjusted, log=log)
            log(f"  method auto: {auto['reason']}")
            range_method, rec = auto["range_method"], auto.get("recovery")
        elif recover_method:
            rec = recovery.recover_images(recover_method, fp32_path, adjusted, calib_set, pre, log, None)
        src = adjusted if rec else fp32_path  # what every int8 artifact is built from; fp32 stays the reference
        cal = calibrate(src, calib_set, pre, range_method)
        t0 = time.perf_counter()
        bias_corrected = quantize_qdq(src, int8_path, cal)
        quant_seconds = time.perf_counter() - t0

        # exact_int8: measured as ARM CPUs, VNNI and TensorRT compute it, also on a CPU whose fused kernels saturate
        int8_model = OrtModel(int8_path, threads, exact_int8=True)
        logits = run_models({"fp32": OrtModel(fp32_path, threads), "int8": int8_model},
                            eval_set, pre, opts.batch, "evaluating fp32 + int8")
        int8_runtime = int8_model.runtime  # says when the int8 ran as written (exact sums)
        del int8_model  # its arena holds a --batch of activations (hundreds of MB at 224 px): gone before sensitivity
        labels = np.asarray(eval_set.labels) if eval_set.labels is not None and num_classes else None
        fp32_logits = layout.primary(logits["fp32"])
        chance = preflight.near_chance(metrics.topk(fp32_logits, labels) if labels is not None else None,
                                       num_classes or 0)
        if chance and strict:
            raise EdgekitError(chance, "fix the preprocessing or the labels (without --strict this is a warning)")
        if chance:
            log(f"  WARNING: {chance}")
        recovered = None
        if budget is not None and rec is None:  # recovery first: every layer stays int8 if it meets the budget
            recovered = recovery_fallback(fp32_path, adjusted, int8_path, calib_set, logits, layout, labels,
                                          eval_set, pre, opts, range_method, budget, log)
            if recovered["chosen"]:
                src, cal, rec = adjusted, recovered.pop("calibration"), recovered.pop("record")
                bias_corrected = recovered.pop("bias_corrected")
        sens_x = sensitivity.sample_images(eval_set, pre)
        sens = sensitivity.layer_sensitivity(
            src, sens_x, lambda s, out, nodes: quantize_qdq(s, out, cal, nodes_to_quantize=nodes), threads)
        log(sensitivity.describe(sens))
        fb = None
        if budget is not None:
            fb = fallback_search(src, int8_path, cal, logits, layout, labels, eval_set, pre, opts, sens, budget, log)
            fb["recovery"] = recovered
            log(fallback.describe("int8", fb))
        report = build_report(loaded, pre, cal, check, logits, layout, labels, eval_set, eval_label,
                              fp32_path.stat().st_size, int8_path.stat().st_size, quant_seconds)
        log(f"int8 vs fp32 per output: {outputs.summary(report['outputs'])}")
        report["quantization"]["bias_corrected_convs"] = bias_corrected
        report["eval"]["int8_runtime"] = int8_runtime
        report["sensitivity"] = sensitivity.summary(sens, len(sens_x))
        if auto:
            report["calibration"]["auto"] = auto
        report["recovery"] = rec and {**rec, "int8_source": recovery.ADJUSTED_ONNX}
        report["input_conversions"] = converted
        report["warnings"] = ([chance] if chance else []) + preflight.depthwise_per_tensor(
            onnx.load(str(int8_path))) + preflight.cpu_without_dot_product()
        for warning in report["warnings"][1 if chance else 0:]:  # the chance warning was said above, loudly
            log(f"  warning: {warning}")
        report["fallback"] = fb and {**fb, "size_bytes": int8_path.stat().st_size}
        write_json_atomic(stage.path("sensitivity.json"), {"images": len(sens_x), "layers": sens})
        write_json_atomic(stage.path("calibration.json"), {**cal.to_dict(), "reference_model": src.name})
        if src != adjusted:
            adjusted.unlink(missing_ok=True)
        write_json_atomic(stage.path("quantize.json"), report)
        limits = budget.limits() if budget else (None, None)  # (max_drop, min_agreement) as given
        committed = stage.commit(
            {
                "source": loaded.describe(),
                # batch None: any; a number: the model fixes it and every runner feeds it that many per call
                "input": {"name": "input", "shape": [fixed_batch(fp32_path), pre.channels, pre.height, pre.width],
                          "num_classes": num_classes},
                # What each output is (detected, or --task/--output): how every later stage reads the runners' arrays.
                "outputs": layout.to_list(),
                "preprocess": pre.to_dict(),
                "classes": list(eval_set.classes) if eval_set.classes else None,
                "calibration_data": {"path": data_ref(calib),
                                     "samples": len(calib_set), "calib_size": opts.calib_size, "seed": seed},
                "eval_data": {"path": data_ref(eval), "labels": data_ref(label_files[0]),
                              "classes": data_ref(label_files[1]), "label_mapping": eval_set.mapping,
                              "images": len(eval_set), "labelled": eval_set.labels is not None},
                "files_sha256": {"model.fp32.onnx": sha256_of(fp32_path), "model.int8.onnx": sha256_of(int8_path),
                                 **({src.name: sha256_of(src)} if rec else {})},
                # The graph every target builds its int8 artifact from: model.fp32.onnx, or the graph accuracy
                # recovery adjusted (CLE / AdaRound weights, its ranges in calibration.json); fp32 references stay
                # model.fp32.onnx.
                "int8_source": src.name,
                "recovery": rec and {"method": rec["method"]},
                # Layers deliberately left in float: every target leaves them out of int8, and its checks accept it.
                "float_layers": fb["float_layers"] if fb else [],
            },
            {"options": {"method": opts.method, "calib_size": opts.calib_size, "seed": seed, "arch": inputs.arch,
                         "max_drop": limits[0],
                         **({"min_agreement": limits[1]} if limits[1] is not None else {}),
                         "task": roles[0], "output_roles": roles[1] or None},
             "inputs_key": inputs_key},
            restart=True,
        )
    if committed["removed"]:
        log(f"removed what was built from the previous model: {', '.join(committed['removed'])}")
    return report


def recovery_fallback(fp32_path: Path, adjusted: Path, int8_path: Path, calib_set: ImageSet, logits, layout, labels,
                      eval_set: ImageSet, pre, opts: QuantizeOptions, range_method: str, budget: fallback.Budget,
                      log) -> dict:
    """The budget (--max-drop / --min-agreement) missed by plain int8: try the recovery methods (recovery.FALLBACK_METHODS, AdaRound within
    recovery.ADAROUND_BUDGET_S) before keeping any layer in float. The best one's adjusted graph, int8 model and
    logits are left in place ("chosen"; its calibration, record and bias-corrected count ride along)."""
    primary = layout.primary
    drop = budget.drop(primary(logits["int8"]), primary(logits["fp32"]), labels)
    if drop <= budget.points:
        return {"initial_drop_points": drop, "tried": [], "chosen": None, "drop_points": drop, "met": True}
    built: dict[str, tuple] = {}
    work = adjusted.parent

    def attempt(method: str) -> float | None:
        src, out = work / f".{method}.adjusted.onnx", work / f".{method}.int8.onnx"
        made = recovery.attempt_graph(method, fp32_path, src, calib_set, pre, range_method, log)
        if made is None:
            return None
        record, cal = made
        corrected = quantize_qdq(src, out, cal)
        y = run_models({"int8": OrtModel(out, opts.threads, exact_int8=True)}, eval_set, pre, opts.batch,
                       f"evaluating int8 after {method}")["int8"]
        built[method] = (src, out, cal, record, corrected, y)
        return budget.drop(primary(y), primary(logits["fp32"]), labels)

    result = fallback.recovery_first(attempt, recovery.FALLBACK_METHODS, budget, drop, log)
    if result["chosen"]:
        src, out, cal, record, corrected, y = built[result["chosen"]]
        src.replace(adjusted)
        out.replace(int8_path)
        logits["int8"] = y
        result.update(calibration=cal, record=record, bias_corrected=corrected)
    for src, out, *_ in built.values():
        src.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
    return result


def fallback_search(fp32_path: Path, int8_path: Path, cal: Calibration, logits: dict[str, np.ndarray], layout,
                    labels, eval_set: ImageSet, pre, opts: QuantizeOptions, sens: list[dict],
                    budget: fallback.Budget, log=print) -> dict:
    """Rebuild model.int8.onnx with the most sensitive layers excluded until the drop fits, then try each of those
    layers back in int8 (the greedy search can add a layer that a later one made unnecessary); logits["int8"] ends
    up the final model's."""
    all_int8 = logits["int8"]  # the all-int8 model is already built and evaluated

    def build(float_layers: list[str]) -> float:
        if float_layers:
            quantize_qdq(fp32_path, int8_path, cal, float_layers)
            exact = OrtModel(int8_path, opts.threads, exact_int8=True)
            logits["int8"] = run_models({"int8": exact}, eval_set, pre, opts.batch,
                                        f"evaluating int8, {len(float_layers)} layer(s) in float")["int8"]
        elif logits["int8"] is not all_int8:  # the second pass came back to every layer int8: rebuild, known logits
            quantize_qdq(fp32_path, int8_path, cal)
            logits["int8"] = all_int8
        return budget.drop(layout.primary(logits["int8"]), layout.primary(logits["fp32"]), labels)

    ranking = [r["node"] for r in sens]
    fb = fallback.search(build, ranking, budget)
    if fb["met"] and len(fb["float_layers"]) > 1:
        log(f"  trying the {len(fb['float_layers'])} float layers back in int8, one at a time")
        fallback.give_back(fb, build, fb["float_layers"], ranking, budget)
    return fb


def build_report(loaded, pre, cal: Calibration, check, logits: dict[str, np.ndarray], layout, labels,
                 eval_set: ImageSet, eval_label: str, fp32_size: int, int8_size: int, quant_seconds: float) -> dict:
    """quantize.json: top-1 and agreement on the class-logits output (None without one), every output's fidelity."""
    per_output = outputs.fidelity(layout, logits["int8"], logits["fp32"])
    fp32, int8 = layout.primary(logits["fp32"]), layout.primary(logits["int8"])
    fp32_top1 = metrics.topk(fp32, labels) if labels is not None else None
    int8_top1 = metrics.topk(int8, labels) if labels is not None else None
    report = {
        "fp32": {"top1": fp32_top1, "size_bytes": fp32_size},
        "int8": {
            "top1": int8_top1,
            "agreement": metrics.agreement(int8, fp32) if int8 is not None else None,
            "cosine": metrics.cosine(logits["int8"], logits["fp32"]),
            "min_sqnr_db": outputs.min_sqnr(per_output),
            "size_bytes": int8_size,
        },
        "drop_points": None if labels is None else round(100 * (fp32_top1 - int8_top1), 4),
        "size_ratio": int8_size / fp32_size,
        "calibration": {"method": cal.method, "samples": cal.samples, "seconds": round(cal.seconds, 3)},
        "quantization": {
            "format": "QDQ", "weights": "int8 symmetric per-channel", "activations": "int8 asymmetric per-tensor",
            "seconds": round(quant_seconds, 3),
        },
        "outputs": per_output,
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
