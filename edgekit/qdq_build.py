"""The portable int8 QDQ model, built from the workspace's calibrated ranges: what `edgekit quantize` writes as
model.int8.onnx, and what a target that wants another placement or activation type starts from
(targets/openvino_qdq.py). Shared here, below the stages, so a target never imports the quantize stage."""

from __future__ import annotations

from pathlib import Path

import onnx

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
    return corrected


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
