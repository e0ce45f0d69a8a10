"""edgekit against the plain tools, same model, same calibration images, same eval images, one process.

For each model, every row below is built from the same fp32 ONNX export (edgekit's model.fp32.onnx: torch's dynamo
exporter already folds BatchNorm and EfficientNet's ZeroPad2d into the Convs, so no row pays for separate Pad ops)
and the same calibration sample, evaluated on the same eval images, and timed in
interleaved rounds (each round times every row in turn, rotating who goes first), so a busy machine slows them
all alike and the ratios survive even when absolute milliseconds do not.

    rows  PyTorch fp32 eager          the model file run by torch (the reference for ratios and agreement)
          ONNX Runtime fp32           model.fp32.onnx
          ORT quantize_static         onnxruntime.quantization.quantize_static with all its defaults (QDQ, MinMax,
                                      per-tensor int8 weights and activations)
          ORT per-channel             the same with per_channel=True, uint8 activations, int8 weights (the setting
                                      ONNX Runtime's docs recommend for CNNs)
          OpenVINO f32                ov.convert_model(fp32 ONNX), INFERENCE_PRECISION_HINT=f32
          OpenVINO default            the same IR with OpenVINO's default precision (bf16 on CPUs with AVX512-BF16/AMX)
          NNCF plain                  nncf.quantize(ov_model, dataset) with all its defaults
          edgekit openvino fp32       edgekit's fp32 reference IR (activations rewritten for the plugin): not a goal
                                      row, it shows what the graph rewrite alone buys
          edgekit openvino int8       the IR `edgekit compile --target openvino` writes, run as `edgekit bench` runs it
    Every OpenVINO row, plain or edgekit, compiles a static-shape model per batch size it runs.
          edgekit arm (HOST PROXY)    the arm target's int8 ONNX on x86 ONNX Runtime: not ARM latency, not gated
          edgekit jetson (emulated)   the TensorRT Q/DQ model's numerics on ONNX Runtime: accuracy only
          edgekit tflite fp32/int8    the arm target's .tflite pair on LiteRT + XNNPACK (HOST PROXY; the goal is the
                                      int8/fp32 ratio); skipped with the reason without the edgekit[tflite] extra
          AIMET-ONNX CLE+AdaRound     aimet-onnx's CNN recipe (benchmarks/aimet_recipe.py: CLE, per-channel config,
                                      AdaRound, tf_enhanced) in aimet's simulation session: accuracy only; run by
                                      the Python given with --aimet-python (aimet pins its own torch), else skipped

Models: the Fashion-MNIST teacher and student, and EfficientNet-Lite0 (224 px) and Lite2 (260 px) with their ImageNet
weights. The EfficientNets are evaluated on the 500 labelled ImageNet photos of ../shared/data/imagenet-sample (its
labels.json as it is, through `edgekit quantize --labels`) and calibrated on 320 crops of scikit-image's photos
(benchmarks/efficientnet_lite.py), never on the eval photos; without that folder, on crops (agreement only).
Paired McNemar tests compare every edgekit artifact with every other int8 row on the same labelled images.

Threads: 2 everywhere (torch.set_num_threads, ORT intra_op_num_threads, OpenVINO INFERENCE_NUM_THREADS).

    python benchmarks/compare_runtimes.py --aimet-python /path/to/aimet-venv/bin/python --edgekit-min-agreement 99 \
        --edgekit-max-drop 0.5
        # all four models -> benchmarks/RESULTS.md, results.png/json; the EfficientNets' edgekit artifacts with the
        # fidelity budget (`edgekit quantize/compile --min-agreement 99 --max-drop 0.5`)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # efficientnet_lite.py, results_report.py beside this file
REPO = Path(__file__).resolve().parent.parent

import edgekit  # noqa: E402
from edgekit import metrics  # noqa: E402
from edgekit.board.timing import TIMED_CALL, bound_call  # noqa: E402
from edgekit.data import ImageSet, Preprocess  # noqa: E402
from edgekit.environment import environment  # noqa: E402
from edgekit.workspace import workspace_images  # noqa: E402
from edgekit.workspace import Workspace  # noqa: E402

FASHION = {"mean": "0.286", "std": "0.353"}
EVAL_BATCH = 64
TP_BATCH = 32
REFERENCE = "PyTorch fp32 eager"
EDGEKIT_OV = "edgekit openvino int8"
ORT_PC = "ORT quantize_static per-channel"


@dataclass
class Case:
    """One model to compare on: file, data and the preprocessing `edgekit quantize` needs."""

    key: str
    title: str
    model: Path
    calib: str
    eval: str
    options: dict
    eval_note: str
    labels: str | None = None  # --labels for the eval images (imagenet-sample's labels.json)
    budget: dict = field(default_factory=dict)  # edgekit's accuracy budget, e.g. {"min_agreement": 99.0}


@dataclass
class Row:
    name: str
    run: Callable[[np.ndarray], np.ndarray] | None  # batch -> logits; None when the row was skipped
    size_bytes: int | None = None
    timed: bool = True  # False: accuracy only (emulated numerics)
    label: str = ""  # "host proxy", "emulated", ...
    config: str = ""  # runtime settings that matter for the latency
    note: str = ""  # why a row was skipped, or what to know about it
    result: dict = field(default_factory=dict)
    logits: np.ndarray | None = None  # computed elsewhere (the AIMET subprocess), in the eval set's order


# ---------------------------------------------------------------------------------------------------- the cases


def cases(args) -> tuple[list[Case], list[str]]:
    """The models asked for; a missing student is a note, not an error (it is added to the repo later)."""
    chosen, notes = [], []
    for key in args.models.split(","):
        if key == "teacher":
            chosen.append(Case("teacher", "Fashion-MNIST teacher (models/fashion_resnet.pt2)",
                               REPO / "models/fashion_resnet.pt2", str(REPO / "calibration"), "fashion-mnist:test",
                               FASHION, "top-1 on the Fashion-MNIST test set"))
        elif key == "student":
            if not args.student.is_file():
                notes.append(f"distilled student skipped: {args.student} does not exist (pass --student PATH)")
                continue
            chosen.append(Case("student", f"Fashion-MNIST distilled student ({args.student.name})", args.student,
                               str(REPO / "calibration"), "fashion-mnist:test", FASHION,
                               "top-1 on the Fashion-MNIST test set"))
        elif key in ("lite0", "lite2", "efficientnet"):
            chosen.append(efficientnet_case("lite0" if key == "efficientnet" else key, args, notes))
        else:
            raise SystemExit(f"unknown model {key!r}: use teacher, student, lite0, lite2")
    return chosen, notes


def efficientnet_case(variant: str, args, notes: list[str]) -> Case:
    from efficientnet_lite import VARIANTS, prepare

    budget = {k: v for k, v in (("min_agreement", args.edgekit_min_agreement), ("max_drop", args.edgekit_max_drop))
              if v is not None}
    paths = prepare(args.workdir / "efficientnet", variant)  # one crop set for both variants, drawn once
    size = VARIANTS[variant][0]
    title = f"EfficientNet-{variant.capitalize()}, {size} px (ImageNet weights)"
    sample = args.imagenet_sample
    if sample and (sample / "labels.json").is_file():
        return Case(variant, title, paths["model"], str(paths["calib"]), str(sample), paths["preprocess"],
                    f"top-1 on labelled ImageNet photos ({sample.name}/ with its labels.json as it is)",
                    labels=str(sample / "labels.json"), budget=budget)
    notes.append(f"{variant}: no labelled ImageNet sample at {sample} (--imagenet-sample): agreement on crops only")
    return Case(variant, title, paths["model"], str(paths["calib"]), str(paths["eval"]), paths["preprocess"],
                "top-1 agreement with PyTorch fp32 on real-photo crops (no labelled ImageNet here)", budget=budget)


def default_imagenet_sample() -> Path | None:
    """The shared 500 labelled photos: beside the checkout (../shared), else the project's /work/shared."""
    for root in (REPO.parent / "shared", Path("/work/shared")):
        if (root / "data/imagenet-sample/labels.json").is_file():
            return root / "data/imagenet-sample"
    return None


