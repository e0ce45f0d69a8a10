"""The OpenVINO target: a true-fp32 reference IR that matches ONNX Runtime, an int8 IR that is really quantized
and agrees with it, from either source (NNCF or the portable QDQ model), at any batch size."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgekit.data import Preprocess, open_images
from edgekit.errors import EdgekitError
from edgekit.ort_runner import OrtModel
from edgekit.targets import get_target
from edgekit.targets.openvino import OpenVINOTarget, _convert, openvino_cpus, runtime_precision
from tests.target_helpers import compile_target, eval_agreement

ov = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def ov_dirs(tmp_path_factory, quantized_workspace):
    """{source: (target folder, CompileResult)} for both ways to the int8 IR."""
    dirs = {}
    for source in ("nncf", "qdq"):
        out = tmp_path_factory.mktemp(f"openvino-{source}")
        dirs[source] = out, compile_target("openvino", quantized_workspace, out, openvino_source=source)
    return dirs


@pytest.fixture(scope="module")
def eval_batch(quantized_workspace) -> np.ndarray:
    manifest = json.loads((quantized_workspace / "manifest.json").read_text())
    images = open_images(manifest["eval_data"]["path"], "eval")
    return next(images.batches(Preprocess.from_dict(manifest["preprocess"]), 64))


def op_types(path) -> list[str]:
    return [op.get_type_name() for op in ov.Core().read_model(path).get_ops()]


def test_available_here_and_in_the_registry():
    assert OpenVINOTarget().available() is None
    assert isinstance(get_target("openvino"), OpenVINOTarget)


@pytest.mark.parametrize("source", ["nncf", "qdq"])
def test_compile_writes_an_int8_ir_and_a_true_fp32_one(ov_dirs, source):
    out, result = ov_dirs[source]
    assert result.files == {"int8": "model.int8.xml", "fp32": "model.fp32.xml"}
    for xml in result.files.values():
        assert (out / xml).is_file() and (out / xml).with_suffix(".bin").is_file()
    assert result.details["device"] == "CPU" and result.details["source"] == source
    assert set(result.versions) == {"openvino", "nncf"}
    int8_ops, fp32_ops = op_types(out / "model.int8.xml"), op_types(out / "model.fp32.xml")
    assert int8_ops.count("FakeQuantize") == result.details["fake_quantize_ops"] > 0
    assert "FakeQuantize" not in fp32_ops
    fp32_types = {op.get_element_type() for op in ov.Core().read_model(out / "model.fp32.xml").get_ops()}
    assert ov.Type.f16 not in fp32_types, "the reference keeps fp32 weights, not fp16"
    # The plugin runs the convolutions and the classifier in int8 on this CPU.
    assert result.precision["Convolution"] == "int8" and result.precision["FullyConnected"] == "int8"


def test_nncf_runs_the_whole_chain_in_int8(ov_dirs):
    # Read off the CPU plugin's graph: the residual add (Eltwise), the pooling (Reduce) and the flatten read int8
    # too, so nothing between the input's quantization and the logits runs in float.
    assert ov_dirs["nncf"][1].precision == {
        "Convolution": "int8", "Eltwise": "int8", "FullyConnected": "int8", "Reduce": "int8", "Reshape": "int8"}


def test_fp32_ir_matches_onnx_runtime(ov_dirs, quantized_workspace, eval_batch):
    runner = OpenVINOTarget().runner(ov_dirs["nncf"][0], "fp32", threads=1)
    assert runner.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32  # not the bf16 default
    assert runner.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert set(runtime_precision(runner.compiled).values()) == {"fp32"}
    reference = OrtModel(quantized_workspace / "model.fp32.onnx")(eval_batch)
    assert np.abs(runner(eval_batch) - reference).max() < 1e-3


@pytest.mark.parametrize("source", ["nncf", "qdq"])
def test_int8_agrees_with_fp32(ov_dirs, quantized_workspace, source):
    agreement, runner = eval_agreement("openvino", quantized_workspace, ov_dirs[source][0])
    assert agreement >= 0.9
    assert runner.emulated is False


@pytest.mark.parametrize("which", ["int8", "fp32"])
def test_runner_takes_any_batch_size(ov_dirs, eval_batch, which):
    runner = OpenVINOTarget().runner(ov_dirs["nncf"][0], which, threads=1)
    seven = runner(eval_batch[:7])
    assert seven.shape == (7, 10) and seven.dtype == np.float32
    singles = np.concatenate([runner(eval_batch[i : i + 1]) for i in range(7)])
    np.testing.assert_allclose(seven, singles, atol=1e-4)


def test_a_fixed_batch_onnx_becomes_a_dynamic_batch_ir(quantized_workspace, tmp_path):
    model = onnx.load(str(quantized_workspace / "model.fp32.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    onnx.save(model, str(tmp_path / "fixed.onnx"))
    notes = []
    assert not _convert(tmp_path / "fixed.onnx", notes).inputs[0].get_partial_shape()[0].is_static
    assert notes == []


def test_bad_source_and_missing_artifacts_are_clear_errors(quantized_workspace, ov_dirs, tmp_path):
    with pytest.raises(EdgekitError, match="unknown openvino_source 'tflite'"):
        compile_target("openvino", quantized_workspace, tmp_path / "bad", openvino_source="tflite")
    with pytest.raises(EdgekitError, match="no 'engine' artifact"):
        OpenVINOTarget().runner(ov_dirs["nncf"][0], "engine")
    with pytest.raises(EdgekitError, match="is missing"):
        OpenVINOTarget().runner(tmp_path, "int8")


def test_a_graph_that_bakes_the_batch_in_keeps_it_and_the_runner_pads(tmp_path):
    # x (4, 1, 28, 28) -> Reshape to the constant [4, 784]: OpenVINO accepts a dynamic input batch, but only the
    # output shows that batch 4 is still baked in.
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4, 1, 28, 28])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4, 784])
    shape = onnx.numpy_helper.from_array(np.array([4, 784], np.int64), "shape")
    graph = onnx.helper.make_graph([onnx.helper.make_node("Reshape", ["x", "shape"], ["y"])], "g", [x], [y], [shape])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    notes = []
    model = _convert(tmp_path / "m.onnx", notes)
    assert model.inputs[0].get_partial_shape()[0].get_length() == 4
    assert notes and "fixes the batch size at 4" in notes[0]
    ov.save_model(model, tmp_path / "model.fp32.xml", compress_to_fp16=False)
    images = np.random.default_rng(0).standard_normal((7, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(OpenVINOTarget().runner(tmp_path, "fp32")(images), images.reshape(7, 784))


def test_an_image_reading_layer_that_clips_gets_headroom_where_it_needs_it(tmp_path):
    """The layer that reads an image sees u8 codes over the whole range, where 16-bit pair sums clip first (NNCF
    answers with 7-bit weights for the whole first layer, OverflowFix.FIRST_LAYER). The target widens only the
    channels whose pairs pass 16 bits: here a 3-channel stem whose channel 0 has large same-sign weights on two
    inputs and channel 1 small ones; only channel 0 is widened, and the built QDQ model no longer clips."""
    from onnx import TensorProto, helper, numpy_helper

    from edgekit.calibration import Calibration
    from edgekit.targets import openvino_overflow as overflow
    from edgekit.targets.openvino_qdq import build_openvino_qdq

    weight = np.zeros((2, 3, 3, 3), np.float32)
    weight[0] = 1.0  # every pair: 2 x 255 x 127 when the image is bright
    weight[1, 0] = np.linspace(-1, 1, 9).reshape(3, 3)  # pairs with a zero channel: at most 255 x 127
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["output"], name="stem", pads=[1] * 4)], "stem",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, 8, 8])],
        [numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "fp32.onnx"))
    cal = Calibration("minmax", 2, 0.0, {"input": (0.0, 1.0), "output": (-30.0, 30.0)}, {})
    images = [np.random.default_rng(i).uniform(0.9, 1.0, (1, 3, 8, 8)).astype(np.float32) for i in range(2)]
    build_openvino_qdq(tmp_path / "fp32.onnx", tmp_path / "plain.onnx", cal, [])
    widen = overflow.weight_headroom(tmp_path / "plain.onnx", images)
    assert list(widen) == ["stem"] and widen["stem"][0] > 1.5 and widen["stem"][1] == 1.0
    build_openvino_qdq(tmp_path / "fp32.onnx", tmp_path / "widened.onnx", cal, [], widen)
    assert overflow.weight_headroom(tmp_path / "widened.onnx", images) == {}
    built = onnx.load(str(tmp_path / "widened.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in built.graph.initializer}
    w = next(v for k, v in inits.items() if v.dtype == np.int8 and v.ndim == 4).astype(int)
    assert np.abs(w[1]).max() == 127 and np.abs(w[0]).max() < 127 / 1.5


@pytest.mark.parametrize(("options", "device", "machine", "flags", "expected"), [
    ({}, "CPU", "x86_64", {"avx2", "avx512f"}, "all"),  # Skylake-SP, Zen 3: 16-bit pair sums
    ({}, "CPU", "x86_64", {"avx2", "avx_vnni"}, "vnni"),  # Alder Lake
    ({}, "AUTO", "x86_64", {"avx512f", "avx512_vnni"}, "vnni"),  # Ice Lake, Zen 4
    ({}, "CPU", "aarch64", {"asimd"}, "vnni"),  # ARM: no VPMADDUBSW
    ({}, "GPU", "x86_64", {"avx2"}, "vnni"),  # the GPU sums in 32 bits whatever the host
    ({"openvino_cpus": "all"}, "CPU", "x86_64", {"amx_int8"}, "all"),  # the option wins
    ({"openvino_cpus": "vnni"}, "CPU", "x86_64", {"avx2"}, "vnni"),
])
def test_the_cpus_the_ir_is_exact_on_default_to_what_the_compile_host_needs(options, device, machine, flags,
                                                                            expected):
    cpus, why = openvino_cpus(options, device, machine, flags)
    assert cpus == expected
    assert why == "--openvino-cpus" if options else why.startswith("default")


def test_an_unknown_cpu_choice_is_bad_input(quantized_workspace, tmp_path):
    with pytest.raises(EdgekitError, match="unknown openvino_cpus 'avx2'"):
        compile_target("openvino", quantized_workspace, tmp_path / "bad", openvino_cpus="avx2")
