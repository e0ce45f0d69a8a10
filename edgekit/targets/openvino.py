"""Intel CPU / iGPU / NPU: an int8 OpenVINO IR and its fp32 reference IR.

Both IRs are converted from graphs whose activations are first rewritten into forms the CPU plugin fuses
(openvino_graph.py: hard-swish, hard-sigmoid); the runner compiles a static-shape model per batch size it runs.

Two ways to the int8 IR, chosen with the `openvino_source` option:
  nncf  NNCF quantizes the fp32 OpenVINO model itself, calibrated on the workspace's calibration
        images, placing FakeQuantize where its hardware config for the device says the plugin has int8 kernels.
  qdq   (default) a QDQ model built from calibration.json with Q/DQ placed where OpenVINO runs int8
        (openvino_qdq.py), which OpenVINO reads, turning its QuantizeLinear/DequantizeLinear pairs into
        FakeQuantize: the ranges are exactly the ones `edgekit quantize` calibrated.
benchmarks/openvino_source.py measures the two (agreement with fp32, latency) and records the numbers.

Which CPUs the int8 IR must compute exactly on, chosen with the `openvino_cpus` option (openvino_overflow.py):
  vnni  CPUs with an int8 dot product (AVX-512 VNNI, AVX-VNNI, AMX: Intel Ice Lake / Alder Lake and newer, AMD
        Zen 4 and newer) and Intel GPUs and NPUs, which all sum int8 products in 32 bits: the weights as calibrated.
  all   also older x86 CPUs, whose 16-bit pair sums clip: weight ranges widened per channel where they would.
The default is what the compile host itself needs ("all" on an x86 CPU without VNNI, else "vnni"; "vnni" for a GPU
or NPU device): compile validates the IR on this host, so the default is the one its check can vouch for. The
headroom costs a VNNI CPU accuracy it does not need: on EfficientNet-Lite0 at --min-agreement 99 --max-drop 0.5
(500 ImageNet photos, AMD EPYC with AVX-512 VNNI, 2026-12-02) "vnni" met the budget all int8, "all" only with the
stem in float, 1.09x slower (docs/compile.md has the commands).

Both IRs get a dynamic batch dimension where the graph allows it, and both are saved without fp16 weight
compression, so the fp32 IR is a true fp32 reference.
"""

from __future__ import annotations

import importlib
import tempfile
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path

import numpy as np

from .. import interrupt
from ..errors import EdgekitError
from .base import ArtifactPair, CompileContext, CompileResult, Runner, open_on_board_module

FILES = {"int8": "model.int8.xml", "fp32": "model.fp32.xml"}
SOURCES = ("nncf", "qdq")
CPUS = ("vnni", "all")
X86 = {"x86_64", "amd64", "i386", "i686"}
VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}  # /proc/cpuinfo flags of an x86 int8 dot product
# qdq won by measurement (benchmarks/openvino_source.py, 10k test images): on the bundled teacher 99.93 % agreement
# with the fp32 IR vs NNCF's 99.21 %, on the distilled student 99.56 vs 99.64 % at a higher logit cosine; the same
# batch-1 latency on both, a third of the build time, and the same ranges every other target uses.
DEFAULT_SOURCE = "qdq"
# The NNCF hardware config to quantize for; AUTO may land on any of them, so it gets the portable one.
NNCF_DEVICE = {"CPU": "CPU", "GPU": "GPU", "NPU": "NPU", "AUTO": "ANY"}
# Runtime-graph bookkeeping, not layers: constants, graph ends, layout/precision reorders, and the
# FakeQuantize (quantize) steps themselves, as the QDQ targets leave out their Q/DQ nodes.
NOT_LAYERS = {"Const", "Input", "Output", "Reorder", "FakeQuantize"}
INT8_PRECISIONS = {"u8", "i8"}
SCHEMES = {
    "nncf": "NNCF post-training quantization of the OpenVINO model: weights int8 symmetric per-channel, "
            "activations 8-bit per-tensor (asymmetric where signed, preset MIXED), full bias correction",
    "qdq": "QDQ model from calibration.json placed for OpenVINO (no Q/DQ inside hard-swish/swish, none on outputs "
           "no int8 layer reads), read by OpenVINO: weights int8 symmetric per-channel, activations u8 per-tensor "
           "asymmetric, Conv biases corrected",
}


