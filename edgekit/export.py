"""PyTorch -> ONNX, checked against PyTorch's own outputs.

nn.Modules and ExportedPrograms go through the dynamo exporter (`torch.onnx.export(dynamo=True)`), the one
PyTorch maintains. TorchScript cannot: torch.export does not trace ScriptModules, so those take the
TorchScript-based exporter, the only one that reads them. The batch dimension stays dynamic either way.
The exported graph is then run through ONNX Runtime's `quant_pre_process` (shape inference, BatchNorm
folded into Conv, constant folding): numerically the same fp32 model, and the graph every int8 artifact
is built from, so the tensor names in calibration.json refer to it.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from . import interrupt
from .errors import EdgekitError
from .model import LoadedModel
from .ort_runner import OrtModel

OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "logits"


@dataclass
class ExportCheck:
    max_abs_diff: float
    max_abs_logit: float
    samples: int
    exporter: str
    output_names: list[str]  # the ONNX graph's outputs, in order
    output_shapes: list[tuple[int, ...]]  # per image

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "max_abs_logit": self.max_abs_logit,
                "samples": self.samples, "exporter": self.exporter, "opset": OPSET,
                "outputs": {n: list(s) for n, s in zip(self.output_names, self.output_shapes)}}


def fixed_batch(onnx_path: Path) -> int | None:
    """The batch size an ONNX model's input fixes (an ExportedProgram saved with torch.export's defaults pins it),
    or None when the batch dimension is dynamic."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    dim = graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def example_batch(model: LoadedModel, input_shape: tuple[int, ...] | None) -> int:
    """How many images to trace, check and export with: --input-shape's N always wins; else the batch the model
    file fixes; else 2 (a batch of one would let torch.export specialize the batch dimension to 1)."""
    if input_shape is not None:
        return input_shape[0]
    recorded = model.input_shape[0] if model.input_shape else -1
    return recorded if recorded > 0 else 2


@dataclass
class ModelOutputs:
    """What the torch model returned for a batch, flattened to named tensors in torch's pytree order (the order
    the ONNX exporters list the graph's outputs in)."""

    names: list[str]
    arrays: list[np.ndarray]  # each (N, ...)

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """Per image: without the batch dimension."""
        return [tuple(a.shape[1:]) for a in self.arrays]

    def flat(self) -> np.ndarray:
        """(N, -1): every output flattened per image and concatenated, as every runner returns them."""
        from .board.timing import flat_outputs

        return flat_outputs(self.arrays)


def torch_outputs(model: LoadedModel, x: np.ndarray) -> ModelOutputs:
    """Run the torch model on a batch. A shape or channel mismatch, and outputs edgekit cannot carry to a target
    (no tensor, integer or complex values, no batch dimension, a shape that depends on the image), are a clear
    EdgekitError."""
    first = _named_outputs(_call(model, x), len(x))
    # An output whose size depends on the pixels (a detector's post-NMS boxes, nonzero()) cannot become a static
    # graph output any target runs: seen as a different shape on a blank batch.
    blank = _named_outputs(_call(model, np.zeros_like(x)), len(x))
    for name, a, b in zip(first.names, first.arrays, blank.arrays):
        if a.shape != b.shape:
            what = "the model's output" + (f" {name}" if len(first.names) > 1 else "")
            raise EdgekitError(f"{what} changes shape with the image ({tuple(a.shape)} vs "
                               f"{tuple(b.shape)} on a blank batch)",
                               "return fixed-size outputs (e.g. the raw head before NMS) and post-process outside")
    return first


def torch_forward(model: LoadedModel, x: np.ndarray) -> np.ndarray:
    """The model's outputs on a batch as one (N, -1) float array (ModelOutputs.flat)."""
    return torch_outputs(model, x).flat()


def _call(model: LoadedModel, x: np.ndarray):
    import torch

    try:
        with torch.no_grad():
            return model.module(torch.from_numpy(np.ascontiguousarray(x)))
    except (RuntimeError, ValueError, IndexError, AssertionError) as e:
        raise EdgekitError(
            f"the model rejected an input of shape {tuple(x.shape)}: {_first_line(e)}",
            "set the shape it was trained on with --input-shape N,C,H,W, or --channels/--size",
        ) from None


