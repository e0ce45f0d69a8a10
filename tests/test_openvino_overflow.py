"""openvino_overflow: which int8 layers clip on x86 CPUs without VNNI (16-bit pair sums), and the weight headroom the
openvino target gives them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.targets import openvino_overflow as overflow


def _two_convs(path, big: int = 127, small: int = 40) -> None:
    """input -> Q/DQ (u8) -> Conv "clips" (s8 weights all `big`) -> Q/DQ (u8) -> Conv "fits" (weights all `small`).
    With inputs near the top of the u8 range, "clips"'s pairs are about 2 x 255 x 127, past 32767; "fits"'s can
    never pass 2 x 255 x 40."""
    init = [numpy_helper.from_array(np.array(v, dtype=d), n) for n, v, d in [
        ("xs", 2 / 255, np.float32), ("xz", 0, np.uint8),
        ("w1", np.full((8, 8, 3, 3), big), np.int8), ("w2", np.full((4, 8, 1, 1), small), np.int8),
        ("ws1", np.full(8, 1e-4), np.float32), ("wz1", np.zeros(8), np.int8),
        ("ws2", np.full(4, 1e-3), np.float32), ("wz2", np.zeros(4), np.int8),
        ("ys", 2 / 255, np.float32), ("yz", 0, np.uint8)]]
    node = helper.make_node
    graph = helper.make_graph([
        node("QuantizeLinear", ["input", "xs", "xz"], ["xq"]), node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        node("DequantizeLinear", ["w1", "ws1", "wz1"], ["w1d"], axis=0),
        node("Conv", ["xd", "w1d"], ["c1"], name="clips", pads=[1] * 4),
        node("Relu", ["c1"], ["r1"]),
        node("QuantizeLinear", ["r1", "ys", "yz"], ["rq"]), node("DequantizeLinear", ["rq", "ys", "yz"], ["rd"]),
        node("DequantizeLinear", ["w2", "ws2", "wz2"], ["w2d"], axis=0),
        node("Conv", ["rd", "w2d"], ["output"], name="fits")],
        "two_convs", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 8, 6, 6])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 4, 6, 6])], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def _images(n: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.uniform(1.8, 2.0, (1, 8, 6, 6)).astype(np.float32) for _ in range(n)]


def test_exact_pair_sums_are_the_convolution():
    """Summed pair by pair without the clip, the accumulators are the integer convolution of the codes (minus the
    zero point), for padding, stride and an odd channel count; 7-bit weights never clip."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (5, 9, 11)).astype(np.int32)
    weight = rng.integers(-128, 128, (4, 5, 3, 3)).astype(np.int32)
    layer = {"weight": weight, "zero_point": 7, "pads": [1, 1, 1, 1], "strides": [2, 2], "dilations": [1, 1]}
    signal, error = overflow.pair_sum_error(codes, layer)
    conv = torch.nn.functional.conv2d(torch.tensor(codes - 7.0, dtype=torch.float64)[None],
                                      torch.tensor(weight, dtype=torch.float64), stride=2, padding=1)
    assert signal == pytest.approx(float((conv ** 2).sum()), rel=1e-12)
    assert error > 0, "random full-range codes and weights clip somewhere"
    assert overflow.pair_sum_error(codes, {**layer, "weight": np.clip(weight, -64, 64)})[1] == 0


def test_a_fully_connected_layer_sums_its_rows():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 256, (3, 7)).astype(np.int32)  # (tokens, in): three rows of one image
    weight = rng.integers(-128, 128, (5, 7)).astype(np.int32)  # (out, in)
    layer = {"weight": weight[:, :, None, None], "zero_point": 3, "pads": [0] * 4, "strides": [1, 1],
             "dilations": [1, 1], "op": "Gemm"}
    signal, _ = overflow.pair_sum_error(codes, layer)
    assert signal == float((((codes - 3) @ weight.T).astype(np.float64) ** 2).sum())


def test_the_layer_that_clips_is_found_and_the_one_that_cannot_is_not(tmp_path):
    _two_convs(tmp_path / "model.onnx")
    found = overflow.clipping_layers(tmp_path / "model.onnx", _images())
    assert list(found) == ["clips"]
    assert found["clips"] < overflow.MIN_SQNR_DB
    # The same graph with weights whose pairs stay in 16 bits has nothing to report.
    _two_convs(tmp_path / "small.onnx", big=64)
    assert overflow.clipping_layers(tmp_path / "small.onnx", _images()) == {}


