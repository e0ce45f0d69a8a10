"""The Jetson target: a TensorRT-ready Q/DQ graph (symmetric, Q/DQ only where TensorRT fuses them), the exact
trtexec line, emulated numerics that agree with fp32, and a check that catches graphs TensorRT would mishandle."""

from __future__ import annotations

import copy
import importlib.util
import os

import numpy as np
import onnx
import pytest
from onnx import helper

from edgekit.errors import EdgekitError
from edgekit.targets.jetson import FUSIBLE, JetsonTarget, check_tensorrt_qdq, polygraphy_lint, trtexec_command
from tests.target_helpers import compile_target, eval_agreement, initializer, nodes, producer, set_initializer

NO_ENGINE = JetsonTarget().engine_available()


@pytest.fixture(scope="module")
def jetson_dir(tmp_path_factory, quantized_workspace):
    out = tmp_path_factory.mktemp("jetson")
    result = compile_target("jetson", quantized_workspace, out)
    return out, result


@pytest.fixture()
def qdq_model(jetson_dir) -> onnx.ModelProto:
    return onnx.load(str(jetson_dir[0] / "model.qdq.onnx"))


def test_compile_writes_a_conforming_qdq_model(jetson_dir, qdq_model):
    out, result = jetson_dir
    assert {"int8": "model.qdq.onnx", "fp32": "model.fp32.onnx", "build_script": "build_engine.sh"}.items() \
        <= result.files.items()
    onnx.checker.check_model(qdq_model)
    assert check_tensorrt_qdq(qdq_model) == []
    assert result.details["conformance"]["violations"] == []
    lint = result.details["lint"]["status"]
    assert lint == "passed" or lint.startswith("skipped: polygraphy not installed")
    # Read off the graph: what TensorRT gets Q/DQ'd inputs for runs int8, the rest fp16.
    assert result.precision == {"Conv": "int8", "Relu": "fp16", "Add": "int8", "ReduceMean": "fp16",
                                "Reshape": "fp16", "Gemm": "int8"}


def test_symmetric_int8_and_qdq_only_where_tensorrt_fuses(qdq_model):
    qdq = nodes(qdq_model, "QuantizeLinear") + nodes(qdq_model, "DequantizeLinear")
    assert qdq
    for n in qdq:
        zp = initializer(qdq_model, n.input[2])
        assert zp.dtype == np.int8 and not zp.any(), f"{n.name}: zero point must be int8 0"
    consumers = {c.op_type for dq in nodes(qdq_model, "DequantizeLinear") for c in qdq_model.graph.node
                 if dq.output[0] in c.input}
    assert consumers <= set(FUSIBLE)
    for node in nodes(qdq_model, "Conv") + nodes(qdq_model, "Gemm"):
        x_dq, w_dq = producer(qdq_model, node.input[0]), producer(qdq_model, node.input[1])
        assert x_dq.op_type == w_dq.op_type == "DequantizeLinear"
        weight = initializer(qdq_model, producer(qdq_model, w_dq.input[0]).input[0])
        assert weight.dtype == np.float32, "weights stay float behind Q/DQ (TensorRT 8.x rejects int8 weights)"
        assert initializer(qdq_model, w_dq.input[1]).shape == (weight.shape[0],), "per-channel weights"
        assert initializer(qdq_model, node.input[2]).dtype == np.float32, "TensorRT wants a float bias"
    for add in nodes(qdq_model, "Add"):  # the residual: both inputs quantized so TensorRT fuses it
        assert all(producer(qdq_model, i).op_type == "DequantizeLinear" for i in add.input)


def test_build_script_has_the_exact_trtexec_line(jetson_dir):
    out, result = jetson_dir
    script = out / "build_engine.sh"
    assert os.access(script, os.X_OK)
    line = ("trtexec --onnx=model.qdq.onnx --saveEngine=model.engine --int8 --fp16 --minShapes=input:1x1x28x28 "
            "--optShapes=input:1x1x28x28 --maxShapes=input:32x1x28x28 --timingCacheFile=timing.cache")
    assert line in script.read_text().splitlines()
    assert result.details["trtexec"] == line
    big = trtexec_command("input", (3, 224, 224), 64, 64)
    assert "--optShapes=input:64x3x224x224 --maxShapes=input:64x3x224x224" in big


