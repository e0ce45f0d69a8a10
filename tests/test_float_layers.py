"""A layer kept in float by the accuracy fallback runs in float in ONNX Runtime, not as the int8 ORT would make it.

ONNX Runtime rounds, at session load, the float weights of a Conv that sits between DequantizeLinear and
QuantizeLinear to per-tensor int8 (qdq_build.keep_float_layers_float). These tests run ORT as users do, with its
default optimizations, against the same session with only that transformer switched off: everything else (the
host's fused int8 kernels, which on x86 CPUs without VNNI saturate where the graph as written would not) is the
same in both, so the outputs must be identical.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from edgekit.calibration import Calibration
from edgekit.qdq_build import ORT_QUANTIZES_FLOAT_WEIGHTS_OF, quantize_qdq
from edgekit.targets.arm import check_tflite_int8

# The ORT graph transformer that rounds a float layer's weights (onnxruntime/core/optimizer/qdq_transformer).
WEIGHT_ROUNDING = "WeightBiasQuantization"


class ThreeConvs(nn.Module):
    """conv -> conv (to keep in float) -> conv. The first conv's last channel is dead (always 0 after the ReLU) and
    the middle conv weighs it 500x more than the others: harmless in float, but one int8 scale for the middle conv's
    whole weight tensor (what ORT would give it) rounds every live weight to zero."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.middle = nn.Conv2d(8, 8, 1)
        self.last = nn.Conv2d(8, 4, 3, padding=1)
        with torch.no_grad():
            self.first.bias[-1] = -100.0
            self.middle.weight[:, -1] = 500.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.middle(torch.relu(self.first(x))))


def _export_and_calibrate(tmp_path) -> tuple:
    model = ThreeConvs().eval()
    fp32 = tmp_path / "three.fp32.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 16, 16), str(fp32), input_names=["input"], dynamo=False,
                      dynamic_axes={"input": {0: "batch"}})
    # The calibration ranges: each tensor's min and max over these images, read from an fp32 run of the graph.
    exposed = onnx.load(str(fp32))
    exposed.graph.output.extend(onnx.helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, None)
                                for n in exposed.graph.node[:-1])
    images = np.random.default_rng(1).normal(size=(16, 3, 16, 16)).astype(np.float32)
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    tensors = dict(zip(names, session.run(None, {"input": images})), input=images)
    ranges = {k: (float(v.min()), float(v.max())) for k, v in tensors.items()}
    middle = next(n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv" and "middle" in n.input[1])
    return fp32, Calibration("minmax", len(images), 0.0, ranges, {}), images, middle


def _run(path, images, level, disabled_optimizers=()) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=list(disabled_optimizers))
    return session.run(None, {"input": images})[0]


def test_a_layer_kept_in_float_runs_in_float_in_onnx_runtime(tmp_path):
    fp32, cal, images, middle = _export_and_calibrate(tmp_path)
    int8 = tmp_path / "three.int8.onnx"
    quantize_qdq(fp32, int8, cal, nodes_to_exclude=[middle])

    model = onnx.load(str(int8))
    inits = {t.name for t in model.graph.initializer}
    node = next(n for n in model.graph.node if n.name == middle)
    assert node.op_type in ORT_QUANTIZES_FLOAT_WEIGHTS_OF and node.input[1] in inits, "its weights stay float"
    assert check_tflite_int8(model, [middle]) == [], "a float layer's float input is not a scheme violation"

    as_deployed = _run(int8, images, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)  # what users' ORT runs
    without_rounding = _run(int8, images, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, [WEIGHT_ROUNDING])
    # Per-tensor int8 weights in the middle conv would differ by far more (measured: 0.88 of the spread).
    np.testing.assert_array_equal(as_deployed, without_rounding)
    as_written = _run(int8, images, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)  # every op as the graph says
    reference = _run(fp32, images, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    assert np.abs(as_written - reference).max() < 0.05 * np.abs(reference).max()


def test_the_arm_artifact_keeps_its_float_layers_float(tmp_path, calib_small):
    """The same through `edgekit quantize` and the arm target's compile, the middle conv kept in float."""
    import json

    from edgekit.data import Preprocess, open_images
    from edgekit.inputspec import ModelInputs
    from edgekit.quantization import quantize
    from edgekit.targets import CompileContext, get_target

    from tests.conftest import save_model

    model = save_model(ThreeConvs(in_channels=1), "exported_program", tmp_path / "three.pt2", torch.zeros(2, 1, 28, 28))
    ws = tmp_path / "ws"
    quantize(model, calib_small, workdir=ws, inputs=ModelInputs(mean="0.286", std="0.353"), method="minmax",
             log=lambda *_: None)
    manifest = json.loads((ws / "manifest.json").read_text())
    middle = [n.name for n in onnx.load(str(ws / "model.fp32.onnx")).graph.node if n.op_type == "Conv"][1]
    out = tmp_path / "arm"
    out.mkdir()
    ctx = CompileContext(ws, out, manifest, Preprocess.from_dict(manifest["preprocess"]),
                         open_images(manifest["calibration_data"]["path"], "calibration"), log=lambda *_: None,
                         float_layers=[middle])
    result = get_target("arm").compile(ctx)
    assert result.details["conformance"]["violations"] == []
    images = np.random.default_rng(0).normal(size=(8, 1, 28, 28)).astype(np.float32)
    as_deployed = _run(out / "model.int8.onnx", images, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    without_rounding = _run(out / "model.int8.onnx", images, ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                            [WEIGHT_ROUNDING])
    np.testing.assert_array_equal(as_deployed, without_rounding)
