"""Bias correction for the int8 .tflite: the correction every ONNX target already gets (bias_correction.py).

Rounding a convolution's weights to int8 shifts the mean of each output channel by sum_k (Wq - W)[c, k] * E[x_k]:
systematic, not noise, and largest in depthwise layers whose BatchNorm-folded kernels cancel (EfficientNet-Lite0's
first block). ai-edge-quantizer rounds the weights and leaves the bias as it was; here each CONV_2D and
DEPTHWISE_CONV_2D's int32 bias absorbs the shift, in units of its own scale (input scale x weight scale). E[x] per
input channel comes from the fp32 .tflite run on the calibration images, W from the fp32 .tflite's weights, Wq from
the int8 file's own int8 values and scales, so what is corrected is exactly the rounding this file carries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D")
INT8, INT32 = 9, 2  # tflite TensorType codes


def _name(tensor) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name


def _array(model, tensor, dtype) -> np.ndarray | None:
    data = model.buffers[tensor.buffer].data
    if data is None or len(data) == 0:
        return None
    return np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=dtype).reshape(tensor.shape)


def _plan(int8_model, fp32_model) -> list[dict]:
    """The int8 convolutions that can be corrected, each with its fp32 counterparts found by tensor name."""
    from ai_edge_litert.tools import flatbuffer_utils

    sg8, sg32 = int8_model.subgraphs[0], fp32_model.subgraphs[0]
    by_name: dict[str, list[int]] = {}
    for i, t in enumerate(sg32.tensors):
        by_name.setdefault(_name(t), []).append(i)
    # An int8 activation made by a QUANTIZE op stands for that op's float input, which is what the fp32 file names.
    quantized_from = {int(op.outputs[0]): int(op.inputs[0]) for op in sg8.operators
                      if flatbuffer_utils.opcode_to_name(int8_model, op.opcodeIndex) == "QUANTIZE"}
    plan = []
    for op in sg8.operators:
        kind = flatbuffer_utils.opcode_to_name(int8_model, op.opcodeIndex)
        if kind not in WEIGHTED or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        w, b = sg8.tensors[op.inputs[1]], sg8.tensors[op.inputs[2]]
        if w.type != INT8 or b.type != INT32 or w.quantization is None or b.quantization is None:
            continue
        w32 = by_name.get(_name(w), [])
        x = int(op.inputs[0])
        x32 = by_name.get(_name(sg8.tensors[quantized_from.get(x, x)]), [])
        # Names must pick one tensor each, of the same shape: anything else is not safely the same layer.
        if len(w32) != 1 or len(x32) != 1 or list(sg32.tensors[w32[0]].shape) != list(w.shape):
            continue
        plan.append({"kind": kind, "weight": int(op.inputs[1]), "bias": int(op.inputs[2]),
                     "fp32_weight": w32[0], "fp32_input": x32[0]})
    return plan


def input_means(fp32_path: Path, tensors: list[int], images: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Per-channel mean (NHWC: the last axis) of each fp32 tensor over the images, accumulated image by image."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Builtin kernels: a delegate does not keep its intermediate tensors.
    it = Interpreter(model_path=str(fp32_path), experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    sums: dict[int, np.ndarray] = {}
    for image in images:
        it.set_tensor(inp["index"], np.asarray(image, np.float32).reshape(inp["shape"]))
        it.invoke()
        for t in tensors:
            value = it.get_tensor(t)
            mean = value.reshape(-1, value.shape[-1]).astype(np.float64).mean(axis=0)
            sums[t] = sums.get(t, 0) + mean
    return {t: s / len(images) for t, s in sums.items()}


def output_shift(kind: str, dw: np.ndarray, mean_in: np.ndarray) -> np.ndarray:
    """E[(Wq - W) * x] per output channel. CONV_2D weights are (O, kH, kW, I); DEPTHWISE_CONV_2D weights are
    (1, kH, kW, I * multiplier), output channel c reading input channel c // multiplier."""
    if kind == "CONV_2D":
        return np.einsum("ohwi,i->o", dw, mean_in)
    per_out = dw.reshape(-1, dw.shape[-1]).sum(axis=0)
    multiplier = dw.shape[-1] // len(mean_in)
    return per_out * mean_in[np.arange(dw.shape[-1]) // multiplier]


def correct_tflite_biases(int8_path: Path, fp32_path: Path, images: list[np.ndarray]) -> int:
    """Rewrite `int8_path` with its convolution biases corrected; returns how many were corrected."""
    from ai_edge_litert.tools import flatbuffer_utils

    int8_model, fp32_model = flatbuffer_utils.read_model(str(int8_path)), flatbuffer_utils.read_model(str(fp32_path))
    plan = _plan(int8_model, fp32_model)
    if not plan or not images:
        return 0
    means = input_means(fp32_path, sorted({p["fp32_input"] for p in plan}), images)
    sg8, sg32 = int8_model.subgraphs[0], fp32_model.subgraphs[0]
    corrected = 0
    for p in plan:
        w_t, b_t = sg8.tensors[p["weight"]], sg8.tensors[p["bias"]]
        w_q, bias = _array(int8_model, w_t, np.int8), _array(int8_model, b_t, np.int32)
        w = _array(fp32_model, sg32.tensors[p["fp32_weight"]], np.float32)
        if w_q is None or bias is None or w is None:
            continue
        scales = np.asarray(w_t.quantization.scale, np.float64)
        shape = [1] * w_q.ndim
        shape[w_t.quantization.quantizedDimension] = -1
        dw = w_q.astype(np.float64) * scales.reshape(shape) - w.astype(np.float64)
        mean_in = means[p["fp32_input"]]
        if p["kind"] == "CONV_2D" and len(mean_in) != w.shape[-1]:
            continue
        shift = output_shift(p["kind"], dw, mean_in)
        bias_scale = np.asarray(b_t.quantization.scale, np.float64)
        new = np.clip(np.round(bias - shift / bias_scale), np.iinfo(np.int32).min, np.iinfo(np.int32).max)
        int8_model.buffers[b_t.buffer].data = np.frombuffer(new.astype(np.int32).tobytes(), np.uint8)
        corrected += 1
    flatbuffer_utils.write_model(int8_model, str(int8_path))
    return corrected
