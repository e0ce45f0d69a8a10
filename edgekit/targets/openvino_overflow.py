"""Which layers of an int8 QDQ model clip on an x86 CPU without an int8 dot product, found by running it.

Intel CPUs before VNNI (SSE, AVX2, AVX-512 without VNNI) and AMD's before Zen 4 compute an int8 convolution or
fully-connected layer with VPMADDUBSW: u8 activation x s8 weight, two neighbouring input channels at a time, the pair
summed into 16 bits with saturation at +-32767. Where large activation codes meet large weights of the same sign
the pair sum clips and the layer's accumulator is wrong. OpenVINO's CPU plugin (oneDNN) works this way on such
CPUs ("Saturation (overflow) issue workaround" in its docs), and so does ONNX Runtime's x86 int8 path.
In EfficientNet-Lite2 the layers that clip are the 1x1 convolutions reading a signed tensor (a linear bottleneck's
output, a residual sum): its u8 zero point is 128, so the codes sit near 128 where the activation is 0, and a pair of
large weights has spent its 16-bit headroom before the activation moves.

Here the QDQ model runs as written (exact) on a few calibration images, the u8 codes each weighted layer reads are
taken off the graph, and its accumulators are recomputed pair by pair. clipping_layers reports the layers whose
clipped sums lose more than MIN_SQNR_DB; weight_headroom gives, per output channel, the factor by which to widen the
weights' range so that the largest pair sum seen fits in 16 bits. The openvino target builds its IR with that
headroom, on every host (targets/openvino.py, _openvino_qdq): a channel whose pairs fit keeps its weights, one whose
largest pair is 1.3x the limit loses a third of a bit.

The textbook cure, 7-bit weights (|w| <= 64: a pair is at most 2 x 255 x 64 = 32640), is what NNCF's OverflowFix
applies to the first layer (edgekit did too, until the headroom replaced it) or to every layer: a whole bit off
every channel, where most need none. Measured on EfficientNet-Lite2 (AMD EPYC with AVX2, 2026-12-01, the 500
ImageNet photos, quantize's 3 float layers kept; `python benchmarks/saturation.py WORKSPACE --openvino`): agreement
with fp32 in OpenVINO 97.4 % without a cure (98.4 % with exact sums); 96.4 % with 7-bit weights on the 20 layers
that clip past 40 dB; 98.8 % with the 4 worst of them in float; 99.4 % (99.4 % exact) with the weight headroom
(3,779 channels of the 37 layers where any pair sum passed 16 bits widened, at most 0.72 bit), which needs no more
layers in float.

Depthwise and grouped convolutions are left out: oneDNN runs them with 32-bit sums.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

PAIR_MAX = 32767  # VPMADDUBSW saturates each pair sum to int16
# Clipping error at most 1 % of the layer's accumulator (RMS): well under int8's own rounding noise (typically
# 30-40 dB per layer), so a layer above it loses nothing measurable to the 16-bit sums.
MIN_SQNR_DB = 40.0
IMAGES = 8  # calibration images analysed: saturation follows the activation range, which a few images show
PAIR_CHUNK = 1 << 24  # pair sums computed at a time (int32), to bound memory on large layers


def clipping_layers(qdq_path: Path, images: list[np.ndarray]) -> dict[str, float]:
    """Node name -> SQNR (dB) of the 16-bit pair sums against exact sums, for each Conv/Gemm/MatMul of the QDQ
    model at `qdq_path` that reads int8 codes and whose pair sums clip on `images` (each (1, C, H, W)) more than
    MIN_SQNR_DB allows."""
    model = onnx.load(str(qdq_path))
    layers = int8_layers(model)
    signal = {layer["name"]: 0.0 for layer in layers}
    error = dict(signal)
    for layer, codes in _layer_codes(model, layers, images):
        s, e = pair_sum_error(codes, layer)
        signal[layer["name"]] += s
        error[layer["name"]] += e
    return {name: round(sqnr_db(signal[name], error[name]), 1) for name in signal
            if error[name] and sqnr_db(signal[name], error[name]) < MIN_SQNR_DB}


def weight_headroom(qdq_path: Path, images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Node name -> per-output-channel factor (>= 1) by which to widen the weights' quantization range so that no
    pair sum on `images` passes 16 bits, for each layer of the QDQ model at `qdq_path` where one does. A channel
    whose pairs fit gets 1 (its weights stay as they are); one whose largest pair sum is 1.3x the limit gets its
    range widened 1.3x, a third of a bit, where 7-bit weights would take a whole bit from every channel."""
    model = onnx.load(str(qdq_path))
    layers = int8_layers(model)
    peaks = {layer["name"]: np.zeros(layer["weight"].shape[0], np.int64) for layer in layers}
    for layer, codes in _layer_codes(model, layers, images):
        peaks[layer["name"]] = np.maximum(peaks[layer["name"]], pair_sum_peaks(codes, layer))
    # The headroom factor applies to the weights as quantized, whose largest |code| is 127; ORT's rounding
    # after widening can land a weight one code above w/factor, so aim a code's worth below the limit.
    limit = PAIR_MAX * (1 - 1 / 127)
    return {name: np.maximum(1.0, peak / limit) for name, peak in peaks.items() if peak.max() > PAIR_MAX}


