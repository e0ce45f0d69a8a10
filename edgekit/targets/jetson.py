"""NVIDIA Jetson / TensorRT: explicit quantization with a Q/DQ ONNX graph, plus the engine where TensorRT exists.

TensorRT's int8 is symmetric (zero point 0) with per-channel weights, and it fuses a DequantizeLinear into the
op it feeds: Q/DQ belong on the inputs of Conv/Gemm/MatMul (data and weight) and of residual Adds (so the Add
fuses into the conv epilogue), and nowhere else; everything outside them runs in fp16. Two choices keep the
graph parseable by the TensorRT 8.x of older JetPacks as well as by 10.x: weights stay float behind a Q -> DQ
pair (8.x rejects int8 weight initializers: "invalid weights type of Int8"), and the bias stays float (8.x
cannot import an int32 bias DequantizeLinear). TensorRT quantizes both itself when it builds the engine.

Without TensorRT, the Q/DQ graph runs on ONNX Runtime (board/jetson_board.py): the numerics are emulated, and the
runners say so (`emulated = True`, a runtime that names ONNX Runtime) so no one reports that latency as Jetson
latency.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

from ..errors import EdgekitError
from ..bias_correction import quantize_bias_corrected
from ..calibration import Calibration, quantize_with_ranges
from .base import ArtifactPair, CompileContext, CompileResult, Runner, open_on_board_module
from ..qdq_rules import (DQ, Q, WEIGHTED_OPS, QdqGraph, activation_problems, checker_problems, 
                        precision_by_op, weight_problems, zero_point_problems)

QDQ_ONNX, FP32_ONNX, ENGINE, BUILD_SCRIPT = "model.qdq.onnx", "model.fp32.onnx", "model.engine", "build_engine.sh"
FUSIBLE = ("Conv", "Gemm", "MatMul", "Add")  # the ops TensorRT fuses an incoming DequantizeLinear into
MAX_BATCH_FLOOR = 32  # the engine's profile takes batches up to max(opt batch, this)
LINT_TIMEOUT_S = 300


class JetsonTarget:
    name = "jetson"
    hardware = "NVIDIA Jetson (Orin, Xavier) / NVIDIA GPUs"
    runtime = "TensorRT"
    artifact = "TensorRT Q/DQ ONNX + build_engine.sh (+ .engine where TensorRT exists)"
    install = "TensorRT ships with JetPack on the Jetson; elsewhere pip install tensorrt from NVIDIA's index"
    cpu_bound = False
    native_machines = ()  # on device only when TensorRT runs it, which the runner's `emulated` says
    not_int8_hint = "TensorRT runs them in fp16: layers kept in float (--max-drop, --min-agreement) or without Q/DQ on their inputs"

    def available(self) -> str | None:
        return None  # the Q/DQ graph and build script need only onnxruntime; see engine_available()

    def runtime_status(self) -> str:
        why_not = self.engine_available()
        if why_not is None:
            return "yes (TensorRT engine built and timed here)"
        return f"artifacts only: {why_not.replace('tensorrt', 'TensorRT')} (numerics emulated on ONNX Runtime, no latency)"

    def engine_available(self) -> str | None:
        """None if a TensorRT engine can be built and run here, else why not."""
        if importlib.util.find_spec("tensorrt") is None:
            return "tensorrt not installed"
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU"
        return None

    def compile(self, ctx: CompileContext) -> CompileResult:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType

        qdq_path = ctx.out_dir / QDQ_ONNX
        cal = Calibration.load(ctx.calibration_json)

        def build(source: Path) -> None:
            quantize_with_ranges(
                source, qdq_path, cal,
                op_types_to_quantize=list(FUSIBLE), per_channel=True,
                nodes_to_exclude=ctx.float_layers,  # no Q/DQ around them: TensorRT runs them in fp16
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                extra_options={
                    # ORT symmetrizes each calibrated range to [-max(|min|, |max|), +max(|min|, |max|)].
                    "ActivationSymmetric": True, "WeightSymmetric": True,
                    "QuantizeBias": False, "AddQDQPairToWeight": True,  # float bias and weights: see module docstring
                    "DedicatedQDQPair": True,  # TensorRT fuses a Q/DQ pair into one consumer; shared pairs block that
                    # Q/DQ on inputs only: a quantized conv output would force an int8 round trip before non-fusible ops.
                    "OpTypesToExcludeOutputQuantization": list(FUSIBLE),
                },
            )

        # Bias correction as for the other targets (bias_correction.py): the float bias absorbs the mean shift that
        # TensorRT's int8 rounding of the weights (the Q node in front of each weight) causes.
        # From the int8 source: model.fp32.onnx, or the graph accuracy recovery adjusted (recovery.py).
        corrected = quantize_bias_corrected(ctx.int8_source, build, qdq_path, cal.channel_means)
        shutil.copyfile(ctx.fp32_onnx, ctx.out_dir / FP32_ONNX)

        input_name = ctx.manifest["input"]["name"]
        fixed = ctx.manifest["input"]["shape"][0]  # a model that fixes its batch gets an engine of exactly that batch
        opt_batch = fixed or int(ctx.options.get("batch", 1))
        max_batch = fixed or max(opt_batch, MAX_BATCH_FLOOR)
        chw = (ctx.preprocess.channels, ctx.preprocess.height, ctx.preprocess.width)
        command = trtexec_command(input_name, chw, opt_batch, max_batch, dynamic=fixed is None)
        write_build_script(ctx.out_dir / BUILD_SCRIPT, command)

        model = onnx.load(str(qdq_path))
        graph = QdqGraph(model)
        violations = check_tensorrt_qdq(model, ctx.float_layers)
        lint = polygraphy_lint(qdq_path)
        files = {"int8": QDQ_ONNX, "fp32": FP32_ONNX, "build_script": BUILD_SCRIPT}
        versions = {"onnxruntime": ort.__version__, "onnx": onnx.__version__}
        notes = [f"does not conform to TensorRT Q/DQ rules: {v}" for v in violations]

        why_not = self.engine_available()
        if why_not is None:
            import tensorrt as trt

            versions["tensorrt"] = trt.__version__
            try:
                build_engine(qdq_path, ctx.out_dir / ENGINE, input_name, chw, opt_batch, max_batch, dynamic=fixed is None)
                files["engine"] = ENGINE
                engine = f"built: {ENGINE} (TensorRT {trt.__version__}, batch 1..{max_batch}, opt {opt_batch})"
            except Exception as e:  # noqa: BLE001 - the Q/DQ graph and build script are the deliverable; keep them
                engine = f"build failed: {e}"
                notes.append(f"TensorRT engine {engine}; model.qdq.onnx and {BUILD_SCRIPT} are still usable")
        else:
            engine = f"not built: {why_not} (run {BUILD_SCRIPT} on the Jetson)"
            notes.append(f"no engine here ({why_not}): int8 numerics are emulated by ONNX Runtime on the CPU; "
                         f"run {BUILD_SCRIPT} on the Jetson for the engine and real latency")
        ctx.log(f"  jetson: engine {engine}")

        return CompileResult(
            files=files,
            # Ops whose inputs all come through DQ run in int8, the rest in fp16 under --fp16 (TensorRT may
            # still fuse e.g. a ReLU into the int8 conv before it).
            precision=precision_by_op(graph, graph.is_int8_compute, "fp16"),
            versions=versions,
            notes=notes,
            details={
                "bias_corrected_convs": corrected,
                "scheme": "TensorRT explicit quantization: int8 symmetric (zero point 0), weights per-channel, "
                          "Q/DQ on Conv/Gemm/MatMul/Add inputs, float bias",
                "conformance": {"spec": "TensorRT Q/DQ placement and symmetric int8", "violations": violations},
                "lint": lint,
                "engine": engine,
                "trtexec": command,
                "validation": "TensorRT engine" if "engine" in files else "emulated: ONNX Runtime CPU",
                "float_layers": list(ctx.float_layers),
            },
        )

    def pairs(self, target_dir: Path, local: bool = True) -> list[ArtifactPair]:
        return [ArtifactPair("main", "int8", "fp32", {"int8": QDQ_ONNX, "fp32": FP32_ONNX}, "jetson_board", self.runtime)]

    def runner(self, target_dir: Path, which: str = "int8", threads: int = 0, options: dict | None = None) -> Runner:
        target_dir = Path(target_dir)
        files = {"int8": QDQ_ONNX, "fp32": FP32_ONNX}
        if which == "int8" and (target_dir / ENGINE).is_file() and self.engine_available() is None:
            files["int8"] = ENGINE
        if which not in files:
            raise EdgekitError(f"the jetson target has no {which!r} artifact", f"use one of: {', '.join(files)}")
        path = target_dir / files[which]
        if not path.is_file():
            raise EdgekitError(f"{path} is missing", "run `edgekit compile --target jetson` first")
        return open_on_board_module("jetson_board", path, which, threads, options,
                                    "rebuild the engine with build_engine.sh on this device")


def check_tensorrt_qdq(model: onnx.ModelProto, float_layers=()) -> list[str]:
    """Violations of TensorRT's explicit-quantization rules in a Q/DQ graph; an empty list means it conforms.
    Layers in `float_layers` were left without Q/DQ on purpose (accuracy fallback): TensorRT runs them in fp16."""
    g = QdqGraph(model)
    problems = checker_problems(model)
    for n in g.nodes:
        if n.op_type in (Q, DQ):
            if g.constant_source(n) is None:
                problems += activation_problems(g, n, symmetric=True)
            else:
                problems += zero_point_problems(g, n, np.int8, True, "constant")
            consumers = g.consumers[n.output[0]]
            if n.op_type == Q and (n.output[0] in g.outputs or any(c.op_type != DQ for c in consumers)):
                problems.append(f"{g.label(n)}: its output must feed only a DequantizeLinear")
            misplaced = sorted({c.op_type for c in consumers if c.op_type not in FUSIBLE})
            if n.op_type == DQ and (misplaced or n.output[0] in g.outputs):
                where = ", ".join(misplaced) or "a graph output"
                problems.append(f"{g.label(n)}: feeds {where}; TensorRT fuses Q/DQ only into {', '.join(FUSIBLE)}")
        elif n.op_type in WEIGHTED_OPS and n.name not in float_layers:
            if g.dq_input(n, 0) is None:
                problems.append(f"{g.label(n)}: data input {n.input[0]!r} has no DequantizeLinear")
            problems += weight_problems(g, n)
            if g.dq_input(n, 2) is not None:
                problems.append(f"{g.label(n)}: bias is quantized; TensorRT expects a float bias")
    return problems


def trtexec_command(input_name: str, chw: tuple[int, int, int], opt_batch: int, max_batch: int,
                    dynamic: bool = True) -> str:
    """The trtexec line; shape flags only for a dynamic batch (trtexec refuses them on a static input)."""
    shape = "x".join(map(str, chw))
    shapes = (f"--minShapes={input_name}:1x{shape} --optShapes={input_name}:{opt_batch}x{shape} "
              f"--maxShapes={input_name}:{max_batch}x{shape} ") if dynamic else ""
    return f"trtexec --onnx={QDQ_ONNX} --saveEngine={ENGINE} --int8 --fp16 {shapes}--timingCacheFile=timing.cache"


def write_build_script(path: Path, command: str) -> None:
    path.write_text(
        "#!/bin/sh\n"
        "# Builds model.engine from model.qdq.onnx with TensorRT. Run it on the Jetson itself: an engine is\n"
        "# specific to the GPU and TensorRT version it was built with.\n"
        "set -e\n"
        'cd "$(dirname "$0")"\n'
        'PATH="$PATH:/usr/src/tensorrt/bin"  # where JetPack puts trtexec\n'
        f"{command}\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def polygraphy_lint(onnx_path: Path) -> dict:
    """`polygraphy check lint` (ONNX checker + an ONNX Runtime run + graph checks), where polygraphy is installed."""
    # Prefer the one installed beside this Python (a venv that is not activated is not on PATH).
    exe = shutil.which("polygraphy", path=str(Path(sys.executable).parent)) or shutil.which("polygraphy")
    if exe is None:
        return {"status": "skipped: polygraphy not installed (pip install polygraphy onnx-graphsurgeon)"}
    with tempfile.TemporaryDirectory(prefix="edgekit-lint-") as tmp:
        report = Path(tmp) / "lint.json"
        try:
            proc = subprocess.run([exe, "check", "lint", str(onnx_path), "-o", str(report)],
                                  capture_output=True, text=True, timeout=LINT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"status": f"skipped: polygraphy lint ran over {LINT_TIMEOUT_S} s"}
        if not report.is_file():  # it could not run at all (e.g. onnx-graphsurgeon missing)
            last = (proc.stderr or proc.stdout).strip().splitlines()
            return {"status": f"skipped: polygraphy lint did not run ({last[-1] if last else proc.returncode})"}
        result = json.loads(report.read_text())
    return {
        "status": "passed" if proc.returncode == 0 else "failed",
        "failing": result["summary"]["failing"],
        "entries": [{k: e.get(k) for k in ("level", "source", "message", "nodes")} for e in result["lint_entries"]],
    }


def build_engine(onnx_path: Path, engine_path: Path, input_name: str, chw: tuple[int, int, int],
                 opt_batch: int, max_batch: int, dynamic: bool = True) -> None:
    """The trtexec line of build_engine.sh, through the TensorRT Python API (8.5 or later)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Networks are always explicit-batch in TensorRT 10 (the flag is deprecated there); 8.x must be asked.
    explicit_batch = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(0 if int(trt.__version__.split(".")[0]) >= 10 else explicit_batch)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgekitError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)  # honour the graph's Q/DQ (explicit quantization)
    config.set_flag(trt.BuilderFlag.FP16)  # and let everything outside them run in fp16
    if dynamic:  # a static-batch network takes no optimization profile
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, (1, *chw), (opt_batch, *chw), (max_batch, *chw))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgekitError("TensorRT could not build the engine", "run build_engine.sh with --verbose to see why")
    engine_path.write_bytes(bytes(serialized))
