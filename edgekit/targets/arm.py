"""ARM Cortex-A: int8 QDQ ONNX in the TFLite integer scheme, run by ONNX Runtime (XNNPACK EP where it exists); with
the optional `edgekit[tflite]` extra also a full-integer int8 .tflite and its fp32 reference (tflite_export.py), run
by LiteRT's Interpreter with XNNPACK (board/tflite_board.py): runner(which="tflite_int8" / "tflite_fp32").

The scheme (tensorflow.org/lite/performance/quantization_spec): weights int8 symmetric (zero point 0, values in
[-127, 127]), per output channel for Conv; activations int8 per-tensor, asymmetric allowed; bias int32 with
zero point 0 and scale = input scale x weight scale, so the int32 accumulator adds it directly; Softmax, Logistic
and Tanh outputs have fixed scale and zero point. Integer kernels on ARM (XNNPACK, TFLite, Arm NN) are written for
exactly this, so a graph that conforms runs integer end to end.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import numpy as np
import onnx

from .. import emulator
from ..errors import EdgekitError
from ..bias_correction import quantize_bias_corrected
from ..qdq_build import keep_float_layers_float
from ..calibration import Calibration, quantize_with_ranges
from . import tflite_export
from ..board.arm_board import ArmModel
from .base import ArtifactPair, CompileContext, CompileResult, Runner, open_on_board_module
from ..qdq_rules import (DQ, Q, WEIGHTED_OPS, QdqGraph, activation_problems, checker_problems, 
                        precision_by_op, weight_problems)

FILES = {"int8": "model.int8.onnx", "fp32": "model.fp32.onnx"}
ARM_MACHINES = ("aarch64", "arm64", "armv7l", "armv8l")
# Ops whose int8 output (scale, zero point) the TFLite spec fixes: their kernels use lookup tables built for it.
FIXED_OUTPUT_QPARAMS = {"Softmax": (1 / 256, -128), "Sigmoid": (1 / 256, -128), "Tanh": (1 / 128, 0)}


class ArmTarget:
    name = "arm"
    hardware = "ARM Cortex-A CPUs (phones, Raspberry Pi, i.MX)"
    runtime = "ONNX Runtime (CPU / XNNPACK EP)"
    artifact = "int8 QDQ ONNX, TFLite integer scheme (+ int8 .tflite for LiteRT/XNNPACK with edgekit[tflite])"
    install = "pip install onnxruntime"
    cpu_bound = True
    native_machines = ARM_MACHINES  # elsewhere its timings are a host proxy: x86 kernels, not ARM's
    not_int8_hint = "ONNX Runtime runs them in fp32: layers kept in float (--max-drop, --min-agreement) or without Q/DQ on both sides"

    def available(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime not installed"
        return None

    def runtime_status(self) -> str:
        reason = self.available()
        if reason:
            return f"no: {reason}"
        tflite = tflite_export.missing()
        # Whether `bench --emulate` can run the artifacts on an emulated aarch64 CPU (edgekit/emulator.py).
        return ("yes" + (f" (no .tflite pair: {tflite})" if tflite else " (+ .tflite pair)")
                + f"; aarch64 emulation: {emulator.status_line()}")

    def compile(self, ctx: CompileContext) -> CompileResult:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType

        int8_path = ctx.out_dir / FILES["int8"]
        cal = Calibration.load(ctx.calibration_json)
        overrides = _fixed_output_overrides(onnx.load(str(ctx.int8_source)))

        def build(source: Path) -> None:
            quantize_with_ranges(
                source, int8_path, cal,
                per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=ctx.float_layers,  # no Q/DQ around them: ORT runs them in fp32
                # ORT's QDQ quantizer gives Conv/Gemm bias int32 (scale = input x weight scale) by default.
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False, "TensorQuantOverrides": overrides},
            )

        # The same bias correction as the portable model (bias_correction.py): the int32 bias absorbs the mean shift
        # the int8 weights' rounding causes; a TFLite-scheme graph carries it like any bias.
        # From the int8 source: model.fp32.onnx, or the graph accuracy recovery adjusted (recovery.py).
        corrected = quantize_bias_corrected(ctx.int8_source, build, int8_path, cal.channel_means)
        keep_float_layers_float(int8_path, ctx.float_layers)  # else ORT rounds their weights to int8 at load
        shutil.copyfile(ctx.fp32_onnx, ctx.out_dir / FILES["fp32"])

        model = onnx.load(str(int8_path))
        graph = QdqGraph(model)
        violations = check_tflite_int8(model, ctx.float_layers)
        notes = [f"does not conform to the TFLite int8 scheme: {v}" for v in violations]
        session = ArmModel(int8_path)
        if platform.machine().lower() not in ARM_MACHINES:
            notes.append(f"validated on {platform.machine()} with {', '.join(session.providers)}, not on ARM: "
                         "numerics carry over, latency does not")
        files, versions = dict(FILES), {"onnxruntime": ort.__version__, "onnx": onnx.__version__}
        tflite = _build_tflite(ctx, notes)
        if tflite is not None:
            files.update(tflite["files"])
            versions.update(tflite["versions"])
        return CompileResult(
            files=files,
            precision=precision_by_op(graph, lambda n: _runs_int8(graph, n), "fp32"),
            versions=versions,
            notes=notes,
            details={
                "tflite": tflite,
                "bias_corrected_convs": corrected,
                "scheme": "TFLite int8: weights int8 symmetric per-channel (Conv), activations int8 per-tensor "
                          "asymmetric, bias int32 (scale = input x weight scale), fixed Softmax/Logistic/Tanh outputs",
                "conformance": {"spec": "TFLite int8 quantization spec", "violations": violations},
                "providers": session.providers,
                "float_layers": list(ctx.float_layers),
            },
        )

    def runner(self, target_dir: Path, which: str = "int8", threads: int = 0, options: dict | None = None) -> Runner:
        """which: "int8" / "fp32" (the ONNX pair, ONNX Runtime) or "tflite_int8" / "tflite_fp32" (LiteRT + XNNPACK,
        written when the `edgekit[tflite]` extra is installed)."""
        all_files = {**FILES, **tflite_export.FILES}
        if which not in all_files:
            raise EdgekitError(f"the arm target has no {which!r} artifact", f"use one of: {', '.join(all_files)}")
        path = Path(target_dir) / all_files[which]
        if which in tflite_export.FILES:
            reason = tflite_export.missing(runtime_only=True)
            if reason:
                raise EdgekitError(f"cannot run {path.name}: {reason}", tflite_export.INSTALL)
            if not path.is_file():
                raise EdgekitError(f"{path} is missing", f"{tflite_export.INSTALL}, then `edgekit compile --target arm`")
            return open_on_board_module("tflite_board", path, which, threads, options)
        if not path.is_file():
            raise EdgekitError(f"{path} is missing", "run `edgekit compile --target arm` first")
        return open_on_board_module("arm_board", path, which, threads, options)

    def pairs(self, target_dir: Path, local: bool = True) -> list[ArtifactPair]:
        """The ONNX pair, and the .tflite pair when compile wrote it (and, to run here, ai-edge-litert is installed)."""
        pairs = [ArtifactPair("main", "int8", "fp32", dict(FILES), "arm_board", self.runtime)]
        tflite = {"int8": tflite_export.FILES["tflite_int8"], "fp32": tflite_export.FILES["tflite_fp32"]}
        if all((Path(target_dir) / f).is_file() for f in tflite.values()) and not (
                local and tflite_export.missing(runtime_only=True)):
            pairs.append(ArtifactPair("tflite", "tflite_int8", "tflite_fp32", tflite, "tflite_board",
                                      "LiteRT Interpreter + XNNPACK (ai-edge-litert)",
                                      "XNNPACK int8/fp32 kernels, the ones LiteRT runs on ARM CPUs", fixed_batch=1))
        return pairs


def _build_tflite(ctx: CompileContext, notes: list[str]) -> dict | None:
    """The .tflite pair (tflite_export.py) when the `edgekit[tflite]` extra is installed; a note says why not."""
    reason = tflite_export.missing()
    if reason:
        notes.append(f"no .tflite written ({reason}): `{tflite_export.INSTALL}` adds a full-integer int8 .tflite "
                     "and its fp32 reference, timed by bench in LiteRT + XNNPACK")
        return None
    try:
        tflite = tflite_export.build(ctx)
    except Exception as e:  # noqa: BLE001 - a model litert-torch cannot convert must not cost the ONNX artifact
        for name in tflite_export.FILES.values():  # no half-written pair left for bench to find
            (ctx.out_dir / name).unlink(missing_ok=True)
        if isinstance(e, tflite_export.TfliteSkipped):
            notes.append(f"no .tflite written: {e}")
        else:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            notes.append(f"no .tflite written: conversion failed ({type(e).__name__}: {first})")
        ctx.log(f"arm: {notes[-1]}")
        return None
    v = tflite["validation"]
    from ..outputs import summary

    ctx.log(f"arm: .tflite int8 vs the .tflite fp32 on {v['images']} calibration images ({v['runtime']}): "
            f"{summary(v['outputs'])}; ranges from calibration.json for "
            f"{tflite['ranges']['from_calibration_json']} of "
            f"{tflite['ranges']['from_calibration_json'] + tflite['ranges']['from_litert_calibration']} tensors")
    if not v["conversion"]["ok"]:
        notes.append(f".tflite fp32 differs from model.fp32.onnx by up to {v['conversion']['max_abs_diff_vs_onnx_fp32']:.3g}")
    if tflite["float_layers"]["not_mapped"]:
        notes.append(f".tflite int8 quantizes {len(tflite['float_layers']['not_mapped'])} layer(s) kept in float in "
                     f"the ONNX artifact (no .tflite op matched): {', '.join(tflite['float_layers']['not_mapped'])}")
    return tflite


def check_tflite_int8(model: onnx.ModelProto, float_layers=()) -> list[str]:
    """Violations of the TFLite integer scheme in a QDQ graph; an empty list means it conforms. Layers in
    `float_layers` were left in float on purpose (accuracy fallback) and are not held to the scheme."""
    g = QdqGraph(model)
    problems = checker_problems(model)
    for n in g.nodes:
        if n.op_type in WEIGHTED_OPS and n.name in float_layers:
            continue
        if n.op_type in WEIGHTED_OPS:
            if g.dq_input(n, 0) is None:
                problems.append(f"{g.label(n)}: input {n.input[0]!r} is float, not dequantized from int8")
            problems += weight_problems(g, n)
            if n.op_type != "MatMul" and len(n.input) > 2 and n.input[2]:
                problems += _bias_problems(g, n)
        elif n.op_type in (Q, DQ) and g.constant_source(n) is None:
            if n.op_type == DQ and g.consumers[n.output[0]] and all(c.name in float_layers for c in g.consumers[n.output[0]]):
                continue  # a float layer's own input (qdq_build.keep_float_layers_float): it runs in float
            problems += activation_problems(g, n, symmetric=False)
            if n.op_type == Q:
                problems += _fixed_output_problems(g, n)
    return problems


def _fixed_output_problems(g: QdqGraph, q: onnx.NodeProto) -> list[str]:
    source = g.producer.get(q.input[0])
    if source is None or source.op_type not in FIXED_OUTPUT_QPARAMS:
        return []
    scale, zp, _ = g.qparams(q)
    want_scale, want_zp = FIXED_OUTPUT_QPARAMS[source.op_type]
    if scale is None or zp is None or not np.allclose(scale, want_scale, rtol=1e-6) or np.any(zp != want_zp):
        return [f"{g.label(q)}: {source.op_type} output must have scale {want_scale:g} and zero point {want_zp}"]
    return []


def _fixed_output_overrides(fp32: onnx.ModelProto) -> dict:
    """ORT TensorQuantOverrides that pin the outputs of FIXED_OUTPUT_QPARAMS ops to the spec's values."""
    return {
        n.output[0]: [{"scale": np.array(FIXED_OUTPUT_QPARAMS[n.op_type][0], np.float32),
                       "zero_point": np.array(FIXED_OUTPUT_QPARAMS[n.op_type][1], np.int8)}]
        for n in fp32.graph.node if n.op_type in FIXED_OUTPUT_QPARAMS
    }