def _layer_codes(qdq_model: onnx.ModelProto, layers: list[dict], images: list[np.ndarray]):
    """(layer, the u8 codes it reads as int32, batch dimension dropped) for each image and layer: the QDQ model run
    as written (ONNX Runtime with graph optimizations off), its layers' input codes taken as extra outputs."""
    import onnxruntime as ort

    if not layers:
        return
    model = onnx.ModelProto()
    model.CopyFrom(qdq_model)  # the caller's model stays as it was
    codes = sorted({layer["codes"] for layer in layers})
    for name in codes:
        model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.UINT8, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the codes as written
    with tempfile.TemporaryDirectory(prefix="edgekit-overflow-") as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, str(path))
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    for image in images:
        by_name = dict(zip(codes, session.run(codes, {input_name: image})))
        for layer in layers:
            yield layer, by_name[layer["codes"]][0].astype(np.int32)


def spread_sample(images, pre) -> list[np.ndarray]:
    """IMAGES images of an ImageSet, spread over it, each preprocessed to (1, C, H, W): what clipping_layers reads."""
    picks = np.linspace(0, len(images) - 1, min(IMAGES, len(images))).round().astype(int)
    return [images.load(int(i), pre)[None] for i in picks]


def sqnr_db(signal: float, error: float) -> float:
    return float("inf") if not error else 10 * np.log10(max(signal, 1e-30) / error)


def int8_layers(model: onnx.ModelProto) -> list[dict]:
    """The Conv (group 1), Gemm and MatMul nodes whose input and weight both come from a DequantizeLinear, with
    what the pair arithmetic needs: the u8 codes' tensor, the activation zero point, the int8 weights as
    (out, in, kh, kw) and the convolution's geometry."""
    init = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    layers = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        dq_x, dq_w = producer.get(node.input[0]), producer.get(node.input[1])
        if not (dq_x and dq_w and dq_x.op_type == dq_w.op_type == "DequantizeLinear" and dq_w.input[0] in init
                and dq_x.input[0] not in init):  # an activation read as codes, int8 constant weights
            continue
        x_type = _elem_type(model, dq_x.input[0], init, producer)
        if x_type != onnx.TensorProto.UINT8:  # s8 x s8 has no VPMADDUBSW path to saturate
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight = numpy_helper.to_array(init[dq_w.input[0]]).astype(np.int32)
        if node.op_type == "Conv":
            if attrs.get("group", 1) != 1:
                continue  # depthwise / grouped: 32-bit sums in oneDNN
        elif weight.ndim != 2:
            continue  # a batched MatMul: not a fully-connected layer
        elif node.op_type == "MatMul" or not attrs.get("transB", 0):
            weight = weight.T  # (in, out) -> (out, in)
        if weight.ndim == 2:
            weight = weight[:, :, None, None]
        zero_point = 0
        if len(dq_x.input) > 2 and dq_x.input[2] in init:
            zero_point = int(numpy_helper.to_array(init[dq_x.input[2]]).ravel()[0])
        # A bound first: no pair can clip when the two largest |w| of a pair times 255 stay in range.
        pair_bound = (np.abs(_pad_channels(weight)).reshape(weight.shape[0], -1, 2, *weight.shape[2:])
                      .sum(axis=2).max()) * 255
        if pair_bound <= PAIR_MAX:
            continue
        layers.append({"name": node.name, "codes": dq_x.input[0], "weight": weight, "zero_point": zero_point,
                       "pads": attrs.get("pads", [0, 0, 0, 0]), "strides": attrs.get("strides", [1, 1]),
                       "dilations": attrs.get("dilations", [1, 1]), "op": node.op_type})
    return layers


