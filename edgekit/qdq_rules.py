"""Q/DQ ONNX graphs, built from the workspace's ranges and checked against the rules of the runtime that runs them.

The ARM (TFLite integer scheme) and Jetson (TensorRT explicit quantization) targets both build their model with
ONNX Runtime's `quantize_static` from calibration.json, then check the result. A check returns its violations
as sentences (an empty list means the graph conforms), so compile.json can say exactly what is wrong and the
tests can break a graph on purpose and see the check notice.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np
import onnx
from onnx import numpy_helper


Q, DQ = "QuantizeLinear", "DequantizeLinear"
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
INT8_WEIGHT_MIN = -127  # TFLite and TensorRT both keep int8 weights in [-127, 127], so that -w is representable


class QdqGraph:
    """Who produces and who consumes each tensor, and the quantization parameters of each Q/DQ node."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.nodes = list(model.graph.node)
        self.init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.outputs = {o.name for o in model.graph.output}
        self.producer = {out: n for n in self.nodes for out in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in self.nodes:
            for name in n.input:
                self.consumers[name].append(n)

    @staticmethod
    def label(node: onnx.NodeProto) -> str:
        return f"{node.op_type} {node.name or node.output[0]!r}"

    def dq_input(self, node: onnx.NodeProto, i: int) -> onnx.NodeProto | None:
        """The DequantizeLinear that produces input `i` of `node`, if any."""
        if i >= len(node.input) or not node.input[i]:
            return None
        producer = self.producer.get(node.input[i])
        return producer if producer is not None and producer.op_type == DQ else None

    def qparams(self, node: onnx.NodeProto) -> tuple[np.ndarray | None, np.ndarray | None, int]:
        """(scale, zero point or None when omitted, axis) of a Q/DQ node; axis defaults to 1 as in ONNX."""
        scale = self.init.get(node.input[1])
        zp = self.init.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        return scale, zp, axis

    def constant_source(self, node: onnx.NodeProto) -> np.ndarray | None:
        """The initializer a weight/bias Q or DQ quantizes: DQ(int8 init), DQ(Q(float init)) or Q(float init).
        None for activations."""
        src = node.input[0]
        if node.op_type == DQ and src not in self.init and src in self.producer and self.producer[src].op_type == Q:
            src = self.producer[src].input[0]
        return self.init.get(src)

    def is_int8_compute(self, node: onnx.NodeProto) -> bool:
        """Every non-constant input of `node` is dequantized from integers (its weights included)."""
        inputs = [name for name in node.input if name and name not in self.init]
        return bool(inputs) and all(self.producer.get(name) is not None and self.producer[name].op_type == DQ
                                    for name in inputs)


def output_channel_axis(node: onnx.NodeProto, rank: int) -> int:
    """The weight axis that holds output channels: Conv W (O, I, kH, kW) -> 0; Gemm B (K, N) -> 1, or (N, K)
    -> 0 when transB; MatMul B (..., K, N) -> last."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1
    return rank - 1


def zero_point_problems(g: QdqGraph, node: onnx.NodeProto, dtype: type, must_be_zero: bool, what: str) -> list[str]:
    _, zp, _ = g.qparams(node)
    if zp is None:
        # An omitted zero point makes QuantizeLinear produce uint8: not a signed integer scheme.
        return [f"{g.label(node)}: {what} has no zero point (the type would default to uint8)"]
    problems = []
    if zp.dtype != dtype:
        problems.append(f"{g.label(node)}: {what} is {zp.dtype}, not {np.dtype(dtype)}")
    if must_be_zero and np.any(zp != 0):
        problems.append(f"{g.label(node)}: {what} has zero point {zp.ravel()[:4].tolist()}, not 0 (symmetric)")
    return problems


def activation_problems(g: QdqGraph, node: onnx.NodeProto, symmetric: bool) -> list[str]:
    """An activation Q/DQ: int8, one scale and zero point for the whole tensor (per-tensor)."""
    problems = zero_point_problems(g, node, np.int8, symmetric, "activation")
    scale, zp, _ = g.qparams(node)
    if scale is None:
        problems.append(f"{g.label(node)}: scale is not a constant initializer")
    elif scale.size != 1 or (zp is not None and zp.size != 1):
        problems.append(f"{g.label(node)}: activation has {scale.size} scales; it must be per-tensor (one)")
    return problems


def weight_problems(g: QdqGraph, node: onnx.NodeProto) -> list[str]:
    """The weight input of a Conv/Gemm/MatMul: int8 symmetric (zero point 0, values in [-127, 127]);
    per-channel on the output-channel axis for Conv, per-tensor or that per-channel for Gemm/MatMul."""
    dq = g.dq_input(node, 1)
    weight = g.constant_source(dq) if dq is not None else None
    if weight is None:
        return [f"{g.label(node)}: weight {node.input[1]!r} is not a quantized constant"]
    problems = zero_point_problems(g, dq, np.int8, True, "weight")
    if weight.dtype == np.int8 and weight.size and weight.min() < INT8_WEIGHT_MIN:
        problems.append(f"{g.label(node)}: int8 weight holds {weight.min()}, outside [-127, 127]")
    scale, _, axis = g.qparams(dq)
    out_axis = output_channel_axis(node, weight.ndim)
    channels = weight.shape[out_axis]
    per_channel = scale is not None and scale.ndim == 1 and scale.size == channels and axis % weight.ndim == out_axis
    per_tensor = scale is not None and scale.size == 1 and not per_channel
    if node.op_type == "Conv" and not per_channel:
        problems.append(f"{g.label(node)}: weight must be per-channel on axis 0 ({channels} output channels), "
                        f"has {0 if scale is None else scale.size} scale(s) on axis {axis}")
    elif node.op_type != "Conv" and not (per_channel or per_tensor):
        problems.append(f"{g.label(node)}: weight scales ({0 if scale is None else scale.size} on axis {axis}) are "
                        f"neither per-tensor nor per output channel (axis {out_axis})")
    return problems


def checker_problems(model: onnx.ModelProto) -> list[str]:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        return [f"onnx.checker: {str(e).strip().splitlines()[0]}"]
    return []


def precision_by_op(g: QdqGraph, is_int8: Callable[[onnx.NodeProto], bool], float_name: str) -> dict[str, str]:
    """Op type -> "int8" / float_name / "mixed", read off the graph (Q/DQ nodes themselves left out)."""
    kinds: dict[str, set[bool]] = defaultdict(set)
    for n in g.nodes:
        if n.op_type not in (Q, DQ):
            kinds[n.op_type].add(is_int8(n))
    return {op: "int8" if s == {True} else float_name if s == {False} else "mixed" for op, s in kinds.items()}