def _bias_problems(g: QdqGraph, node: onnx.NodeProto) -> list[str]:
    """Bias: int32, zero point 0, scale = input scale x weight scale (what the int32 accumulator is in)."""
    dq = g.dq_input(node, 2)
    bias = g.init.get(dq.input[0]) if dq is not None else None
    if bias is None:
        return [f"{g.label(node)}: bias {node.input[2]!r} is float, not int32"]
    problems = []
    if bias.dtype != np.int32:
        problems.append(f"{g.label(node)}: bias is {bias.dtype}, not int32")
    scale, zp, _ = g.qparams(dq)
    if zp is not None and np.any(zp != 0):
        problems.append(f"{g.label(node)}: bias zero point is not 0")
    in_dq, w_dq = g.dq_input(node, 0), g.dq_input(node, 1)
    if in_dq is not None and w_dq is not None and scale is not None:
        got, want = np.ravel(scale), np.ravel(g.qparams(in_dq)[0] * g.qparams(w_dq)[0])
        comparable = got.size in (1, want.size) or want.size == 1  # per-tensor on either side broadcasts
        if not comparable or not np.allclose(got, want, rtol=1e-5, atol=0):
            problems.append(f"{g.label(node)}: bias scale is not input scale x weight scale")
    return problems


def _runs_int8(g: QdqGraph, node: onnx.NodeProto) -> bool:
    """ORT runs a node in integers when its inputs are dequantized and its outputs requantized (a QDQ unit)."""
    outputs_requantized = all(
        out not in g.outputs and g.consumers[out] and all(c.op_type == Q for c in g.consumers[out])
        for out in node.output
    )
    return g.is_int8_compute(node) and outputs_requantized