def test_batch_option_sets_the_engine_profile(tmp_path, quantized_workspace):
    compile_target("jetson", quantized_workspace, tmp_path, batch=8)
    assert "--optShapes=input:8x1x28x28 --maxShapes=input:32x1x28x28" in (tmp_path / "build_engine.sh").read_text()


def test_int8_numerics_emulated_and_agree_with_fp32(jetson_dir, quantized_workspace):
    agreement, runner = eval_agreement("jetson", quantized_workspace, jetson_dir[0])
    assert agreement >= 0.9
    if NO_ENGINE:
        assert runner.emulated is True
        assert jetson_dir[1].details["engine"] == f"not built: {NO_ENGINE} (run build_engine.sh on the Jetson)"
        assert "engine" not in jetson_dir[1].files
    with pytest.raises(EdgekitError, match="no 'tflite' artifact"):
        JetsonTarget().runner(jetson_dir[0], "tflite")


def _saturating_qdq(path):
    """x -> Q/DQ (u8) -> Conv (s8 weights, all +127) -> Q/DQ: with inputs near the top of the u8 range, every pair
    of products is about 2 x 255 x 127, past the 16-bit sums x86 int8 kernels without VNNI accumulate into."""
    from onnx import TensorProto, numpy_helper

    init = [numpy_helper.from_array(np.array(v, dtype=d), n) for n, v, d in [
        ("xs", 2 / 255, np.float32), ("xz", 0, np.uint8), ("w", np.full((4, 8, 3, 3), 127), np.int8),
        ("ws", np.full(4, 0.01), np.float32), ("wz", np.zeros(4), np.int8), ("ys", 0.5, np.float32),
        ("yz", 0, np.uint8)]]
    node = helper.make_node
    graph = helper.make_graph([
        node("QuantizeLinear", ["input", "xs", "xz"], ["xq"]), node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0), node("Conv", ["xd", "wd"], ["c"], pads=[1] * 4),
        node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]), node("DequantizeLinear", ["cq", "ys", "yz"], ["output"])],
        "saturating", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 8, 6, 6])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 4, 6, 6])], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_cpu_emulation_runs_the_qdq_graph_as_written(tmp_path):
    """TensorRT sums int8 products exactly; the host's fused int8 kernels need not (x86 without VNNI saturates
    16-bit partial sums). The CPU emulation computes the graph as written, Q/DQ node by node, on any machine."""
    import onnxruntime as ort

    from edgekit.board.jetson_board import JetsonOnnxModel

    _saturating_qdq(tmp_path / "model.qdq.onnx")
    runner = JetsonOnnxModel(tmp_path / "model.qdq.onnx", "int8", available=["CPUExecutionProvider"])
    assert runner.emulated
    x = np.random.default_rng(0).uniform(1.8, 2.0, (4, 8, 6, 6)).astype(np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    as_written = ort.InferenceSession(str(tmp_path / "model.qdq.onnx"), options, providers=["CPUExecutionProvider"])
    expected = as_written.run(None, {"input": x})[0]
    assert expected.max() > 100, "the exact sums are large (the test is about them)"
    np.testing.assert_array_equal(runner(x).reshape(expected.shape), expected)


def _first(model, op_type):
    return nodes(model, op_type)[0]


def _asymmetric_activation(m):
    q = next(n for n in nodes(m, "QuantizeLinear") if n.input[0] == "input")
    set_initializer(m, q.input[2], np.int8(3))


def _qdq_before_pooling(m):
    mean = _first(m, "ReduceMean")
    params = ["input_scale", "input_zero_point"]  # any valid symmetric int8 parameters will do
    q = helper.make_node("QuantizeLinear", [mean.input[0], *params], ["pool_q"], name="pool_q")
    dq = helper.make_node("DequantizeLinear", ["pool_q", *params], ["pool_dq"], name="pool_dq")
    mean.input[0] = "pool_dq"
    index = list(m.graph.node).index(mean)
    m.graph.node.insert(index, dq)
    m.graph.node.insert(index, q)


def _quantized_bias(m):
    conv = _first(m, "Conv")
    bias = initializer(m, conv.input[2])
    m.graph.initializer.extend([onnx.numpy_helper.from_array(np.round(bias / 1e-4).astype(np.int32), "b_q"),
                                onnx.numpy_helper.from_array(np.float32(1e-4), "b_scale"),
                                onnx.numpy_helper.from_array(np.int32(0), "b_zp")])
    m.graph.node.insert(0, helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zp"], ["b_dq"], name="b_dq"))
    conv.input[2] = "b_dq"


def _per_tensor_conv_weight(m):
    w_dq = producer(m, _first(m, "Conv").input[1])  # its Q shares these scale and zero-point initializers
    set_initializer(m, w_dq.input[1], np.float32(initializer(m, w_dq.input[1]).max()))
    set_initializer(m, w_dq.input[2], np.int8(0))


@pytest.mark.parametrize("breakage, expected", [
    (_asymmetric_activation, "not 0 (symmetric)"),
    (_qdq_before_pooling, "feeds ReduceMean"),
    (_quantized_bias, "bias is quantized"),
    (_per_tensor_conv_weight, "per-channel on axis 0"),
])
def test_check_catches_graphs_tensorrt_would_mishandle(qdq_model, breakage, expected):
    broken = copy.deepcopy(qdq_model)
    breakage(broken)
    violations = check_tensorrt_qdq(broken)
    assert any(expected in v for v in violations), violations


@pytest.mark.skipif(importlib.util.find_spec("polygraphy") is None, reason="polygraphy is not installed")
def test_polygraphy_lint_reports_a_broken_graph(qdq_model, tmp_path):
    del qdq_model.graph.initializer[0]  # a weight vanishes: the graph no longer checks or runs
    onnx.save(qdq_model, tmp_path / "broken.onnx")
    lint = polygraphy_lint(tmp_path / "broken.onnx")
    assert lint["status"] == "failed" and lint["entries"]


@pytest.mark.skipif(NO_ENGINE is not None,
                    reason="TensorRT and an NVIDIA GPU are needed to build an engine; not available on this machine")
def test_engine_builds_and_agrees_with_fp32(jetson_dir, quantized_workspace):
    out, result = jetson_dir
    assert result.files["engine"] == "model.engine" and (out / "model.engine").stat().st_size > 0
    assert result.details["engine"].startswith("built: model.engine")
    agreement, runner = eval_agreement("jetson", quantized_workspace, out)
    assert runner.emulated is False and agreement >= 0.9


def test_bias_correction_reads_tensorrt_weights_and_moves_the_float_bias(jetson_dir, qdq_model, quantized_workspace):
    """The weights behind Q->DQ decode to the same int8 values as the portable model's stored int8 weights (same
    symmetric per-channel scheme), and the float biases moved off the fp32 model's by the correction."""
    from edgekit.bias_correction import int8_conv_weights

    _, result = jetson_dir
    assert result.details["bias_corrected_convs"] > 0
    tensorrt = int8_conv_weights(qdq_model)
    portable = int8_conv_weights(onnx.load(str(quantized_workspace / "model.int8.onnx")))
    assert tensorrt and tensorrt.keys() == portable.keys()
    for name, w in portable.items():
        np.testing.assert_allclose(tensorrt[name], w, rtol=0, atol=1e-6, err_msg=name)
    fp32 = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(quantized_workspace / "model.fp32.onnx")).graph.initializer}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in qdq_model.graph.initializer}
    moved = [n.name for n in qdq_model.graph.node if n.op_type == "Conv" and len(n.input) > 2
             and n.input[2] in fp32 and not np.array_equal(inits[n.input[2]], fp32[n.input[2]])]
    assert len(moved) == result.details["bias_corrected_convs"]