def _named_outputs(out, batch: int) -> ModelOutputs:
    import torch

    leaves = _leaves(out, "")
    if len(leaves) == 1 and leaves[0][0] == "":
        value = leaves[0][1]
        leaves = [(OUTPUT_NAME if getattr(value, "ndim", 0) == 2 else "output", value)]
    if not leaves:
        raise EdgekitError(f"the model returned no tensor (got {type(out).__name__})",
                           "return a tensor, or a tuple/list/dict of tensors")
    names, arrays = [], []
    for name, value in leaves:
        what = "the model's output" + (f" {name}" if len(leaves) > 1 else "")
        if not isinstance(value, torch.Tensor):
            raise EdgekitError(f"{what} is a {type(value).__name__}, not a tensor",
                               "return only tensors (a tuple/list/dict of them is fine)")
        if value.is_complex() or not value.is_floating_point():
            raise EdgekitError(f"{what} is {str(value.dtype).removeprefix('torch.')}: int8 "
                               "fidelity is measured on real-valued outputs",
                               "return the float scores/logits and take argmax/indices outside the model")
        if value.dim() == 0 or value.shape[0] != batch:
            raise EdgekitError(f"{what} has shape {tuple(value.shape)}: its first dimension is "
                               f"not the batch of {batch} images", "return outputs with the batch dimension first")
        names.append(name)
        arrays.append(value.float().numpy())
    return ModelOutputs(names, arrays)


def _leaves(out, prefix: str) -> list[tuple[str, object]]:
    """(name, value) of every leaf: dict keys and tuple positions make the names ("boxes", "output1", "aux_0")."""
    if isinstance(out, dict):
        return [leaf for k, v in out.items() for leaf in _leaves(v, f"{prefix}_{_safe(k)}" if prefix else _safe(k))]
    if isinstance(out, (tuple, list)):
        fields = getattr(out, "_fields", None)  # a namedtuple names its fields
        found = []
        for i, v in enumerate(out):
            part = _safe(fields[i]) if fields else (str(i) if prefix else f"output{i}")
            found += _leaves(v, f"{prefix}_{part}" if prefix else part)
        return found
    return [(prefix, out)]


def _safe(key) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(key)) or "_"


# ONNX Runtime's symbolic shape inference, when it gives up on a graph, saves its partial model under this name in
# the working directory (with its weights in a uuid-named .data file beside it) before raising.
SHAPE_INFERENCE_LEFTOVER = "sym_shape_infer_temp.onnx"


def remove_leftover(model_path: Path) -> None:
    """Delete an ONNX file and the external-data files it names (relative to its folder), if it exists."""
    if not model_path.is_file():
        return
    try:
        model = onnx.load(str(model_path), load_external_data=False)
        names = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    except Exception:  # noqa: BLE001 - a half-written file: remove what can be named
        names = set()
    for name in names:
        (model_path.parent / name).unlink(missing_ok=True)
    model_path.unlink(missing_ok=True)