def _elem_type(model, name, init, producer) -> int | None:
    if name in init:
        return init[name].data_type
    q = producer.get(name)
    if q is not None and q.op_type == "QuantizeLinear" and len(q.input) > 2 and q.input[2] in init:
        return init[q.input[2]].data_type  # the zero point's type is the codes' type
    return None


def _pad_channels(weight: np.ndarray) -> np.ndarray:
    """An odd input-channel count padded with a zero channel: the kernels pad the same way."""
    if weight.shape[1] % 2:
        weight = np.pad(weight, ((0, 0), (0, 1), (0, 0), (0, 0)))
    return weight


def pair_sum_error(codes: np.ndarray, layer: dict) -> tuple[float, float]:
    """(sum of squared exact accumulators, sum of squared differences the 16-bit pair sums make) for one image's
    u8 codes: (C, H, W) for a Conv, (..., C) for a Gemm/MatMul (each row a 1x1 "pixel"). Pairs are neighbouring
    input channels at one kernel tap, as oneDNN's non-VNNI int8 kernels lay them out."""
    weight = _pad_channels(layer["weight"])
    accumulator = clipped = 0
    for pair in _pair_sums(codes, layer):
        accumulator = accumulator + pair.sum(axis=1, dtype=np.int64)
        clipped = clipped + np.clip(pair, -PAIR_MAX - 1, PAIR_MAX).sum(axis=1, dtype=np.int64)
    # The zero point's share is subtracted after the sums (oneDNN's compensation): the signal is what is left.
    exact = accumulator - layer["zero_point"] * weight.sum(axis=(1, 2, 3))[:, None]
    return float((exact.astype(np.float64) ** 2).sum()), float(((clipped - accumulator).astype(np.float64) ** 2).sum())


def pair_sum_peaks(codes: np.ndarray, layer: dict) -> np.ndarray:
    """The largest |pair sum| of each output channel for one image's u8 codes (as pair_sum_error reads them)."""
    peak = np.zeros(layer["weight"].shape[0], np.int64)
    for pair in _pair_sums(codes, layer):
        peak = np.maximum(peak, np.abs(pair).max(axis=(1, 2)))
    return peak


def _pair_sums(codes: np.ndarray, layer: dict):
    """The layer's pair sums (out, pairs, positions), int32, a chunk of pairs at a time, kernel tap by tap."""
    weight = _pad_channels(layer["weight"])
    out_ch, in_ch, kh, kw = weight.shape
    if layer.get("op", "Conv") != "Conv":
        codes = codes.reshape(-1, codes.shape[-1]).T[:, :, None]
    top, left, bottom, right = layer["pads"]
    x = np.pad(codes, ((0, in_ch - codes.shape[0]), (top, bottom), (left, right)), constant_values=layer["zero_point"])
    x[codes.shape[0]:] = 0  # the padded channel holds zeros, not the zero point
    (sh, sw), (dh, dw) = layer["strides"], layer["dilations"]
    height = (x.shape[1] - dh * (kh - 1) - 1) // sh + 1
    width = (x.shape[2] - dw * (kw - 1) - 1) // sw + 1
    pairs_per_chunk = max(1, PAIR_CHUNK // (out_ch * height * width))
    for i in range(kh):
        for j in range(kw):
            tap = x[:, i * dh: i * dh + sh * (height - 1) + 1: sh, j * dw: j * dw + sw * (width - 1) + 1: sw]
            tap = tap.reshape(in_ch // 2, 2, height * width)
            w = weight[:, :, i, j].reshape(out_ch, in_ch // 2, 2)
            for p in range(0, in_ch // 2, pairs_per_chunk):
                q = slice(p, p + pairs_per_chunk)
                yield w[:, q, 0, None] * tap[None, q, 0] + w[:, q, 1, None] * tap[None, q, 1]
