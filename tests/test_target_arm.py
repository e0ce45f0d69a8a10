"""The ARM target: a QDQ graph in the TFLite integer scheme that agrees with fp32, and a check that catches
graphs outside the scheme."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest

from edgekit.errors import EdgekitError
from edgekit.targets.arm import ArmTarget, check_tflite_int8
from tests.target_helpers import compile_target, eval_agreement, initializer, nodes, producer, set_initializer


@pytest.fixture(scope="module")
def arm_dir(tmp_path_factory, quantized_workspace):
    out = tmp_path_factory.mktemp("arm")
    result = compile_target("arm", quantized_workspace, out)
    return out, result


@pytest.fixture()
def int8_model(arm_dir) -> onnx.ModelProto:
    return onnx.load(str(arm_dir[0] / "model.int8.onnx"))


def test_compile_writes_a_conforming_int8_model(arm_dir, int8_model, quantized_workspace):
    out, result = arm_dir
    # (+ tflite_int8 / tflite_fp32 with the edgekit[tflite] extra: tests/test_tflite.py)
    assert {k: result.files[k] for k in ("int8", "fp32")} == {"int8": "model.int8.onnx", "fp32": "model.fp32.onnx"}
    assert (out / "model.fp32.onnx").read_bytes() == (quantized_workspace / "model.fp32.onnx").read_bytes()
    onnx.checker.check_model(int8_model)
    assert check_tflite_int8(int8_model) == []
    assert result.details["conformance"]["violations"] == []
    # Read off the graph: Relu folds into the conv's requantization, pooling and reshape stay float.
    assert result.precision == {"Conv": "int8", "Add": "int8", "Gemm": "int8", "ReduceMean": "fp32", "Reshape": "fp32"}


def test_weights_bias_and_activations_follow_the_scheme(int8_model):
    for node in nodes(int8_model, "Conv") + nodes(int8_model, "Gemm"):
        x_dq, w_dq, b_dq = (producer(int8_model, name) for name in node.input)
        weight = initializer(int8_model, w_dq.input[0])
        assert weight.dtype == np.int8 and weight.min() >= -127
        assert not initializer(int8_model, w_dq.input[2]).any(), "weights are symmetric"
        assert initializer(int8_model, w_dq.input[1]).shape == (weight.shape[0],), "one scale per output channel"
        bias = initializer(int8_model, b_dq.input[0])
        assert bias.dtype == np.int32 and not initializer(int8_model, b_dq.input[2]).any()
        expected = initializer(int8_model, x_dq.input[1]) * initializer(int8_model, w_dq.input[1])
        np.testing.assert_allclose(initializer(int8_model, b_dq.input[1]), expected, rtol=1e-6)
    for q in nodes(int8_model, "QuantizeLinear"):
        assert initializer(int8_model, q.input[2]).dtype == np.int8
        assert initializer(int8_model, q.input[1]).size == 1, "activations are per-tensor"


def test_int8_agrees_with_fp32(arm_dir, quantized_workspace):
    agreement, runner = eval_agreement("arm", quantized_workspace, arm_dir[0])
    assert agreement >= 0.9
    assert not getattr(runner, "emulated", False), "ONNX Runtime is the arm target's own runtime"


def test_runner_uses_xnnpack_only_where_onnxruntime_has_it(arm_dir):
    import onnxruntime as ort

    runner = ArmTarget().runner(arm_dir[0], "int8")
    has_xnnpack = "XnnpackExecutionProvider" in ort.get_available_providers()
    assert runner.providers[0] == ("XnnpackExecutionProvider" if has_xnnpack else "CPUExecutionProvider")
    assert arm_dir[1].details["providers"] == runner.providers
    with pytest.raises(EdgekitError, match="no 'engine' artifact"):
        ArmTarget().runner(arm_dir[0], "engine")


def _first_conv(model):
    conv = nodes(model, "Conv")[0]
    return conv, producer(model, conv.input[1]), producer(model, conv.input[2])


def _nonzero_weight_zero_point(m):
    _, w_dq, _ = _first_conv(m)
    set_initializer(m, w_dq.input[2], np.ones_like(initializer(m, w_dq.input[2])))


def _per_tensor_conv_weight(m):
    _, w_dq, _ = _first_conv(m)
    set_initializer(m, w_dq.input[1], np.float32(initializer(m, w_dq.input[1]).max()))
    set_initializer(m, w_dq.input[2], np.int8(0))


def _float_bias(m):
    conv, _, b_dq = _first_conv(m)
    scale = initializer(m, b_dq.input[1])
    m.graph.initializer.append(onnx.numpy_helper.from_array(
        (initializer(m, b_dq.input[0]) * scale).astype(np.float32), "float_bias"))
    conv.input[2] = "float_bias"


def _uint8_activation(m):
    q = nodes(m, "QuantizeLinear")[0]
    set_initializer(m, q.input[2], np.uint8(128))


def _softmax_with_calibrated_scale(m):
    # A Softmax head requantized with the calibrated [0, 1] range (scale 1/255), not the spec's fixed 1/256, -128.
    m.graph.initializer.extend([onnx.numpy_helper.from_array(np.float32(1 / 255), "sm_scale"),
                                onnx.numpy_helper.from_array(np.int8(-128), "sm_zp")])
    m.graph.node.extend([
        onnx.helper.make_node("Softmax", ["logits"], ["probs"], name="softmax"),
        onnx.helper.make_node("QuantizeLinear", ["probs", "sm_scale", "sm_zp"], ["probs_q"], name="probs_q"),
        onnx.helper.make_node("DequantizeLinear", ["probs_q", "sm_scale", "sm_zp"], ["probs_dq"], name="probs_dq"),
    ])
    m.graph.output.append(onnx.helper.make_tensor_value_info("probs_dq", onnx.TensorProto.FLOAT, None))


@pytest.mark.parametrize("breakage, expected", [
    (_nonzero_weight_zero_point, "weight has zero point"),
    (_per_tensor_conv_weight, "per-channel on axis 0"),
    (_float_bias, "is float, not int32"),
    (_uint8_activation, "not int8"),
    (_softmax_with_calibrated_scale, "Softmax output must have scale 0.00390625 and zero point -128"),
])
def test_check_catches_graphs_outside_the_scheme(int8_model, breakage, expected):
    broken = copy.deepcopy(int8_model)
    breakage(broken)
    violations = check_tflite_int8(broken)
    assert any(expected in v for v in violations), violations


def _conv_biases(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """{Conv name: its int32 bias as stored} in a QDQ model."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    return {n.name: inits[producer[n.input[2]].input[0]] for n in model.graph.node
            if n.op_type == "Conv" and len(n.input) > 2 and n.input[2] in producer}


def test_arm_int8_gets_the_same_bias_correction(arm_dir, int8_model, quantized_workspace):
    """Same scheme for weights and bias, same ranges: the arm model's int32 biases are the portable model's, which
    quantize bias-corrected; an uncorrected build would differ wherever rounding shifted a channel's mean."""
    _, result = arm_dir
    assert result.details["bias_corrected_convs"] > 0
    portable = _conv_biases(onnx.load(str(quantized_workspace / "model.int8.onnx")))
    arm = _conv_biases(int8_model)
    assert portable and arm.keys() == portable.keys()
    for name, bias in portable.items():
        np.testing.assert_array_equal(arm[name], bias, err_msg=name)
