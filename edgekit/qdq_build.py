"""The portable int8 QDQ model, built from the workspace's calibrated ranges: what `edgekit quantize` writes as
model.int8.onnx, and what a target that wants another placement or activation type starts from
(targets/openvino_qdq.py). Shared here, below the stages, so a target never imports the quantize stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .bias_correction import quantize_bias_corrected
from .calibration import Calibration, quantize_with_ranges


def quantize_qdq(fp32_path: Path, int8_path: Path, cal: Calibration, nodes_to_exclude: list[str] | None = None,
                 nodes_to_quantize: list[str] | None = None, activation_type=None,
                 extra_options: dict | None = None) -> int:
    """The portable int8 model: int8 weights symmetric per channel, int8 activations per tensor, int32 bias,
    Conv biases corrected for the weights' rounding where the calibration has the statistics (bias_correction.py).
    A target that wants another placement or activation type (targets/openvino_qdq.py) passes quantize_static's
    `activation_type` and extra `extra_options`. Returns the number of bias-corrected Convs."""
    from onnxruntime.quantization import QuantType

    def build(source: Path) -> None:
        quantize_with_ranges(
            source, int8_path, cal, per_channel=True,
            activation_type=activation_type or QuantType.QInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=nodes_to_exclude or [], nodes_to_quantize=nodes_to_quantize,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False, **(extra_options or {})},
        )

    # Layers left in float keep their bias: their weights were not rounded.
    corrected = quantize_bias_corrected(fp32_path, build, int8_path, cal.channel_means)
    float_graph_outputs(int8_path)
    keep_float_layers_float(int8_path, nodes_to_exclude or [])
    return corrected


# The ops whose float weights ONNX Runtime's graph transformer WeightBiasQuantization
# (onnxruntime/core/optimizer/qdq_transformer/weight_bias_quantization.cc) rounds to int8 when they sit between Q/DQ.
ORT_QUANTIZES_FLOAT_WEIGHTS_OF = ("Conv", "ConvTranspose", "Gemm")


def keep_float_layers_float(path: Path, float_layers: list[str]) -> int:
    """Make the layers kept in float (accuracy fallback) run in float in ONNX Runtime, as the graph says.

    At session load ONNX Runtime (>= 1.20, any optimization level) rounds the float weights of a Conv, ConvTranspose
    or Gemm whose input comes from a per-tensor DequantizeLinear and whose output feeds a QuantizeLinear to int8,
    per tensor, so that it can fuse the node into an int8 kernel. That is exactly where a layer kept in float sits
    in a QDQ graph, so ORT silently ran it in per-tensor int8, worse than the per-channel int8 it replaced
    (EfficientNet-Lite2 arm with 12 layers in float: 98.0 % agreement with fp32 in ORT, 99.2 % as the graph reads).
    The transformer only takes a DequantizeLinear with one scale, so each such layer gets its own DequantizeLinear
    with that scale and zero point repeated per channel (axis 1): the same numbers, a pattern ORT leaves alone.
    Returns how many layers were changed."""
    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    wanted = set(float_layers)
    changed = 0
    for node in [n for n in graph.node if n.name in wanted and n.op_type in ORT_QUANTIZES_FLOAT_WEIGHTS_OF]:
        dq = producer.get(node.input[0])
        weight = inits.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or weight is None or weight.data_type != onnx.TensorProto.FLOAT:
            continue
        scale = inits.get(dq.input[1])
        zero_point = inits.get(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
        if scale is None or int(np.prod(scale.dims)) != 1:
            continue
        channels = _input_channels(node, numpy_helper.to_array(weight).shape)
        if channels is None:
            continue
        name = f"{node.name}_float_input"
        repeated = [numpy_helper.from_array(np.full(channels, numpy_helper.to_array(scale).item(), np.float32),
                                            f"{name}_scale")]
        if zero_point is not None:
            zp = numpy_helper.to_array(zero_point)
            repeated.append(numpy_helper.from_array(np.full(channels, zp.item(), zp.dtype), f"{name}_zero_point"))
        graph.initializer.extend(repeated)
        own_dq = onnx.helper.make_node("DequantizeLinear", [dq.input[0], *(t.name for t in repeated)], [name],
                                       name=f"{name}_DequantizeLinear", axis=1)
        graph.node.insert(list(graph.node).index(node), own_dq)
        node.input[0] = name
        changed += 1
    if changed:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        for dq in [n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] not in used]:
            graph.node.remove(dq)  # its only reader was a float layer, which now has its own
        onnx.save(model, str(path))
    return changed


def _input_channels(node: onnx.NodeProto, weight_shape: tuple[int, ...]) -> int | None:
    """The size of axis 1 of the node's input: Conv (Cout, Cin/group, ...), ConvTranspose (Cin, Cout/group, ...),
    Gemm B (K, N), or (N, K) with transB. None for a Gemm with transA, whose axis 1 is the batch."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transA", 0):
        return None
    if node.op_type == "Conv":
        return weight_shape[1] * attrs.get("group", 1)
    if node.op_type == "ConvTranspose":
        return weight_shape[0]
    return weight_shape[1] if attrs.get("transB", 0) else weight_shape[0]


def float_graph_outputs(path: Path) -> None:
    """Drop the Q/DQ pair ORT puts on the model's output: the logits then leave the last layer in float.

    Rounding the logits to 8 bits buys no speed (the caller wants floats) but ties and flips near-equal classes:
    with 1000 classes a step of ~0.07 is often more than the top-2 margin (EfficientNet-Lite0 on real-photo crops:
    +0.4 points of top-1 agreement without it). The last layer's inputs and weights stay int8.
    """
    model = onnx.load(str(path))
    graph = model.graph
    outputs = {o.name for o in graph.output}
    producer = {o: n for n in graph.node for o in n.output}
    changed = False
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] in outputs]:
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in producer:
            continue
        source = producer[q.input[0]]
        if sum(q.input[0] in n.input for n in graph.node) != 1:
            continue  # the float tensor feeds something else too: renaming it would rewire that consumer
        source.output[:] = [dq.output[0] if o == q.input[0] else o for o in source.output]
        graph.node.remove(q)
        graph.node.remove(dq)
        changed = True
    if changed:
        used = {i for n in graph.node for i in n.input}
        for init in [i for i in graph.initializer if i.name not in used]:  # the pair's scale and zero point
            graph.initializer.remove(init)
        onnx.save(model, str(path))