# ------------------------------------------------------------------------------------------------- edgekit side


def edgekit_workspace(case: Case, root: Path, threads: int, reuse: bool) -> Path:
    """`edgekit quantize` + `edgekit compile --target openvino,arm,jetson` through the Python API."""
    ws = root / f"ws-{case.key}"
    if reuse and (ws / "targets/openvino/compile.json").is_file() and built_with(ws) == case.budget:
        print(f"[{case.key}] reusing {ws}")
        return ws
    shutil.rmtree(ws, ignore_errors=True)
    print(f"[{case.key}] edgekit quantize {case.model.name} (calibration {case.calib}, eval {case.eval})")
    t0 = time.perf_counter()
    edgekit.quantize(case.model, case.calib, eval=case.eval, labels=case.labels, workdir=ws, threads=threads,
                     log=_indent, inputs=edgekit.ModelInputs(**case.options), **case.budget)
    print(f"[{case.key}] edgekit compile --target openvino,arm,jetson {budget_flags(case.budget)}")
    edgekit.compile("openvino,arm,jetson", workdir=ws, threads=threads, log=_indent, **case.budget)
    print(f"[{case.key}] edgekit done in {time.perf_counter() - t0:.0f} s")
    return ws


def budget_flags(budget: dict) -> str:
    return " ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in budget.items())