class OpenVINOTarget:
    name = "openvino"
    hardware = "Intel CPU / iGPU / NPU"
    runtime = "OpenVINO"
    artifact = "OpenVINO IR int8 (.xml/.bin) + fp32 reference IR"
    install = "pip install 'edgekit[openvino]'"
    cpu_bound = True
    native_machines = ()  # wherever OpenVINO runs, its timings are that CPU's own
    not_int8_hint = "the plugin runs them in fp32: layers kept in float (--max-drop, --min-agreement), or no int8 kernel for them"

    def available(self) -> str | None:
        for module in ("openvino", "nncf"):
            try:
                importlib.import_module(module)  # a real import: a broken install counts as missing
            except ImportError as e:
                return f"{module} not installed ({self.install})" if e.name == module else f"{module}: {e}"
        return None

    def runtime_status(self) -> str:
        return "yes" if self.available() is None else f"no: {self.available()}"

    def compile(self, ctx: CompileContext) -> CompileResult:
        import openvino as ov

        source = ctx.options.get("openvino_source") or DEFAULT_SOURCE
        if source not in SOURCES:
            raise EdgekitError(f"unknown openvino_source {source!r}", f"use one of: {', '.join(SOURCES)}")
        device = ctx.options.get("device", "CPU")
        if device not in NNCF_DEVICE:
            raise EdgekitError(f"unknown OpenVINO device {device!r}", f"use one of: {', '.join(NNCF_DEVICE)}")
        if source == "nncf":  # NNCF's own overflow fix: its default unless --openvino-cpus was given
            cpus = cpus_option(ctx.options)
            chosen_by = f"NNCF OverflowFix.{NNCF_OVERFLOW_FIX[cpus]}"
        else:
            cpus, chosen_by = openvino_cpus(ctx.options, device)
            ctx.log(f"openvino: int8 sums exact on {CPU_WORDS[cpus]} ({chosen_by})")
        notes: list[str] = []

        rewrites: dict[str, int] = {}
        headroom: dict = {}
        fp32 = _convert_tuned(ctx.fp32_onnx, notes, rewrites)
        _save(fp32, ctx.out_dir / FILES["fp32"])
        if source == "nncf":
            ctx.log(f"openvino: NNCF post-training quantization on {len(ctx.calib_images)} calibration images")
            # NNCF quantizes the int8 source: the fp32 IR, or the graph accuracy recovery adjusted (recovery.py).
            source_ir = fp32 if ctx.int8_source == ctx.fp32_onnx else _convert_tuned(ctx.int8_source, notes, {})
            int8 = _nncf_quantize(source_ir, ctx, NNCF_DEVICE[device], cpus)
        else:
            int8 = _openvino_qdq(ctx, notes, rewrites, headroom, for_all_cpus=cpus == "all")
        _save(int8, ctx.out_dir / FILES["int8"])

        # What actually runs in int8 is the plugin's decision, so read it off the compiled model, on the CPU
        # (the device that is here); on a GPU or NPU the split can differ.
        core = ov.Core()
        compiled = core.compile_model(core.read_model(ctx.out_dir / FILES["int8"]), "CPU",
                                      {"INFERENCE_PRECISION_HINT": "f32"})
        return CompileResult(
            files=dict(FILES),
            precision=runtime_precision(compiled),
            versions={"openvino": version("openvino"), "nncf": version("nncf")},
            notes=notes,
            details={
                "device": device,
                "source": source,
                "scheme": SCHEMES[source],
                "precision_read_on": "CPU",
                "fake_quantize_ops": sum(op.get_type_name() == "FakeQuantize" for op in int8.get_ops()),
                "float_layers": list(ctx.float_layers),
                # The CPUs whose int8 sums the IR was built to be exact on, and why those.
                "cpus": cpus,
                "cpus_chosen_by": chosen_by,
                "activation_rewrites": rewrites,
                # Output channels whose weight ranges were widened so their 16-bit pair sums fit (qdq source).
                "weight_headroom": headroom or None,
            },
        )

    def pairs(self, target_dir: Path, local: bool = True) -> list[ArtifactPair]:
        return [ArtifactPair("main", "int8", "fp32", dict(FILES), "openvino_board", self.runtime)]

    def runner(self, target_dir: Path, which: str = "int8", threads: int = 0, options: dict | None = None) -> Runner:
        if which not in FILES:
            raise EdgekitError(f"the openvino target has no {which!r} artifact", f"use one of: {', '.join(FILES)}")
        path = Path(target_dir) / FILES[which]
        if not path.is_file():
            raise EdgekitError(f"{path} is missing", "run `edgekit compile --target openvino` first")
        return open_on_board_module("openvino_board", path, which, threads, options,
                                    "pass --device CPU, or install the device's driver")


