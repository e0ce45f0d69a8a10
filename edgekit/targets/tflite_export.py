"""The arm target's .tflite artifacts (optional `edgekit[tflite]` extra): a full-integer int8 model in the TFLite
int8 scheme and its fp32 reference, for LiteRT's Interpreter with XNNPACK (board/tflite_board.py).

Route (all from PyPI, beside torch 2.13 CPU, no TensorFlow):
1. litert-torch converts a torch module at batch 1 to `model.fp32.tflite`; it is checked against the workspace's
   model.fp32.onnx. The module is the source model (the file `edgekit quantize` read, checked against the sha256
   in manifest.json) where edgekit can load it as a module torch.export traces (ExportedProgram, state_dict +
   arch), else model.fp32.onnx rebuilt in torch (onnx_torch.py): TorchScript (torch.export cannot trace it), a
   pickled nn.Module (compile never unpickles), a source moved or changed since quantize, or a source module
   litert-torch fails on. Where neither converts, the reason names the op that stops it.
2. ai-edge-quantizer quantizes that with its static int8 recipe, which is the TFLite scheme: weights int8
   symmetric per output channel, activations int8 per tensor (asymmetric), bias int32, int8 input and output.
3. Activation ranges: edgekit's own, from calibration.json. LiteRT's calibrator runs the calibration images
   (the same sample and preprocessing quantize used) through the fp32 .tflite to list every tensor that needs a
   range; then each of those tensors is matched by value, on a few calibration images, to the tensor of
   model.fp32.onnx that holds the same numbers (NHWC vs NCHW allowed), and gets that tensor's calibration.json
   range. A tensor with no counterpart (e.g. a Pad the ONNX Conv does inside) keeps LiteRT's own min/max range
   from the same images; the counts are recorded.
Layers kept in float by a fallback (`float_layers`, ONNX node names) stay float in the .tflite too: the op producing
the .tflite tensor matched to the layer's output (or to its fused ReLU/ReLU6's) gets ai-edge-quantizer's
NO_QUANTIZE; a layer with no counterpart is listed in compile.json (`float_layers.not_mapped`).
Where accuracy recovery adjusted the graph (manifest "int8_source", recovery.py), the int8 .tflite is quantized from
that graph rebuilt in torch (its weights are the point: the source model would lose them), its ranges matched
against it; the fp32 .tflite reference stays the route above.
4. HARD_SWISH stays float (FLOAT_OPS), and the convolutions' int32 biases are corrected for their weights'
   rounding (tflite_bias.py), as every ONNX target's are.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .. import metrics
from ..calibration import Calibration
from ..export import INPUT_NAME
from .base import CompileContext

FILES = {"tflite_int8": "model.int8.tflite", "tflite_fp32": "model.fp32.tflite"}
INSTALL = "pip install 'edgekit[tflite]'"
# Ops left in float (a DEQUANTIZE before, a QUANTIZE after). XNNPACK's LiteRT delegate has no int8 HARD_SWISH:
# quantized, each one ran on LiteRT's builtin kernels and cut the graph into a new delegate partition (the
# MobileNetV3 student: 20 partitions, its int8 .tflite 1.9x slower than its fp32 one). In float, XNNPACK takes
# the whole graph as one partition.
FLOAT_OPS = ("HARD_SWISH",)
MATCH_IMAGES = 4  # calibration images used to match .tflite tensors to model.fp32.onnx tensors by value
FUSED_ACTIVATIONS = ("Relu", "Clip")  # what the .tflite fuses into the op before it
CONVERSION_TOLERANCE = 1e-3  # max |tflite fp32 - onnx fp32| relative to the largest logit
SCHEME = ("TFLite int8 (ai-edge-quantizer static_wi8_ai8): weights int8 symmetric per-channel, activations int8 "
          "per-tensor asymmetric, bias int32 (corrected for weight rounding), int8 input/output; HARD_SWISH in float")


class TfliteSkipped(Exception):
    """The .tflite cannot be built for this workspace (the message says why); the ONNX artifact is unaffected."""


def missing(runtime_only: bool = False) -> str | None:
    """None when the extra is installed (with runtime_only: its runtime, ai-edge-litert), else what is missing."""
    modules = ("ai_edge_litert.interpreter",) if runtime_only else ("litert_torch", "ai_edge_quantizer", "ai_edge_litert.interpreter")
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            return f"{module.split('.')[0]} not installed"
    return None


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("litert-torch", "ai-edge-quantizer", "ai-edge-litert", "litert-converter"):
        with contextlib.suppress(PackageNotFoundError):
            out[dist] = version(dist)
    return out


def source_module(workspace: Path, manifest: dict):
    """The torch module `edgekit quantize` exported, loaded again from its file (unchanged: same sha256)."""
    from ..model import load_model, sha256_of

    source = manifest.get("source") or {}
    fmt, recorded = source.get("format"), source.get("path")
    if not recorded:
        raise TfliteSkipped("manifest.json does not record the source model")
    if fmt == "torchscript":
        raise TfliteSkipped("the source model is TorchScript, which torch.export (and so litert-torch) cannot trace")
    if fmt == "pickled_module":
        raise TfliteSkipped("the source model is a pickled nn.Module; edgekit only unpickles it when told to at quantize")
    candidates = [Path(recorded)] + ([workspace.parent / recorded] if not Path(recorded).is_absolute() else [])
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise TfliteSkipped(f"the source model {recorded} is not there any more")
    if sha256_of(path) != source.get("sha256"):
        raise TfliteSkipped(f"the source model {path} changed after `edgekit quantize` (sha256 differs)")
    arch = ((manifest.get("stages") or {}).get("quantize") or {}).get("options", {}).get("arch")
    module = load_model(path, arch=arch).module
    try:
        module.eval()
    except NotImplementedError:  # an ExportedProgram's module: its graph was traced in eval mode already
        for m in module.modules():
            m.training = False
    return module


# One conversion per (source model, workspace models, calibration, calibration images): `compile --max-drop`
# rebuilds the target once per fallback step, and only the quantization step differs between them.
_CONVERTED: dict[tuple, tuple[bytes, dict, dict, dict, dict]] = {}


def build(ctx: CompileContext, threads: int = 0) -> dict:
    """Write FILES into ctx.out_dir and check them; returns the details for compile.json (raises TfliteSkipped)."""
    from ..model import sha256_of
    from .tflite_bias import correct_tflite_biases

    images = ctx.calib_images
    if len(images) == 0:
        raise TfliteSkipped("no calibration images")
    fp32_path, int8_path = ctx.out_dir / FILES["tflite_fp32"], ctx.out_dir / FILES["tflite_int8"]
    calib = [images.load(i, ctx.preprocess)[None] for i in range(len(images))]
    adjusted = ctx.int8_source != ctx.fp32_onnx  # accuracy recovery's graph: the int8 .tflite is built from it
    key = ((ctx.manifest.get("source") or {}).get("sha256"), sha256_of(ctx.fp32_onnx), sha256_of(ctx.calibration_json),
           len(images), ctx.preprocess.to_dict().__repr__(), sha256_of(ctx.int8_source))
    tmp = tempfile.TemporaryDirectory(prefix="edgekit-tflite-")
    source_path = Path(tmp.name) / "int8_source.fp32.tflite" if adjusted else fp32_path
    if key not in _CONVERTED:
        converted_from = convert(ctx, calib[0], fp32_path)
        if adjusted:
            converted_from["int8_source"] = convert(ctx, calib[0], source_path, ctx.int8_source)["graph"]
        ranges, sources, matched = _ranges(source_path, calib, ctx, threads)
        _CONVERTED.clear()  # keep one model's worth
        _CONVERTED[key] = (fp32_path.read_bytes(), converted_from, ranges, sources, matched,
                           source_path.read_bytes() if adjusted else None)
    else:
        fp32_path.write_bytes(_CONVERTED[key][0])
        if adjusted:
            source_path.write_bytes(_CONVERTED[key][5])
    _, converted_from, ranges, sources, matched, _ = _CONVERTED[key]
    kept, unmapped = float_scopes(ctx.int8_source, ctx.float_layers, matched)
    with tmp, _quiet():
        from ai_edge_quantizer import algorithm_manager, qtyping, quantizer, recipe

        q = quantizer.Quantizer(str(source_path), recipe.static_wi8_ai8())
        for op in FLOAT_OPS:  # see FLOAT_OPS: XNNPACK runs them in fp32 inside the same delegate partition
            q.update_quantization_recipe(".*", getattr(qtyping.TFLOperationName, op),
                                         algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
        for name in kept:  # the last matching recipe entry wins: these ops stay float
            q.update_quantization_recipe(f"^{re.escape(name)};$", qtyping.TFLOperationName.ALL_SUPPORTED,
                                         algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
        q.quantize(ranges, serialize_to_path=str(int8_path), enable_progress_report=False)
        corrected = correct_tflite_biases(int8_path, source_path, calib)
    return {
        "files": dict(FILES), "scheme": SCHEME, "converter": "litert-torch", "converted_from": converted_from,
        "quantizer": "ai-edge-quantizer",
        "batch": int(calib[0].shape[0]), "ranges": sources, "versions": versions(), "bias_corrected_convs": corrected,
        "validation": validate(ctx, fp32_path, int8_path, calib, threads),
        "int8_tensors": int8_tensor_summary(int8_path),
        "float_layers": {"kept_float": sorted(kept.values()), "not_mapped": unmapped},
    }


# The graphs litert-torch may convert, in order. Measured (2026-11, 300 eval images) on models/fashion_resnet.pt2
# and a MobileNetV3 student, both give the same .tflite pair: fp32 within 2e-6 / 4e-5 of model.fp32.onnx (logits
# up to 6 / 42), int8 top-1 agreement 99.67 % / 94.67 % with it, one XNNPACK partition. The source module stays
# first where edgekit can load it: litert-torch is made for torch modules and lowers ops the rebuild does not map
# (onnx_torch.OPS). The rebuild reads only the workspace, so it serves every source format.
ROUTES = ("source model", "model.fp32.onnx")


def convert(ctx: CompileContext, sample: np.ndarray, fp32_path: Path, graph: Path | None = None) -> dict:
    """Write the fp32 .tflite from the first of ROUTES that converts and that LiteRT loads; returns
    {"graph": that route, "not_used": {earlier route: why}}. Raises TfliteSkipped with each route's reason, naming
    the op that stopped it where one did. `graph`: an ONNX graph to rebuild instead (accuracy recovery's adjusted
    graph): only the rebuild route, since the source model lacks its weights."""
    failed: dict[str, str] = {}
    for route in ROUTES if graph is None else (graph.name,):
        try:
            if route == "source model":
                module = source_module(ctx.workspace, ctx.manifest)
            else:
                from .onnx_torch import rebuild  # imports torch: only when a conversion runs

                module = rebuild(graph or ctx.fp32_onnx)
            _convert(module, sample, fp32_path)
            _loads(fp32_path)
            return {"graph": route, "not_used": failed}
        except TfliteSkipped as e:
            failed[route] = str(e)
        except Exception as e:  # noqa: BLE001 - torch.export, litert-torch and LiteRT raise many types
            failed[route] = conversion_failure(e)
    fp32_path.unlink(missing_ok=True)
    raise TfliteSkipped("; ".join(f"from the {route}: {why}" for route, why in failed.items()))


def conversion_failure(e: BaseException) -> str:
    """Why a graph did not become a loadable .tflite, naming the op: an ONNX op the rebuild does not map, an op
    torch.export / litert-torch cannot lower (the aten op in their message), or a .tflite op LiteRT has no kernel
    for (e.g. STABLEHLO_SORT, which litert-torch writes for torch.sort)."""
    from ..export import failing_op
    from .onnx_torch import UnsupportedOp

    if isinstance(e, UnsupportedOp):  # its message names the ONNX op and node
        return str(e)
    text, cause = "", e
    while cause is not None:
        text += "\n" + str(cause)
        cause = cause.__cause__ or cause.__context__
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    kernel = re.search(r"builtin opcode '(\w+)'", text)
    if kernel:
        return f"LiteRT has no kernel for the .tflite op {kernel.group(1)}"
    op = failing_op(e)
    return f"litert-torch cannot convert {op} ({first})" if op else f"litert-torch failed ({type(e).__name__}: {first})"


def _loads(path: Path) -> None:
    """Raises when LiteRT cannot load the .tflite (an op it has no kernel for)."""
    from ai_edge_litert.interpreter import Interpreter

    with _quiet():
        Interpreter(model_path=str(path)).allocate_tensors()


def _convert(module, sample: np.ndarray, fp32_path: Path) -> None:
    """litert-torch: the torch module at the sample's (batch 1) shape -> an fp32 .tflite."""
    import torch

    with _quiet():
        import litert_torch

        x = torch.from_numpy(sample)
        with torch.no_grad():
            single = isinstance(module(x), torch.Tensor)
        # A single tensor converts as it is (the .tflite's tensor names then follow the module's own layers).
        litert_torch.convert(module if single else FlatOutputs(module), (x,)).export(str(fp32_path))