def built_with(ws: Path) -> dict:
    """The accuracy budget a workspace was quantized with, as Case.budget spells it."""
    options = json.loads((ws / "manifest.json").read_text())["stages"]["quantize"]["options"]
    return {k: options[k] for k in ("max_drop", "min_agreement") if options.get(k) is not None}


def fallback_note(ws: Path, target: str) -> str:
    """What edgekit's budget did on this target's artifact: nothing, or the layers it kept in float."""
    fb = json.loads((ws / "targets" / target / "compile.json").read_text())["details"].get("fallback")
    if not fb:
        return ""
    flag = budget_flags(built_with(ws))
    return f"; {flag}: {len(fb['float_layers'])} layer(s) in float" + ("" if fb["met"] else ", NOT met")


def _indent(msg: str) -> None:
    print(f"    {msg}")


def target_size(ws: Path, target: str) -> int:
    return json.loads((ws / "targets" / target / "compile.json").read_text())["sizes_bytes"]["int8"]


def edgekit_rows(ws: Path, threads: int) -> list[Row]:
    from edgekit.targets import get_target

    rows = []
    ov = get_target("openvino")
    fp32_ir = ws / "targets/openvino/model.fp32.xml"
    rows.append(Row("edgekit openvino fp32 (tuned graph)", ov.runner(ws / "targets/openvino", "fp32", threads),
                    ir_size(fp32_ir), config="edgekit's fp32 reference IR, activations rewritten for the plugin",
                    note="not a goal row: shows how much of edgekit's lead is the graph rewrite, not int8"))
    rows.append(Row("edgekit openvino int8", ov.runner(ws / "targets/openvino", "int8", threads),
                    target_size(ws, "openvino"),
                    config="edgekit's runner (PERFORMANCE_HINT=LATENCY, precision f32)" + fallback_note(ws, "openvino")))
    arm_run = get_target("arm").runner(ws / "targets/arm", "int8", threads)
    rows.append(Row("edgekit arm int8 (HOST PROXY)", arm_run, target_size(ws, "arm"), label="host proxy",
                    config=f"x86 {arm_run.runtime}" + fallback_note(ws, "arm"),
                    note="ARM artifact timed on x86: not ARM latency, not gated"))
    jetson = get_target("jetson")
    run = jetson.runner(ws / "targets/jetson", "int8", threads)
    emulated = getattr(run, "emulated", False)
    rows.append(Row("edgekit jetson numerics" + (" (emulated)" if emulated else ""), run, target_size(ws, "jetson"),
                    timed=not emulated, label="emulated" if emulated else "", config=fallback_note(ws, "jetson")[2:],
                    note="TensorRT Q/DQ graph run by ONNX Runtime: accuracy only" if emulated else ""))
    rows.extend(tflite_rows(ws, threads))
    return rows


