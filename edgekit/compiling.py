"""The compile stage: the quantized workspace -> artifacts for each target under targets/<name>/.

Each target compiles in its own staged folder and is then checked on the workspace's eval images
(its int8 artifact against its own fp32 reference, in its own runtime) before it is committed, so a
target folder that exists is one that loaded and agreed. Those outputs are kept (validation.npz), so bench
does not evaluate the same artifacts on the same images again. With `--target all`, a target that cannot be
built here is recorded as skipped with the reason, and the others carry on.
"""

from __future__ import annotations

import contextlib
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import fallback, interrupt, metrics, outputs, preflight, recovery, stage_keys
from .data import Preprocess
from .errors import EdgekitError
from .outputs import OutputLayout
from .progress import progress
from .targets import ArtifactPair, CompileContext, get_target, resolve_targets
from .workspace import Workspace, require_quantized, workspace_images, write_json_atomic

DEVICES = ("CPU", "GPU", "NPU", "AUTO")
VALIDATION_BATCH = 32
VALIDATION_FILE = "validation.npz"  # the main pair's outputs on the eval images; bench reuses them


def compile_targets(target: str = "all", *, workdir: str | Path = "edgekit-out", device: str = "CPU",
                    threads: int = 0, batch: int = 1, openvino_source: str | None = None,
                    openvino_cpus: str | None = None, max_drop: float | None = None,
                    min_agreement: float | None = None, log=print) -> dict:
    """Compile the quantized workspace for edge targets; no model argument: it reads the workspace.

    target: "openvino", "arm", "jetson", a comma list, or "all" (targets that cannot be built here are skipped
        with the reason; a named one that cannot is an error). workdir: the workspace `quantize` filled.
    device: the OpenVINO device to record for bench (CPU, GPU, NPU, AUTO); validation always runs on the CPU.
    threads: runtime threads for the validation run (0: all cores). batch: the batch the TensorRT engine is tuned
        for. openvino_source: "qdq" (default, the workspace's ranges) or "nncf" (NNCF on the fp32 IR).
    openvino_cpus: the CPUs the openvino int8 IR must sum exactly on: "vnni" (int8 dot product; GPUs, NPUs) or "all"
        (x86 CPUs without VNNI too: weight ranges widened where their 16-bit sums clip); default: what this host needs.
    max_drop: accuracy budget per target in points: its most sensitive layers stay in float until its drop fits.
    min_agreement: the other budget (with max_drop too, both must hold): the percentage of eval images on which
        the target's int8 top-1 must equal its fp32 reference's (fallback.Budget).

    Each target's artifacts land in targets/<name>/ with compile.json, after its int8 artifact was checked against
    its fp32 reference on the eval images. Returns {name: compile.json content}.
    """
    budget = fallback.Budget.from_options(max_drop, min_agreement)
    if device not in DEVICES:
        raise EdgekitError(f"unknown device {device!r}", f"use one of: {', '.join(DEVICES)}")
    names = resolve_targets(target)
    ws = Workspace(workdir)
    require_quantized(ws)
    with ws.writing():
        return _compile(ws, names, target != "all", device, threads, batch, openvino_source, openvino_cpus, budget,
                        log)


def _compile(ws: Workspace, names: list[str], explicit: bool, device: str, threads: int, batch: int,
             openvino_source: str | None, openvino_cpus: str | None, budget: fallback.Budget | None, log) -> dict:
    manifest = require_quantized(ws)  # again, under the lock: another writer may have re-quantized meanwhile
    for name in names:  # a named target that cannot run here is bad input: say so before doing any work
        reason = get_target(name).available()
        if reason and explicit:
            raise EdgekitError(f"target {name} is not available here: {reason}", get_target(name).install)
    pre = Preprocess.from_dict(manifest["preprocess"])
    calib_set, eval_set, eval_label = workspace_images(manifest)
    options = {"device": device, "batch": batch}
    if openvino_source:
        options["openvino_source"] = openvino_source
    if openvino_cpus:
        options["openvino_cpus"] = openvino_cpus
    results = {}
    for name in names:
        tgt = get_target(name)
        reason = tgt.available()
        if reason:
            log(f"{name}: skipped ({reason}; {tgt.install})")
            results[name] = {"target": name, "status": "skipped", "reason": reason, "install": tgt.install}
            continue
        log(f"{name}: compiling for {tgt.hardware} ({tgt.runtime})")
        results[name] = _compile_one(ws, tgt, manifest, pre, calib_set, eval_set, eval_label, options, threads,
                                     budget, log)
    return results


