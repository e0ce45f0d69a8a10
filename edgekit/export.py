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

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "max_abs_logit": self.max_abs_logit,
                "samples": self.samples, "exporter": self.exporter, "opset": OPSET}


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


def torch_forward(model: LoadedModel, x: np.ndarray) -> np.ndarray:
    """Run the torch model on a batch; a shape or channel mismatch becomes a clear EdgekitError."""
    import torch

    try:
        with torch.no_grad():
            out = model.module(torch.from_numpy(np.ascontiguousarray(x)))
    except (RuntimeError, ValueError, IndexError, AssertionError) as e:
        raise EdgekitError(
            f"the model rejected an input of shape {tuple(x.shape)}: {_first_line(e)}",
            "set the shape it was trained on with --input-shape N,C,H,W, or --channels/--size",
        ) from None
    if isinstance(out, (tuple, list)) or not hasattr(out, "dim") or out.dim() != 2:
        shape = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
        raise EdgekitError(f"the model's output is {shape}, not class logits of shape (N, classes)",
                           "edgekit quantizes image classifiers: return one (N, classes) tensor")
    return out.float().numpy()


def export_onnx(model: LoadedModel, example: np.ndarray, out_path: Path) -> ExportCheck:
    """Export, pre-process and check the fp32 ONNX model; writes `out_path` only when all of it worked."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reference = torch_forward(model, example)
    with tempfile.TemporaryDirectory(prefix="edgekit-export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        exporter = _export_raw(model, example, raw)
        staged = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(raw), str(staged), skip_symbolic_shape=False)
        except Exception:  # noqa: BLE001 - symbolic shape inference fails on some graphs; ONNX's own still works
            quant_pre_process(str(raw), str(staged), skip_symbolic_shape=True)
        got = OrtModel(staged)(example)
        diff = float(np.max(np.abs(got - reference)))
        scale = float(np.max(np.abs(reference))) or 1.0
        if not np.isfinite(diff) or diff > 1e-3 * max(1.0, scale):
            raise EdgekitError(
                f"the exported ONNX model disagrees with PyTorch (max abs diff {diff:.3g} on logits up to {scale:.3g})",
                "run with --debug and report the model; export it with torch.onnx.export yourself to investigate",
            )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        staged.replace(out_path)
    return ExportCheck(diff, scale, int(example.shape[0]), exporter)


def _export_raw(model: LoadedModel, example: np.ndarray, path: Path) -> str:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(example))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if model.format == "torchscript":
                torch.onnx.export(
                    model.module, (x,), str(path), dynamo=False, opset_version=OPSET,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
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
            _rename_io(proto)
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


def _rename_io(model) -> None:
    """Name the graph's single input and output `input` / `logits`, as every later stage expects."""
    renames = {model.graph.input[0].name: INPUT_NAME, model.graph.output[0].name: OUTPUT_NAME}
    for value in (model.graph.input[0], model.graph.output[0]):
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