TFLITE_INT8, TFLITE_FP32 = "edgekit tflite int8 (XNNPACK, HOST PROXY)", "edgekit tflite fp32 (XNNPACK, HOST PROXY)"


def tflite_rows(ws: Path, threads: int) -> list[Row]:
    """The arm target's .tflite pair (int8 and its fp32 reference) on LiteRT + XNNPACK, the kernels ARM CPUs run;
    timed here on x86, so a host proxy. One skipped row with the reason when the `edgekit[tflite]` extra is not
    installed or the export was skipped."""
    from edgekit.targets import get_target

    proxy = {"label": "host proxy", "config": f"LiteRT Interpreter + XNNPACK, {threads} threads",
             "note": "ARM artifact timed on x86 (XNNPACK's x86 kernels): not ARM latency"}
    folder = ws / "targets/arm"
    files = json.loads((folder / "compile.json").read_text())["files"]
    if "tflite_int8" not in files:
        return [Row(TFLITE_INT8, None, note="skipped: the arm target wrote no .tflite (the edgekit[tflite] extra is "
                                            "not installed here, or compile.json's notes say why)")]
    arm = get_target("arm")
    return [Row(TFLITE_FP32, arm.runner(folder, "tflite_fp32", threads), (folder / files["tflite_fp32"]).stat().st_size,
                **proxy),
            Row(TFLITE_INT8, arm.runner(folder, "tflite_int8", threads), (folder / files["tflite_int8"]).stat().st_size,
                **{**proxy, "config": proxy["config"] + fallback_note(ws, "arm").replace("float", "float (the arm "
                                                                                            "target's)")})]


# ------------------------------------------------------------------------------------------------ plain tools


def torch_row(model_path: Path, threads: int) -> Row:
    import torch

    from edgekit.model import load_model

    torch.set_num_threads(threads)
    module = load_model(model_path).module

    class Run:
        def __call__(self, x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(x)).numpy()

        def bind(self, x: np.ndarray):  # the forward pass alone, as every row is timed (bound_call)
            tensor = torch.from_numpy(x)

            def forward():
                with torch.inference_mode():
                    module(tensor)
            return forward

    return Row(REFERENCE, Run(), model_path.stat().st_size, config=f"torch.set_num_threads({threads})")


def ort_row(name: str, path: Path, threads: int, int8: bool = False) -> Row:
    """int8: measured like edgekit's ONNX int8 rows, as written (exact sums) on an x86 CPU whose fused int8 kernels
    saturate (edgekit.board.ort_session.int8_sums_saturate_here), so neither side carries that CPU's errors."""
    from edgekit.ort_runner import OrtModel

    model = OrtModel(path, threads, exact_int8=int8)
    return Row(name, model, path.stat().st_size, config=f"intra_op_num_threads={threads}"
               + (", Q/DQ as written (this CPU's int8 kernels saturate)" if "as written" in model.runtime else ""))


def ort_quantize_static_defaults(fp32: Path, out: Path, calib: ImageSet, pre: Preprocess) -> Path:
    """quantize_static with nothing but its required arguments: what a user gets out of the box."""
    from onnxruntime.quantization import quantize_static

    from edgekit.calibration import ImageReader

    quantize_static(str(fp32), str(out), ImageReader(calib, pre))
    return out