def _compile_one(ws, tgt, manifest, pre, calib_set, eval_set, eval_label, options, threads, budget, log) -> dict:
    layout = OutputLayout.from_list(manifest.get("outputs"), manifest["input"].get("num_classes"))
    if budget is not None and layout.logits is None:
        flag = budget.option
        raise EdgekitError(f"{flag} is a top-1 budget and the model has no class-logits output",
                           f"drop {flag}; gate fidelity with `edgekit bench --min-sqnr DB`")
    with ws.stage(f"compile-{tgt.name}") as stage:
        rel = f"targets/{tgt.name}"
        out_dir = stage.dir / rel
        built: dict = {}
        source: dict = {}  # compile's own accuracy recovery, when it ran one: {"graph": path, "calibration": path}

        def context(float_layers: list[str]) -> CompileContext:
            return CompileContext(ws.root, out_dir, manifest, pre, calib_set, dict(options), log, list(float_layers),
                                  source.get("graph"), source.get("calibration"))

        def build(float_layers: list[str]) -> float:
            shutil.rmtree(out_dir, ignore_errors=True)  # a fallback step starts from an empty folder
            interrupt.stop_if_exiting()  # after Ctrl-C, parents=True would recreate the removed staging folder
            out_dir.mkdir(parents=True)
            ctx = context(float_layers)
            # Toolkits print progress bars on stdout (NNCF does); stdout belongs to the table or --json.
            with contextlib.redirect_stdout(sys.stderr):
                built["result"] = tgt.compile(ctx)
            # Validation runs where this machine can: the CPU. --device is recorded for bench on the device itself.
            local = {**options, "device": "CPU"}
            built["validation"], built["outputs"] = validate(tgt, out_dir, eval_set, pre, threads, local, layout)
            # Further artifact pairs (arm's .tflite) are checked on the same images: the budget holds for every
            # artifact compile writes, not only the main one.
            variants = {pair.name: validate(tgt, out_dir, eval_set, pre, threads, local, layout, pair)[0]
                        for pair in tgt.pairs(out_dir)[1:]}
            if variants:
                built["validation"]["variants"] = variants
            # The fallback's measure (top-1 points, or disagreement), of the artifact furthest from its fp32: only
            # asked for with a class-logits output (checked above).
            if not (budget and layout.logits):
                return 0.0
            return max(budget.validation_drop(v) for v in (built["validation"], *variants.values()))

        t0 = time.perf_counter()  # the compile time a user waits for: builds, fallback steps and checks

        float_layers = list(manifest.get("float_layers", []))
        fb = None
        if budget is None:
            build(float_layers)
        else:
            with tempfile.TemporaryDirectory(prefix="edgekit-recovery-") as tmp:
                recovered, drop = None, None
                if not manifest.get("recovery"):  # quantize ran none: recovery first, every layer still int8
                    drop = build(float_layers)
                    if drop > budget.points:
                        recovered = _recover(ws, tgt.name, Path(tmp), calib_set, pre, source, build, float_layers,
                                             budget, drop, log)
                        drop = None  # the folder now holds a recovery attempt: the search builds again
                ranking = sensitivity_ranking(ws)
                fb = fallback.search(build, ranking, budget, start=float_layers, start_drop=drop)
                fb["recovery"] = recovered
                if fb["met"] and float_layers:
                    _prune_inherited(fb, build, float_layers, ranking, budget, tgt.name, log)
            log(fallback.describe(tgt.name, fb))
        seconds = time.perf_counter() - t0
        result, validation = built["result"], built["validation"]
        checked = {tgt.name: validation, **{f"{tgt.name} {k}": v for k, v in validation.get("variants", {}).items()}}
        for label, v in checked.items():
            log(f"{label}: int8 vs fp32 on {v['images']} eval images ({v['runtime']}): " + outputs.summary(v["outputs"]))
        info = {
            "target": tgt.name, "status": "ok", "hardware": tgt.hardware, "runtime": tgt.runtime,
            "files": result.files,
            "sizes_bytes": {role: artifact_size(out_dir / f) for role, f in result.files.items()},
            "precision": result.precision, "versions": result.versions, "seconds": round(seconds, 3),
            "inputs": {"model.fp32.onnx": manifest["files_sha256"]["model.fp32.onnx"],
                       "model.int8.onnx": manifest["files_sha256"]["model.int8.onnx"],
                       "calibration_images": len(calib_set)},
            "options": options, "host": platform.machine(),
            "validation": {**validation, "eval": eval_label, "outputs_file": VALIDATION_FILE},
            "notes": result.notes, "details": result.details,
        }
        info["warnings"] = preflight.not_int8(tgt.name, result.precision, tgt.not_int8_hint)
        if tgt.cpu_bound:
            info["warnings"] += preflight.cpu_without_dot_product()
        for warning in info["warnings"]:
            log(f"  warning: {warning}")
        if fb is not None:
            info["details"]["fallback"] = {**fb, "size_bytes": info["sizes_bytes"][next(iter(result.files))]}
        np.savez(out_dir / VALIDATION_FILE, **built["outputs"])
        write_json_atomic(out_dir / "compile.json", info)
        targets = dict(ws.read_manifest().get("targets", {}))
        key = stage_keys.compile_key(manifest["stages"]["quantize"].get("inputs_key"), tgt.name, options["device"],
                                     options["batch"], options.get("openvino_source"), budget and budget.key(),
                                     options.get("openvino_cpus"))
        targets[tgt.name] = {"dir": rel, "files": result.files, "options": options, "inputs_key": key,
                             "validation": {"file": f"{rel}/{VALIDATION_FILE}", "device": "CPU",
                                            "eval_key": stage_keys.workspace_eval_key(manifest)}}
        stage.commit({"targets": targets}, {"options": options}, replace_dir=rel)
    return info


