"""openvino_overflow: which int8 layers clip on x86 CPUs without VNNI (16-bit pair sums), and the openvino target's
float-search order built from it."""

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


def test_the_openvino_search_tries_clipping_layers_first_only_where_sums_clip(monkeypatch):
    from edgekit.targets import openvino

    ctx = type("Ctx", (), {"options": {}, "log": staticmethod(lambda line: None)})()
    monkeypatch.setattr(openvino, "_clipping_layers", lambda ctx: {"c": 12.0, "a": 30.0})
    ranking = ["a", "b", "c", "d"]
    target = openvino.OpenVINOTarget()
    monkeypatch.setattr("edgekit.board.ort_session.int8_sums_saturate_here", lambda: True)
    assert target.fallback_ranking(ctx, ranking) == ["c", "a", "b", "d"]
    ctx.options = {"openvino_source": "nncf"}  # NNCF places its own quantizers: the QDQ model's layers do not apply
    assert target.fallback_ranking(ctx, ranking) == ranking
    ctx.options = {}
    monkeypatch.setattr("edgekit.board.ort_session.int8_sums_saturate_here", lambda: False)
    assert target.fallback_ranking(ctx, ranking) == ranking