def ort_quantize_static_per_channel(fp32: Path, out: Path, calib: ImageSet, pre: Preprocess) -> Path:
    """quantize_static as ONNX Runtime's docs advise for CNNs: per-channel int8 weights, uint8 activations."""
    from onnxruntime.quantization import QuantType, quantize_static

    from edgekit.calibration import ImageReader

    quantize_static(str(fp32), str(out), ImageReader(calib, pre), per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


AIMET = "AIMET-ONNX CLE + AdaRound, per-channel (simulated)"


def aimet_row(case: Case, ws: Path, calib: ImageSet, eval_set: ImageSet, pre: Preprocess, args) -> Row:
    """benchmarks/aimet_recipe.py in the Python that has aimet-onnx, on the same preprocessed calibration and eval
    images (written as .npy); accuracy only. Skipped with the reason when no such Python was given.

    AdaRound takes about 24 minutes (Lite0) and an hour (Lite2) on 2 cores and does not depend on edgekit's
    settings, so its logits are kept in --aimet-cache under a key made of everything they depend on (the fp32 ONNX,
    the preprocessed calibration and eval arrays, the iterations). A logits file under that key is the output of
    exactly this computation, so any run uses it; benchmarks/aimet-cache/ holds the committed ones (each .json says
    when and how long it ran)."""
    if not args.aimet_python:
        return Row(AIMET, None, timed=False, note="skipped: pass --aimet-python (a Python with aimet-onnx 2.42, "
                                                  "`pip install 'edgekit[aimet]' torchvision==0.28.0`)")
    calib_npy, eval_npy = ws / "aimet_calib.npy", ws / "aimet_eval.npy"
    np.save(calib_npy, np.stack([calib.load(i, pre) for i in range(len(calib))]))
    np.save(eval_npy, np.stack([eval_set.load(i, pre) for i in range(len(eval_set))]))
    try:
        key = aimet_key(ws / "model.fp32.onnx", calib_npy, eval_npy, args)
        cache = args.aimet_cache / f"{case.key}-{key}"
        out = cache / "aimet_logits.npy"
        if out.is_file() and out.with_suffix(".json").is_file():
            print(f"[{case.key}] AIMET-ONNX recipe: logits of the run cached in {cache}")
        elif args.aimet_cache_only:
            return Row(AIMET, None, timed=False, note=f"not run: --aimet-cache-only and no AIMET run of this model on "
                                                      f"these inputs in {cache.parent} (run once without it)")
        else:
            cache.mkdir(parents=True, exist_ok=True)
            command = [str(args.aimet_python), str(Path(__file__).resolve().parent / "aimet_recipe.py"),
                       "--model", str(ws / "model.fp32.onnx"), "--calib", str(calib_npy), "--eval", str(eval_npy),
                       "--out", str(out), "--iterations", str(args.adaround_iterations)]
            print(f"[{case.key}] AIMET-ONNX recipe: CLE + AdaRound ({args.adaround_iterations} iterations/layer)")
            subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    finally:
        for f in (calib_npy, eval_npy):
            f.unlink(missing_ok=True)
    info = json.loads(out.with_suffix(".json").read_text())
    return Row(AIMET, None, timed=False, label="simulated", logits=np.load(out),
               config=f"aimet-onnx {info['aimet_onnx']}, {info['config_file']}, tf_enhanced, AdaRound "
                      f"{info['iterations']} iterations/layer ({info['seconds']['adaround']:.0f} s"
                      + (f", run {info['date']}" if "date" in info else "") + ")",
               note="aimet's QuantSim session (simulated int8): accuracy only")


def aimet_key(fp32: Path, calib_npy: Path, eval_npy: Path, args) -> str:
    """What the AIMET row's logits depend on, hashed: the model, the exact input arrays, the AdaRound steps."""
    import hashlib

    h = hashlib.sha256(f"iterations={args.adaround_iterations}".encode())
    for f in (fp32, calib_npy, eval_npy):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def ov_row(name: str, path: Path, threads: int, precision: str | None, size: int) -> Row:
    """A plain OpenVINO row. Like edgekit's runner it compiles one static-shape model per batch size it runs
    (edgekit.board.openvino_board.StaticShapes, as `benchmark_app -shape` would): the IRs keep a dynamic batch, and a
    dynamic compilation pays shape inference on every call, which would hand edgekit a lead that has nothing to
    do with quantization."""
    import openvino as ov

    from edgekit.board.openvino_board import StaticShapes

    config = {"INFERENCE_NUM_THREADS": threads}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    core = ov.Core()
    compiled_for = StaticShapes(core, path, "CPU", config, core.compile_model(core.read_model(path), "CPU", config))
    used = compiled_for(1).get_property("INFERENCE_PRECISION_HINT")  # what the plugin actually chose

    class Run:
        def __call__(self, x: np.ndarray) -> np.ndarray:
            return compiled_for(len(x))(np.ascontiguousarray(x, dtype=np.float32))[0]

        def bind(self, x: np.ndarray):  # an infer request with x set: the inference alone, as edgekit's runner does
            request = compiled_for(len(x)).create_infer_request()
            request.set_input_tensor(ov.Tensor(x))
            return request.infer

    return Row(name, Run(), size, config=f"INFERENCE_NUM_THREADS={threads}, precision {used}, static shape per batch")


def nncf_plain(fp32: Path, calib: ImageSet, pre: Preprocess, out_dir: Path) -> Path:
    """nncf.quantize on the OpenVINO model with every default (preset, subset size, bias correction)."""
    import nncf
    import openvino as ov

    model = ov.convert_model(str(fp32))
    dataset = nncf.Dataset(range(len(calib)), lambda i: calib.load(i, pre)[None])
    quantized = nncf.quantize(model, dataset)
    path = out_dir / "nncf_plain.xml"
    ov.save_model(quantized, path, compress_to_fp16=False)
    return path


def ir_size(xml: Path) -> int:
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def plain_fp32_ir(fp32: Path, out_dir: Path) -> Path:
    """ov.convert_model of the fp32 ONNX as is: what a user starts from (edgekit's own fp32 IR has its activations
    rewritten for the plugin, targets/openvino_graph.py, and gets a row of its own)."""
    import openvino as ov

    path = out_dir / "openvino_plain.fp32.xml"
    ov.save_model(ov.convert_model(str(fp32)), path, compress_to_fp16=False)
    return path


def plain_rows(case: Case, ws: Path, calib: ImageSet, pre: Preprocess, threads: int) -> list[Row]:
    fp32 = ws / "model.fp32.onnx"
    fp32_ir = plain_fp32_ir(fp32, ws)
    rows = [torch_row(case.model, threads), ort_row("ONNX Runtime fp32", fp32, threads)]
    print(f"[{case.key}] ORT quantize_static (defaults, then per-channel)")
    qs = ort_quantize_static_defaults(fp32, ws / "ort_quantize_static.onnx", calib, pre)
    rows.append(ort_row("ORT quantize_static defaults", qs, threads, int8=True))
    pc = ort_quantize_static_per_channel(fp32, ws / "ort_quantize_static_per_channel.onnx", calib, pre)
    rows.append(ort_row(ORT_PC, pc, threads, int8=True))
    rows.append(ov_row("OpenVINO f32", fp32_ir, threads, "f32", ir_size(fp32_ir)))
    rows.append(ov_row("OpenVINO default", fp32_ir, threads, None, ir_size(fp32_ir)))
    print(f"[{case.key}] nncf.quantize (defaults) on {len(calib)} calibration images")
    nn = nncf_plain(fp32, calib, pre, ws)
    rows.append(ov_row("NNCF plain (defaults)", nn, threads, None, ir_size(nn)))
    return rows


# -------------------------------------------------------------------------------------------------- measuring


def evaluate(rows: list[Row], images: ImageSet, pre: Preprocess, key: str) -> dict[str, np.ndarray]:
    """Logits of every row on every eval image; each batch is decoded once and fed to all rows."""
    running = [r for r in rows if r.logits is None]
    outs: dict[str, list[np.ndarray]] = {r.name: [] for r in running}
    with tqdm(total=len(images), desc=f"[{key}] evaluating {len(running)} rows", unit="img", dynamic_ncols=True) as bar:
        for x in images.batches(pre, EVAL_BATCH):
            for r in running:
                outs[r.name].append(r.run(x))
            bar.update(len(x))
    return {**{k: np.concatenate(v) for k, v in outs.items()}, **{r.name: r.logits for r in rows if r.logits is not None}}


def paired_counts(rows: list[Row], logits: dict[str, np.ndarray], labels: np.ndarray) -> None:
    """The images behind each top-1 comparison, for McNemar's test in the report: every row against edgekit's
    openvino row, and every edgekit int8 artifact against every other tool's int8 row."""
    right = {r.name: logits[r.name].argmax(1) == labels for r in rows}

    def counts(mine: str, other: str) -> dict:
        return {"only_this_right": int((right[mine] & ~right[other]).sum()),
                "only_other_right": int((right[other] & ~right[mine]).sum())}

    anchors = [r.name for r in rows if is_anchor(r.name)]
    for r in rows:
        if EDGEKIT_OV in right and r.name != EDGEKIT_OV:
            c = counts(EDGEKIT_OV, r.name)
            r.result["vs_edgekit_openvino"] = {"only_edgekit_right": c["only_this_right"],
                                               "only_this_right": c["only_other_right"]}
        if is_edgekit_int8(r.name):
            r.result["vs_anchors"] = {a: counts(r.name, a) for a in anchors}


def is_edgekit_int8(name: str) -> bool:
    return name.startswith("edgekit") and "fp32" not in name


def is_anchor(name: str) -> bool:
    """Another tool's int8 model: the rows edgekit's artifacts must be at least as accurate as."""
    return name.startswith(("ORT quantize_static", "NNCF", "AIMET"))


def interleaved(rows: list[Row], x: np.ndarray, rounds: int, calls: int, warmup: int, desc: str) -> dict[str, list[float]]:
    """Per-call seconds: `rounds` rounds, each timing `calls` calls of every row, the starting row rotating. A call
    is the row's inference on an input already handed to its runtime (edgekit.board.timing.bound_call, the same for
    every row)."""
    bound = {r.name: bound_call(r.run, x) for r in rows}
    for r in rows:
        for _ in range(warmup):
            bound[r.name]()
    times: dict[str, list[float]] = {r.name: [] for r in rows}
    for i in tqdm(range(rounds), desc=desc, unit="round", dynamic_ncols=True):
        for r in rows[i % len(rows):] + rows[: i % len(rows)]:
            call = bound[r.name]
            for _ in range(calls):
                t0 = time.perf_counter()
                call()
                times[r.name].append(time.perf_counter() - t0)
    return times


def measure(case: Case, rows: list[Row], eval_set: ImageSet, pre: Preprocess, args) -> None:
    live = [r for r in rows if r.run is not None or r.logits is not None]
    logits = evaluate(live, eval_set, pre, case.key)
    labels = np.asarray(eval_set.labels) if eval_set.labels is not None else None
    ref = logits[REFERENCE]
    for r in live:
        r.result.update({"agreement": metrics.agreement(logits[r.name], ref), "cosine": metrics.cosine(logits[r.name], ref),
                         "top1": metrics.topk(logits[r.name], labels) if labels is not None else None,
                         "images": len(eval_set)})
    if labels is not None:
        paired_counts(live, logits, labels)
    timed = [r for r in live if r.timed and r.run is not None]
    x1 = eval_set.load(0, pre)[None]
    rounds = max(1, args.rounds)
    lat = interleaved(timed, x1, rounds, max(1, args.runs // rounds), 10, f"[{case.key}] batch-1 latency")
    x32 = np.stack([eval_set.load(i % len(eval_set), pre) for i in range(TP_BATCH)])
    tp = interleaved(timed, x32, args.tp_rounds, 2, 1, f"[{case.key}] batch-{TP_BATCH} throughput")
    ref_p50 = np.median(lat[REFERENCE])
    per_round = max(1, args.runs // rounds)
    for r in timed:
        p50 = float(np.median(lat[r.name]))
        # Each round's p50 too: rows compared round by round see the same machine load (results_report's spread).
        by_round = np.asarray(lat[r.name]).reshape(rounds, per_round)
        r.result.update({"p50_ms": 1000 * p50, "p99_ms": 1000 * float(np.percentile(lat[r.name], 99)),
                         "p50_rounds_ms": [round(1000 * float(v), 4) for v in np.median(by_round, axis=1)],
                         "latency_calls": len(lat[r.name]), "ratio_p50": p50 / ref_p50,
                         "throughput_ips": TP_BATCH / float(np.median(tp[r.name])), "throughput_calls": len(tp[r.name])})


def run_case(case: Case, args) -> dict:
    ws = edgekit_workspace(case, args.workdir, args.threads, args.reuse)
    manifest = Workspace(ws).read_manifest()
    pre = Preprocess.from_dict(manifest["preprocess"])
    calib, eval_set, eval_label = workspace_images(manifest)  # exactly the images edgekit calibrated/evaluated on
    rows = plain_rows(case, ws, calib, pre, args.threads) + edgekit_rows(ws, args.threads)
    if case.key.startswith("lite"):
        rows.append(aimet_row(case, ws, calib, eval_set, pre, args))
    measure(case, rows, eval_set, pre, args)
    return {"key": case.key, "title": case.title, "model": str(case.model), "eval": eval_label,
            "eval_note": case.eval_note, "calibration_images": len(calib), "labelled": eval_set.labels is not None,
            "rows": [{"name": r.name, "size_bytes": r.size_bytes, "label": r.label, "config": r.config, "note": r.note,
                      "timed": r.timed, "skipped": r.run is None and r.logits is None, **r.result} for r in rows]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="teacher,student,lite0,lite2", help="comma list: teacher,student,lite0,lite2")
    ap.add_argument("--student", type=Path, default=REPO / "models/fashion_student.pt2")
    ap.add_argument("--threads", type=int, default=2)
    # 50 short rounds, not 10 long ones: load on this shared machine drifts within seconds, and the finer the rows
    # interleave the more alike it hits them. The same Lite0 IRs, edgekit openvino vs plain NNCF: 1.12x with 200
    # calls in 10 rounds (2026-12-02 10:55 run), 1.00x with 500 in 50 (`--models lite0 --reuse --rounds 50 --runs
    # 500`, 11:43 UTC); their batch-32 throughput was equal in both.
    ap.add_argument("--runs", type=int, default=500, help="batch-1 calls per row, spread over --rounds")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--tp-rounds", type=int, default=3, help="batch-32 rounds (2 calls per row each)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/edgekit-bench"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks")
    ap.add_argument("--reuse", action="store_true", help="reuse finished edgekit workspaces in --workdir")
    ap.add_argument("--imagenet-sample", type=Path, default=default_imagenet_sample(),
                    help="folder of labelled ImageNet photos with labels.json (default: the shared imagenet-sample)")
    ap.add_argument("--aimet-python", type=Path, default=None,
                    help="a Python with aimet-onnx for the AIMET row (aimet pins its own torch); none: row skipped")
    ap.add_argument("--adaround-iterations", type=int, default=300, help="AdaRound steps per layer for the AIMET row")
    ap.add_argument("--aimet-cache", type=Path, default=REPO / "benchmarks/aimet-cache",
                    help="AIMET logits kept under a hash of the model and input arrays (default: the committed "
                         "benchmarks/aimet-cache); a run whose inputs hash the same uses them instead of AdaRound")
    ap.add_argument("--aimet-cache-only", action="store_true",
                    help="AIMET rows only from --aimet-cache, never a new AdaRound run (24 min for Lite0, an hour "
                         "for Lite2 on 2 cores); a model without one gets the row 'not run'")
    ap.add_argument("--edgekit-min-agreement", type=float, default=None, metavar="PCT",
                    help="the EfficientNets' edgekit quantize and compile get --min-agreement PCT (their fidelity "
                         "goal); default: no budget")
    ap.add_argument("--edgekit-max-drop", type=float, default=None, metavar="PTS",
                    help="and/or --max-drop PTS for the EfficientNets' edgekit quantize and compile (with "
                         "--edgekit-min-agreement, both must hold: the issue's goal is agreement >= 99 %% and top-1 "
                         "within 0.5 points)")
    args = ap.parse_args()

    from results_report import write_results

    started = time.time()
    env = {**environment(), "load_before": os.getloadavg(), "threads": args.threads,
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": command_line()}
    chosen, notes = cases(args)
    results = []
    for case in chosen:
        results.append(run_case(case, args))
        print(f"[{case.key}] done; {time.time() - started:.0f} s so far")
    env.update({"load_after": os.getloadavg(), "seconds": round(time.time() - started)})
    write_results({"environment": env, "notes": notes, "models": results,
                   "settings": {"runs": args.runs, "rounds": args.rounds, "tp_rounds": args.tp_rounds,
                                "timed_call": TIMED_CALL}}, args.out)


def command_line() -> str:
    """The command as run from the repository root, for RESULTS.md."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return " ".join(["python", str(shown), *sys.argv[1:]])


if __name__ == "__main__":
    main()