def _prune_inherited(fb: dict, build, inherited: list[str], ranking: list[str], budget: fallback.Budget, name: str,
                     log) -> None:
    """Quantize chose its float layers on the portable model in ONNX Runtime, for its own budget; a target's own
    runtime (OpenVINO's, LiteRT's, TensorRT's kernels, its own Q/DQ placement) or a looser compile budget may not
    need them all. Each one is tried back in int8 on this target, least sensitive first, and stays int8 when the
    budget still holds: every float layer costs speed on the device. Costs one build and check per inherited layer
    (and one more when the last try was not kept)."""
    log(f"{name}: trying quantize's {len(inherited)} float layer(s) back in int8, one at a time")
    back = fallback.give_back(fb, build, inherited, ranking, budget)
    log(f"{name}: {len(back)} of them int8 again, {budget.unit} {budget.amount(fb['drop_points'])}")


def _recover(ws: Workspace, name: str, tmp: Path, calib_set, pre, source: dict, build, float_layers,
             budget: fallback.Budget, drop: float, log) -> dict:
    """compile's budget (--max-drop / --min-agreement) missed on a workspace quantize ran no recovery on: each
    recovery method's adjusted graph (recalibrated with the workspace's range method) is built and checked on this
    target before any layer is kept in float; `source` is left pointing at the best one (empty when none helped)."""
    from .calibration import Calibration

    fp32 = ws.path("model.fp32.onnx")
    method = Calibration.load(ws.path("calibration.json")).method
    made: dict[str, dict] = {}

    def attempt(m: str) -> float | None:
        graph, cal_path = tmp / f"{m}.adjusted.onnx", tmp / f"{m}.calibration.json"
        attempt_made = recovery.attempt_graph(m, fp32, graph, calib_set, pre, method, log, f"{name}: ")
        if attempt_made is None:
            return None
        record, cal = attempt_made
        write_json_atomic(cal_path, {**cal.to_dict(), "reference_model": graph.name})
        made[m] = {"graph": graph, "calibration": cal_path, "record": record}
        source.update(graph=graph, calibration=cal_path)
        return build(float_layers)

    result = fallback.recovery_first(attempt, recovery.FALLBACK_METHODS, budget, drop, log)
    source.clear()
    if result["chosen"]:
        chosen = made[result["chosen"]]
        source.update(graph=chosen["graph"], calibration=chosen["calibration"])
        result["record"] = chosen["record"]
    return result


def sensitivity_ranking(ws: Workspace) -> list[str]:
    """Layers most sensitive first, from quantize's sensitivity.json (absent in workspaces from older edgekits)."""
    path = ws.path("sensitivity.json")
    return [r["node"] for r in json.loads(path.read_text())["layers"]] if path.is_file() else []


def artifact_size(path: Path) -> int:
    """Bytes of an artifact, counting the weights file beside it (OpenVINO's .bin next to its .xml)."""
    weights = path.with_suffix(".bin")
    return path.stat().st_size + (weights.stat().st_size if path.suffix == ".xml" and weights.is_file() else 0)


def validate(tgt, target_dir: Path, eval_set, pre: Preprocess, threads: int,
             options: dict, layout: OutputLayout, pair: ArtifactPair | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Load both artifacts back in the target's runtime and compare them on the eval images:
    (the validation report, {"int8": outputs, "fp32": outputs}). Top-1 and agreement are the class-logits
    output's (None without one); every output's fidelity is in "outputs". `pair`: a further pair the target
    wrote (arm's .tflite), instead of its main one."""
    roles = (pair.int8, pair.reference) if pair else ("int8", "fp32")
    int8, fp32 = (tgt.runner(target_dir, role, threads, options) for role in roles)
    outs: dict[str, list[np.ndarray]] = {"int8": [], "fp32": []}
    with progress(len(eval_set), f"checking {tgt.name}" + (f" {pair.name}" if pair else ""), "img") as bar:
        for x in eval_set.batches(pre, VALIDATION_BATCH):
            outs["int8"].append(int8(x))
            outs["fp32"].append(fp32(x))
            bar.update(len(x))
    a, b = np.concatenate(outs["int8"]), np.concatenate(outs["fp32"])
    per_output = outputs.fidelity(layout, a, b)
    la, lb = layout.primary(a), layout.primary(b)
    report = {"images": len(eval_set), "agreement": metrics.agreement(la, lb) if la is not None else None,
              "cosine": metrics.cosine(a, b), "min_sqnr_db": outputs.min_sqnr(per_output),
              "emulated": bool(int8.emulated), "runtime": int8.runtime, "outputs": per_output}
    if eval_set.labels is not None and la is not None:
        labels = np.asarray(eval_set.labels)
        report.update({"top1": metrics.topk(la, labels), "reference_top1": metrics.topk(lb, labels)})
    return report, {"int8": a, "fp32": b}