def test_openvino_clips_where_the_pair_sums_say_so(tmp_path):
    """The premise, on the real runtime: OpenVINO's int8 convolution on this CPU differs from the exact result
    exactly when the emulated pair sums clip."""
    from edgekit.board.ort_session import int8_sums_saturate_here

    if not int8_sums_saturate_here():
        pytest.skip("this CPU has an int8 dot product (VNNI/AMX) or is not x86: OpenVINO sums exactly here")
    import onnxruntime as ort
    import openvino as ov

    x = _images(1)[0]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    errors = {}
    for big in (127, 64):
        path = tmp_path / f"model{big}.onnx"
        _two_convs(path, big=big)
        exact = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        errors[big] = np.abs(compiled(x)[compiled.outputs[0]] - exact).max() / np.abs(exact).max()
    assert errors[127] > 0.05, errors
    assert errors[64] < 0.01, errors


def test_headroom_widens_the_channels_that_clip_just_enough(tmp_path):
    """weight_headroom gives the clipping layer's channels the factor that brings their largest pair sum under 16
    bits, and nothing to the layer that fits; weights shrunk by it no longer clip on the same images."""
    _two_convs(tmp_path / "model.onnx")
    widen = overflow.weight_headroom(tmp_path / "model.onnx", _images())
    assert list(widen) == ["clips"]
    # Codes near 230-255 times two weights of 127: pairs up to ~64,000, about twice the limit, in every channel.
    assert widen["clips"].shape == (8,) and np.all((widen["clips"] > 1.7) & (widen["clips"] < 2.0))
    shrunk = int(np.floor(127 / widen["clips"].max()))
    _two_convs(tmp_path / "shrunk.onnx", big=shrunk)
    assert overflow.weight_headroom(tmp_path / "shrunk.onnx", _images()) == {}
    assert overflow.clipping_layers(tmp_path / "shrunk.onnx", _images()) == {}


def test_pair_sum_peaks_are_the_largest_pair_per_channel():
    codes = np.array([[[10]], [[255]], [[0]]], dtype=np.int32)  # (C=3, 1, 1): pairs (0, 1) and (2, padding)
    weight = np.array([[1, 2, 100], [-3, -4, 5]], dtype=np.int32)[:, :, None, None]
    layer = {"weight": weight, "zero_point": 0, "pads": [0] * 4, "strides": [1, 1], "dilations": [1, 1]}
    assert overflow.pair_sum_peaks(codes, layer).tolist() == [10 + 510, 30 + 1020]


def test_widened_weights_shrink_only_their_channels(mnv3_workspace, tmp_path):
    """build_openvino_qdq with a widening factor of 2 on one output channel of one Conv: that channel's int8 codes
    peak at about 64, the others still use the full 127."""
    from edgekit.calibration import Calibration
    from edgekit.targets.openvino_qdq import build_openvino_qdq

    source = onnx.load(str(mnv3_workspace / "model.fp32.onnx"))
    conv = next(n for n in source.graph.node if n.op_type == "Conv"
                and next((a.i for a in n.attribute if a.name == "group"), 1) == 1)
    channels = next(i.dims[0] for i in source.graph.initializer if i.name == conv.input[1])
    factors = np.ones(channels)
    factors[0] = 2.0
    cal = Calibration.load(mnv3_workspace / "calibration.json")
    build_openvino_qdq(mnv3_workspace / "model.fp32.onnx", tmp_path / "ov.onnx", cal, [], {conv.name: factors})
    built = onnx.load(str(tmp_path / "ov.onnx"))
    producer = {o: n for n in built.graph.node for o in n.output}
    node = next(n for n in built.graph.node if n.name == conv.name)
    inits = {i.name: numpy_helper.to_array(i) for i in built.graph.initializer}
    codes = np.abs(inits[producer[node.input[1]].input[0]].astype(np.int32)).reshape(channels, -1).max(axis=1)
    assert codes[0] in (63, 64)
    assert np.all(codes[1:] == 127)


def test_an_ir_with_headroom_sums_exactly_in_openvino(tmp_path):
    """On the real runtime, on a CPU whose sums clip: the two-conv model's clipping layer with its weights shrunk
    by weight_headroom's factor gives OpenVINO's int8 result within 1 % of the exact one (10x closer than before)."""
    from edgekit.board.ort_session import int8_sums_saturate_here

    if not int8_sums_saturate_here():
        pytest.skip("this CPU has an int8 dot product (VNNI/AMX) or is not x86: OpenVINO sums exactly here")
    import onnxruntime as ort
    import openvino as ov

    _two_convs(tmp_path / "model.onnx")
    shrunk = int(np.floor(127 / overflow.weight_headroom(tmp_path / "model.onnx", _images())["clips"].max()))
    _two_convs(tmp_path / "shrunk.onnx", big=shrunk)
    x = _images(1)[0]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    exact = ort.InferenceSession(str(tmp_path / "shrunk.onnx"), options,
                                 providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    compiled = ov.Core().compile_model(str(tmp_path / "shrunk.onnx"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert np.abs(compiled(x)[compiled.outputs[0]] - exact).max() / np.abs(exact).max() < 0.01