CPU_WORDS = {"vnni": "CPUs with an int8 dot product (VNNI, AVX-VNNI, AMX), GPUs and NPUs",
             "all": "every x86 CPU, older ones summing int8 pairs in 16 bits included"}


def cpus_option(options: dict) -> str | None:
    """The `openvino_cpus` option as given (None when not), checked."""
    chosen = options.get("openvino_cpus")
    if chosen is not None and chosen not in CPUS:
        raise EdgekitError(f"unknown openvino_cpus {chosen!r}", f"use one of: {', '.join(CPUS)}")
    return chosen


def openvino_cpus(options: dict, device: str, machine: str | None = None,
                  flags: set[str] | None = None) -> tuple[str, str]:
    """The CPUs the int8 IR must sum exactly on ("vnni" or "all", see the module doc) and why: the option as given,
    else what the device needs, else what the compile host (`machine`, cpuinfo `flags`; default: this one) needs."""
    chosen = cpus_option(options)
    if chosen is not None:
        return chosen, "--openvino-cpus"
    if device in ("GPU", "NPU"):
        return "vnni", f"default for the {device} device, which sums int8 in 32 bits"
    if machine is None or flags is None:
        import platform

        from ..board.timing import cpu_info

        machine, flags = platform.machine(), cpu_info()[1]
    if machine.lower() in X86 and not flags & VNNI_FLAGS:
        return "all", ("default: this x86 CPU has no VNNI, its 16-bit int8 sums would clip; --openvino-cpus vnni "
                       "for newer CPUs only")
    return "vnni", ("default: this CPU sums int8 exactly; --openvino-cpus all for x86 CPUs without VNNI "
                    "(before Intel Ice Lake / AMD Zen 4)")


