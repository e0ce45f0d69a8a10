"""The QDQ model the openvino target converts: the workspace's ranges, with Q/DQ only where OpenVINO runs int8.

The portable model.int8.onnx follows ONNX Runtime's defaults, which suit ORT and the TFLite scheme but not
OpenVINO's CPU plugin. OpenVINO turns every QuantizeLinear/DequantizeLinear pair into a FakeQuantize, and a
FakeQuantize that no int8 kernel can absorb runs on its own (quantize, then dequantize, in float). On a
MobileNetV3 (hard-swish, squeeze-excite) the portable placement left 30 standalone FakeQuantize ops and 19
quantized hard-swish gates, and its int8 IR ran no faster than the fp32 IR. Three changes, each matching what
NNCF's CPU hardware config does:

1. A tensor is quantized only where a consumer reads it in int8 (a Conv, Gemm, MatMul, Add, Mul, pooling... input),
   never merely because some op produced it: output quantization is switched off for the weighted and
   element-wise ops, so a Conv that feeds a HardSigmoid keeps a float output.
2. x * f(x) activations (hard-swish as HardSigmoid + Mul, swish/SiLU as Sigmoid + Mul) stay float inside: the
   plugin has no int8 kernel for either half; the activation's output is quantized where the next layer reads it.
3. Activations are u8 (asymmetric, zero point from the same calibrated range): the VNNI dot product multiplies
   u8 by s8, so signed activations cost the plugin a shift and a compensation term per convolution.

The activation ranges are exactly calibration.json's, and Conv biases get the same bias correction as every other
target. The weights are symmetric per channel, except where the target asks for headroom (`widen`, see
openvino_overflow.py): there a channel's range is widened so its 16-bit pair sums fit.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from ..qdq_rules import QdqGraph
from .openvino_graph import gated_products

# Element-wise functions OpenVINO's CPU plugin computes only in float (HardSigmoid runs as a reference kernel).
FLOAT_ACTIVATIONS = ("HardSigmoid", "Sigmoid", "HardSwish")
# Ops whose output gets a Q/DQ pair only when a consumer quantizes it as its input.
NO_OUTPUT_QUANTIZATION = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul"]


def activation_muls(model: onnx.ModelProto) -> list[str]:
    """Names of the Muls that compute x * f(x) for a float activation f (hard-swish, swish): the second half of
    the activation, not a layer."""
    return [mul.name for mul, _gate, _x in gated_products(model, FLOAT_ACTIVATIONS)]


def build_openvino_qdq(fp32_onnx: Path, out: Path, cal, float_layers: list[str],
                       widen: dict[str, np.ndarray] | None = None) -> int:
    """Write `out`, the QDQ model for OpenVINO, with `float_layers` left without Q/DQ and the weight ranges of the
    layers in `widen` (node name -> factor per output channel, openvino_overflow.weight_headroom) widened. Returns
    how many Convs were bias-corrected."""
    from onnxruntime.quantization import QuantType

    from ..qdq_build import quantize_qdq

    model = onnx.load(str(fp32_onnx))
    # ORT leaves nodes out by name, and exporters leave the nodes of inlined functions (torch's HardSwish) unnamed.
    taken = {n.name for n in model.graph.node}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = next(name for k in range(len(taken) + 1)
                             if (name := f"{node.op_type}_{i}" + (f"_{k}" if k else "")) not in taken)
            taken.add(node.name)
    with tempfile.TemporaryDirectory(prefix="edgekit-ovqdq-") as tmp:
        named = Path(tmp) / "model.fp32.onnx"
        onnx.save(model, str(named))
        overrides = widened_weights(model, widen or {})
        return quantize_qdq(
            named, out, cal, nodes_to_exclude=[*float_layers, *activation_muls(model)],
            activation_type=QuantType.QUInt8,
            extra_options={"OpTypesToExcludeOutputQuantization": NO_OUTPUT_QUANTIZATION,
                           "TensorQuantOverrides": overrides},
        )


def widened_weights(model: onnx.ModelProto, widen: dict[str, np.ndarray]) -> dict[str, list]:
    """ONNX Runtime's per-channel TensorQuantOverrides that widen each listed layer's symmetric weight range,
    channel by channel, by its factor: rmax = factor x max|w|, so the channel's int8 codes shrink by the factor.
    The axis is the one ORT quantizes the layer's weight along (the output channels)."""
    g = QdqGraph(model)
    overrides = {}
    for node in model.graph.node:
        if node.name not in widen or len(node.input) < 2 or node.input[1] not in g.init:
            continue
        weight = g.init[node.input[1]]
        transposed = any(a.name == "transB" and a.i for a in node.attribute)
        axis = 0 if node.op_type == "Conv" or (node.op_type == "Gemm" and transposed) else 1
        largest = np.abs(np.moveaxis(weight, axis, 0).reshape(weight.shape[axis], -1)).max(axis=1)
        overrides[node.input[1]] = [{"axis": axis, "rmin": float(-m * f), "rmax": float(m * f)}
                                    for m, f in zip(largest, widen[node.name])]
    return overrides