def export_onnx(model: LoadedModel, example: np.ndarray, out_path: Path) -> ExportCheck:
    """Export, pre-process and check the fp32 ONNX model; writes `out_path` only when all of it worked."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    outputs = torch_outputs(model, example)
    reference = outputs.flat()
    with tempfile.TemporaryDirectory(prefix="edgekit-export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        exporter = _export_raw(model, example, raw, outputs.names)
        staged = Path(tmp) / "pre.onnx"
        leftover = Path.cwd() / SHAPE_INFERENCE_LEFTOVER
        was_there = leftover.exists()
        try:
            quant_pre_process(str(raw), str(staged), skip_symbolic_shape=False)
        except Exception:  # noqa: BLE001 - symbolic shape inference fails on some graphs; ONNX's own still works
            if not was_there:
                remove_leftover(leftover)
            quant_pre_process(str(raw), str(staged), skip_symbolic_shape=True)
        got = OrtModel(staged)(example)
        diff = float(np.max(np.abs(got - reference)))
        scale = float(np.max(np.abs(reference))) or 1.0
        if not np.isfinite(diff) or diff > 1e-3 * max(1.0, scale):
            raise EdgekitError(
                f"the exported ONNX model disagrees with PyTorch (max abs diff {diff:.3g} on outputs up to {scale:.3g})",
                "run with --debug and report the model; export it with torch.onnx.export yourself to investigate",
            )
        names = [o.name for o in onnx.load(str(staged), load_external_data=False).graph.output]
        interrupt.stop_if_exiting()  # out_path may be in a staging folder Ctrl-C just removed: do not recreate it
        out_path.parent.mkdir(parents=True, exist_ok=True)
        staged.replace(out_path)
    return ExportCheck(diff, scale, int(example.shape[0]), exporter, names, outputs.shapes)


def _export_raw(model: LoadedModel, example: np.ndarray, path: Path, output_names: list[str]) -> str:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(example))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if model.format == "torchscript":
                torch.onnx.export(
                    model.module, (x,), str(path), dynamo=False, opset_version=OPSET,
                    input_names=[INPUT_NAME], output_names=output_names,
                    dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in output_names}},
                )
                return "torchscript"
            if model.program is not None:
                target, dynamic = model.program, None  # the program carries its own dynamic dims
            else:
                target, dynamic = model.module, ({0: torch.export.Dim("batch", min=1, max=4096)},)
            # No input_names here: with them, torch 2.13 re-traces an ExportedProgram and pins the batch
            # dimension to the example's size. The names are set on the ONNX graph afterwards instead.
            program = torch.onnx.export(
                target, (x,), dynamo=True, external_data=False, opset_version=OPSET,
                dynamic_shapes=dynamic, verbose=False, report=False,
            )
            proto = program.model_proto  # a fresh proto on each access: rename one and save that one
            _rename_io(proto, output_names)
            onnx.save(proto, str(path))
            return "dynamo"
        except EdgekitError:
            raise
        except Exception as e:  # noqa: BLE001 - the exporters raise many types; all mean "cannot export"
            op = failing_op(e)
            what = f"operator {op} has no ONNX conversion" if op else _first_line(e)
            raise EdgekitError(
                f"the model cannot be exported to ONNX: {what}",
                "replace that op with ONNX-exportable ones, or register a translation (torch.onnx custom_translation_table)",
            ) from e


def _rename_io(model, output_names: list[str]) -> None:
    """Name the graph's input `input` and its outputs as torch_outputs named them (`logits` for a classifier)."""
    graph = model.graph
    if len(graph.output) != len(output_names):
        raise EdgekitError(f"the ONNX export has {len(graph.output)} outputs where the model returns "
                           f"{len(output_names)} ({', '.join(output_names)})",
                           "return a flat tuple or dict of tensors; run with --debug and report the model")
    taken = {o for n in graph.node for o in n.output} - {o.name for o in graph.output}
    renames = {graph.input[0].name: INPUT_NAME}
    for value, name in zip(graph.output, output_names):
        renames[value.name] = name if name not in taken else f"{name}_out"  # never alias an inner tensor
    for value in (graph.input[0], *graph.output):
        value.name = renames[value.name]
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]


_OP_PATTERNS = (
    r"\b([a-z_][\w]*::[\w.]+)",  # aten::foo, mylib::bar (TorchScript exporter, dispatcher names)
    r"torch\.ops\.([\w]+\.[\w.]+)",  # torch.ops.mylib.bar.default (dynamo exporter)
    r"OpOverload\(op='([\w.]+)'",
)


def failing_op(e: BaseException) -> str | None:
    """The operator an export error is about, found in the chained messages; None when none is named."""
    text = ""
    while e is not None:
        text += "\n" + str(e)
        e = e.__cause__ or e.__context__
    for pattern in _OP_PATTERNS:
        m = re.search(pattern, text)
        if m:
            return m.group(1).removesuffix(".default")
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]