def _convert(onnx_path: Path, notes: list[str]):
    """ONNX -> OpenVINO model with a dynamic batch dimension where the graph allows it."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    shape = model.inputs[0].get_partial_shape()
    if shape[0].is_static:
        try:
            model.reshape(ov.PartialShape([ov.Dimension.dynamic(), *shape[1:]]))
            # The reshape "succeeds" even when a constant (a Reshape to [4, -1], say) bakes the batch in; only
            # the output shows it, and such a model fails at run time on any other batch.
            baked_in = model.outputs[0].get_partial_shape()[0].is_static
        except RuntimeError:
            baked_in = True
        if baked_in:
            model.reshape(shape)
            notes.append(f"{onnx_path.name}: the graph fixes the batch size at {shape[0]}; the runner pads to it")
    return model


def _convert_tuned(onnx_path: Path, notes: list[str], rewrites: dict[str, int]):
    """`_convert` of the graph with its activations in the forms OpenVINO fuses (openvino_graph.py); the rewrite
    counts land in `rewrites`."""
    from .openvino_graph import tuned_for_openvino

    with tempfile.TemporaryDirectory(prefix="edgekit-ov-") as tmp:
        tuned = Path(tmp) / onnx_path.name
        rewrites.update(tuned_for_openvino(onnx_path, tuned))
        return _convert(tuned, notes)


def _openvino_qdq(ctx: CompileContext, notes: list[str], rewrites: dict[str, int], headroom: dict, for_all_cpus: bool):
    """The workspace's ranges as a QDQ model placed for OpenVINO (openvino_qdq.py), converted to an OpenVINO model.

    For all CPUs (openvino_cpus "all"), built twice when some layer's 16-bit pair sums would clip on a CPU without
    VNNI (openvino_overflow.py): the first build is run as written on a few calibration images, and the second
    widens the weight ranges of the output channels whose pair sums passed 16 bits, just enough that they fit; on a
    VNNI CPU that costs those channels a fraction of a bit. What was widened lands in `headroom`."""
    from ..calibration import Calibration
    from .openvino_overflow import spread_sample, weight_headroom
    from .openvino_qdq import build_openvino_qdq

    floats = f", {len(ctx.float_layers)} layer(s) in float" if ctx.float_layers else ""
    ctx.log(f"openvino: QDQ model from calibration.json, Q/DQ where OpenVINO runs int8{floats}")
    cal = Calibration.load(ctx.calibration_json)
    with tempfile.TemporaryDirectory(prefix="edgekit-ov-") as tmp:
        path = Path(tmp) / "model.int8.onnx"
        build_openvino_qdq(ctx.int8_source, path, cal, list(ctx.float_layers))
        widen = weight_headroom(path, spread_sample(ctx.calib_images, ctx.preprocess)) if for_all_cpus else {}
        if widen:
            channels = sum(int((f > 1).sum()) for f in widen.values())
            bits = max(float(np.log2(f.max())) for f in widen.values())
            headroom.update(layers=len(widen), channels=channels, max_bits=round(bits, 2))
            ctx.log(f"openvino: {len(widen)} layer(s) whose int8 pair sums pass 16 bits on CPUs without VNNI: the "
                    f"weight ranges of {channels} output channel(s) widened to fit (at most {bits:.2f} bit)")
            build_openvino_qdq(ctx.int8_source, path, cal, list(ctx.float_layers), widen)
        return _convert_tuned(path, notes, rewrites)


def ignored_names(model, onnx_nodes: list[str]) -> list[str]:
    """The OpenVINO ops an ONNX Conv/Gemm/MatMul became: the frontend names them after the ONNX node, the
    weighted op split from its bias Add as "<node>/WithoutBiases"."""
    wanted = set(onnx_nodes)
    return [op.get_friendly_name() for op in model.get_ops()
            if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul")
            and (op.get_friendly_name() in wanted or op.get_friendly_name().split("/")[0] in wanted)]


# --openvino-cpus for the nncf source, as NNCF's own overflow fix: 7-bit weights on every layer, or none. Without
# the option NNCF keeps its default (7-bit weights on the first layer only).
NNCF_OVERFLOW_FIX = {"all": "ENABLE", "vnni": "DISABLE", None: "FIRST_LAYER"}


def _nncf_quantize(fp32, ctx: CompileContext, target_device: str, cpus: str | None):
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    images, pre = ctx.calib_images, ctx.preprocess
    # nncf.Dataset iterates more than once (statistics, then bias correction), so it gets indices and a
    # transform that decodes one image (1, C, H, W) on demand rather than a one-shot generator.
    dataset = nncf.Dataset(range(len(images)), lambda i: images.load(i, pre)[None])
    return nncf.quantize(
        fp32, dataset,
        # MIXED: symmetric weights, asymmetric activations. The presets differ only on signed activations (the
        # normalized input here): PERFORMANCE's symmetric grid wastes about 30 % of the codes on Fashion-MNIST's
        # [-0.81, 2.02]. Measured (agreement with the fp32 IR, bundled teacher / tiny test model): MIXED
        # 99.15 / 97.00 %, PERFORMANCE 99.10 / 95.67 %, at the same batch-1 latency (0.25 ms on 2 threads).
        preset=nncf.QuantizationPreset.MIXED,
        target_device=nncf.TargetDevice[target_device],
        subset_size=len(images),
        # Bias correction, measured the same way: full 99.15 / 97.00 %, fast 99.55 / 83.33 %, none 99.70 / 91.67 %.
        # Full costs half a point on the teacher but is the only one that never collapses; it re-runs each layer
        # per sample, seconds for CNNs of this size.
        fast_bias_correction=False,
        # Accuracy fallback: NNCF leaves these layers' inputs unquantized, so the plugin runs them in fp32.
        ignored_scope=nncf.IgnoredScope(names=ignored_names(fp32, ctx.float_layers)),
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix[NNCF_OVERFLOW_FIX[cpus]]),
    )


def runtime_precision(compiled) -> dict[str, str]:
    """Layer kind (as the plugin runs it: Convolution, FullyConnected, Eltwise, ...) -> "int8" / "fp32" / "mixed".

    A layer counts as int8 when its runtime precision (the precision its inputs are read in) is u8/i8.
    Constant sub-graphs (weight reshapes folded at load time) are left out with the bookkeeping nodes.
    """
    kinds: dict[str, set[bool]] = defaultdict(set)
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        kind = rt["layerType"].astype(str)
        sources = [i.get_source_output().get_node().get_rt_info()["layerType"].astype(str) for i in op.inputs()]
        if kind in NOT_LAYERS or (sources and all(s == "Const" for s in sources)):
            continue
        kinds[kind].add(rt["runtimePrecision"].astype(str) in INT8_PRECISIONS)
    return {k: "int8" if s == {True} else "fp32" if s == {False} else "mixed" for k, s in sorted(kinds.items())}


def _save(model, path: Path) -> None:
    """ov.save_model into the stage's folder, as a critical section: OpenVINO creates the missing parent folders of
    the path in native code, so a save running while Ctrl-C's cleanup removes the staging folder recreated it (a
    .staging-* folder outlived the exit in loaded CI runs). Inside the section the interrupt waits for the save to
    end; after it, a new section does not start."""
    import openvino as ov

    with interrupt.critical():
        ov.save_model(model, path, compress_to_fp16=False)