def FlatOutputs(module):  # noqa: N802 - builds an nn.Module; a function so torch is imported only when converting
    """The module with its outputs (a tensor, tuple, list or dict, nested) as a flat tuple in the order the ONNX
    export lists them (torch's pytree order), so the .tflite's signature outputs output_0, output_1, ... are the
    ONNX graph's outputs in order."""
    import torch
    from torch.utils._pytree import tree_flatten

    class Flat(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            leaves = tuple(tree_flatten(self.inner(x))[0])
            return leaves[0] if len(leaves) == 1 else leaves

    flat = Flat(module)
    flat.training = False  # not .eval(): an ExportedProgram's module refuses it (it was traced in eval mode)
    return flat


def float_scopes(onnx_path: Path, float_layers: list[str], matched: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The .tflite ops to keep in float for the ONNX layers in `float_layers`: {.tflite output tensor: ONNX layer},
    and the layers with no .tflite counterpart. A layer's .tflite op is the one producing the tensor matched to its
    output, or to the output of the activation that follows it (the .tflite fuses ReLU/ReLU6 into the conv)."""
    if not float_layers:
        return {}, []
    import onnx

    by_onnx = {o: t for t, o in matched.items()}
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    kept, unmapped = {}, []
    for node in (n for n in graph.node if n.name in set(float_layers)):
        tensor = node.output[0]
        while tensor not in by_onnx and len(consumers.get(tensor, [])) == 1 and \
                consumers[tensor][0].op_type in FUSED_ACTIVATIONS:
            tensor = consumers[tensor][0].output[0]
        if tensor in by_onnx:
            kept[by_onnx[tensor]] = node.name
        else:
            unmapped.append(node.name)
    return kept, unmapped


def _ranges(fp32_path: Path, calib: list[np.ndarray], ctx: CompileContext, threads: int) -> tuple[dict, dict, dict]:
    """ai-edge-quantizer's calibration result for the fp32 .tflite, with edgekit's calibration.json range put in
    for every tensor that has a counterpart in the int8 source (model.fp32.onnx, or recovery's adjusted graph);
    where the ranges came from; the matches."""
    from ai_edge_quantizer import quantizer, recipe

    q = quantizer.Quantizer(str(fp32_path), recipe.static_wi8_ai8())
    signature, input_name = _signature(fp32_path)
    with _quiet():
        qsv = q.calibrate({signature: [{input_name: x} for x in calib]}, num_threads=threads or os.cpu_count() or 1)
    ours = Calibration.load(ctx.calibration_json).ranges
    # Match against every float tensor of the ONNX model (to place float layers too), use the calibrated ones.
    matched = match_tensors(fp32_path, ctx.int8_source, list(qsv), np.concatenate(calib[:MATCH_IMAGES]), None,
                            set(ours))
    used = {}
    for name, onnx_name in matched.items():
        if onnx_name in ours:
            lo, hi = ours[onnx_name]
            qsv[name] = {"min": np.full_like(qsv[name]["min"], lo), "max": np.full_like(qsv[name]["max"], hi)}
            used[name] = onnx_name
    own = sorted(set(qsv) - set(used))
    sources = {"from_calibration_json": len(used), "from_litert_calibration": len(own),
               "litert_calibration_images": len(calib), "unmatched": own}
    return qsv, sources, matched


def match_tensors(tflite_path: Path, onnx_path: Path, names: list[str], x: np.ndarray, wanted: set[str] | None,
                  prefer: set[str] = frozenset()) -> dict:
    """{.tflite tensor name: model.fp32.onnx tensor name} for the tensors in `names` whose values on the images `x`
    equal those of an ONNX tensor in `wanted` (None: any float tensor; same layout, or NHWC against NCHW). Where
    several ONNX tensors hold the same values, one in `prefer` is taken."""
    tfl = _tflite_values(tflite_path, names, x)
    onx = _onnx_values(onnx_path, wanted, x)
    by_shape: dict[tuple, list[str]] = {}
    for name in sorted(onx, key=lambda n: (n not in prefer, n)):
        by_shape.setdefault(onx[name].shape, []).append(name)
    out = {}
    for name, value in tfl.items():
        views = [value] + ([value.transpose(0, 3, 1, 2)] if value.ndim == 4 else [])
        for view in views:
            hit = next((o for o in by_shape.get(view.shape, []) if _same(view, onx[o])), None)
            if hit is not None:
                out[name] = hit
                break
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    scale = float(np.abs(b).max())
    return scale > 0 and float(np.abs(a - b).max()) <= 1e-3 * scale + 1e-6


def _tflite_values(path: Path, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor in `names`, on each image of x (one invoke per image), stacked along axis 0."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Builtin kernels, no delegate: a delegate's internal tensors are not kept.
    with _quiet():
        it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    index = {d["name"]: d["index"] for d in it.get_tensor_details() if d["name"] in set(names)}
    per_image: dict[str, list[np.ndarray]] = {n: [] for n in index}
    for image in x:
        it.set_tensor(inp["index"], image.reshape(inp["shape"]).astype(np.float32))
        it.invoke()
        for n, i in index.items():
            value = it.get_tensor(i)
            if value.dtype == np.float32 and value.ndim >= 1 and value.shape[0] == 1:
                per_image[n].append(value.copy())
    return {n: np.concatenate(v) for n, v in per_image.items() if len(v) == len(x)}


def _onnx_values(path: Path, names: set[str] | None, x: np.ndarray) -> dict[str, np.ndarray]:
    """The float tensors of an ONNX model named in `names` (None: all), on the batch x (each made a graph output)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model).graph
    floats = {v.name for v in [*inferred.value_info, *inferred.input, *inferred.output]
              if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    produced = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    keep = sorted(n for n in produced & floats if names is None or n in names)
    for n in keep:
        if n not in outputs:
            model.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip(keep, session.run(keep, {INPUT_NAME: x.astype(np.float32)})))
    return {n: v for n, v in values.items() if v.dtype == np.float32 and v.ndim >= 1 and v.shape[0] == len(x)}


def validate(ctx: CompileContext, fp32_path: Path, int8_path: Path, calib: list[np.ndarray], threads: int) -> dict:
    """On the calibration images: the fp32 .tflite against model.fp32.onnx (the conversion), and the int8 .tflite
    against the fp32 .tflite (the quantization), both in LiteRT + XNNPACK."""
    from ..ort_runner import OrtModel
    from ..board.tflite_board import TfliteModel

    from ..outputs import OutputLayout, fidelity, min_sqnr

    x = np.concatenate(calib)
    fp32, int8 = TfliteModel(fp32_path, threads), TfliteModel(int8_path, threads)
    a, b, ref = int8(x), fp32(x), OrtModel(ctx.fp32_onnx, threads)(x)
    diff = float(np.abs(b - ref).max())
    layout = OutputLayout.from_list(ctx.manifest.get("outputs"), ref.shape[1])
    agreement = (lambda y, r: metrics.agreement(layout.primary(y), layout.primary(r))) if layout.logits else None
    per_output = fidelity(layout, a, b)
    return {
        "images": len(x), "on": "calibration images", "runtime": fp32.providers[0],
        "conversion": {"max_abs_diff_vs_onnx_fp32": diff, "max_abs_logit": float(np.abs(ref).max()),
                       "agreement_vs_onnx_fp32": agreement(b, ref) if agreement else None,
                       "ok": diff <= CONVERSION_TOLERANCE * max(1.0, float(np.abs(ref).max()))},
        "agreement": agreement(a, b) if agreement else None, "cosine": metrics.cosine(a, b),
        "min_sqnr_db": min_sqnr(per_output), "outputs": per_output,
        "delegated": {"fp32": {"delegate_nodes": fp32.delegated_ops, "builtin_ops": fp32.builtin_ops},
                      "int8": {"delegate_nodes": int8.delegated_ops, "builtin_ops": int8.builtin_ops}},
    }


def int8_tensor_summary(path: Path) -> dict:
    """What the int8 .tflite holds, read off its tensors: conv/FC weights (int8, per-channel, zero point 0),
    activations (int8 per-tensor), biases (int32) and any float tensor left."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    details = {d["index"]: d for d in it.get_tensor_details()}
    summary = {"weights": {}, "bias": {}, "activations": {}, "float_tensors": []}
    weight_ops = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
    seen = set()
    for op in it._get_ops_details():  # noqa: SLF001 - the only API that links ops to tensors
        for pos, t in enumerate(int(i) for i in op["inputs"]):
            if t < 0 or t not in details or t in seen:
                continue
            d, kind = details[t], None
            if op["op_name"] in weight_ops and pos == 1:
                kind = "weights"
            elif op["op_name"] in weight_ops and pos == 2:
                kind = "bias"
            if kind:
                seen.add(t)
                q = d["quantization_parameters"]
                key = np.dtype(d["dtype"]).name
                if key != "float32":
                    key += (f" {'per-channel' if q['scales'].size > 1 else 'per-tensor'}"
                            f", zero point {'0' if not np.any(q['zero_points']) else '!= 0'}")
                summary[kind][key] = summary[kind].get(key, 0) + 1
        for t in [int(i) for i in op["outputs"]]:
            d = details.get(t)
            if d is None or t in seen:
                continue
            seen.add(t)
            dtype = np.dtype(d["dtype"]).name
            if dtype == "float32":
                summary["float_tensors"].append(d["name"])
            elif dtype != "int32":
                summary["activations"][dtype] = summary["activations"].get(dtype, 0) + 1
    return summary


def _signature(path: Path) -> tuple[str, str]:
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(path)).get_signature_list()
    key = next(iter(signatures))
    return key, signatures[key]["inputs"][0]


@contextlib.contextmanager
def _quiet():
    """litert-torch and ai-edge-quantizer print progress and absl INFO lines; keep them off edgekit's output."""
    logging.getLogger("absl").setLevel(logging.ERROR)
    # Progress bars (tqdm) go to stderr: a Python-level redirect, so exceptions still reach the caller.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
