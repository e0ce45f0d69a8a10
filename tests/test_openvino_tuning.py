"""The openvino target's graph work on a hard-swish / squeeze-excite network (a MobileNetV3 student): activations
rewritten into forms the plugin fuses, Q/DQ only where OpenVINO runs int8, static-shape compilations per batch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgekit.data import Preprocess, open_images
from edgekit.targets.openvino_graph import fuse_hard_activations, tuned_for_openvino
from edgekit.targets.openvino_qdq import activation_muls, build_openvino_qdq
from tests.target_helpers import compile_target, eval_agreement

ov = pytest.importorskip("openvino")


def count(model: onnx.ModelProto, op_type: str) -> int:
    return sum(n.op_type == op_type for n in model.graph.node)


def ref_kernels(path) -> list[str]:
    """Layers the CPU plugin runs with a reference (non-JIT) kernel, read off the compiled model."""
    core = ov.Core()
    model = core.read_model(path)
    model.reshape([1, 1, 28, 28])
    runtime = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).get_runtime_model()
    return [op.get_rt_info()["layerType"].astype(str) for op in runtime.get_ops()
            if op.get_rt_info()["primitiveType"].astype(str).startswith("ref")]


def test_hard_activations_become_fusable_forms_with_the_same_outputs(mnv3_workspace, tmp_path):
    source = mnv3_workspace / "model.fp32.onnx"
    before = onnx.load(str(source))
    hard_sigmoids = count(before, "HardSigmoid")
    counts = tuned_for_openvino(source, tmp_path / "tuned.onnx")
    after = onnx.load(str(tmp_path / "tuned.onnx"))
    onnx.checker.check_model(after)

    # torch writes each hard-swish as HardSigmoid * x; the SE gates are plain HardSigmoids.
    assert counts["hard_swish"] == len(activation_muls(before)) > 0
    assert counts["hard_sigmoid"] == hard_sigmoids - counts["hard_swish"] > 0
    assert count(after, "HardSigmoid") == 0 and count(after, "HardSwish") == counts["hard_swish"]
    assert count(after, "Clip") == count(before, "Clip") + counts["hard_sigmoid"]

    x = np.random.default_rng(0).normal(size=(4, 1, 28, 28)).astype(np.float32)
    outputs = [ort.InferenceSession(str(p)).run(None, {"input": x})[0] for p in (source, tmp_path / "tuned.onnx")]
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)

    # Why: OpenVINO runs HardSigmoid with a reference kernel; after the rewrite nothing in the graph does.
    assert "Math" in ref_kernels(source)  # the plugin's name for its HardSigmoid layer
    assert ref_kernels(tmp_path / "tuned.onnx") == []


def test_the_rewrite_leaves_other_hard_sigmoids_and_old_opsets_alone():
    from onnx import helper, TensorProto

    def graph(alpha: float, opset: int) -> onnx.ModelProto:
        nodes = [helper.make_node("HardSigmoid", ["x"], ["g"], alpha=alpha, beta=0.5, name="hs"),
                 helper.make_node("Mul", ["x", "g"], ["y"], name="mul")]
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "y")]
        return helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:]),
                                 opset_imports=[helper.make_opsetid("", opset)])

    # x * HardSigmoid(x) with another slope is not hard-swish: only the gate is rewritten.
    assert fuse_hard_activations(graph(0.2, 17)) == {"hard_swish": 0, "hard_sigmoid": 1}
    assert fuse_hard_activations(graph(1 / 6, 17)) == {"hard_swish": 1, "hard_sigmoid": 0}
    # HardSwish needs opset 14, Clip with input bounds opset 11.
    assert fuse_hard_activations(graph(1 / 6, 13)) == {"hard_swish": 0, "hard_sigmoid": 1}
    assert fuse_hard_activations(graph(1 / 6, 10)) == {"hard_swish": 0, "hard_sigmoid": 0}


def test_openvino_qdq_quantizes_only_what_an_int8_layer_reads(mnv3_workspace, tmp_path):
    from edgekit.calibration import Calibration

    source = mnv3_workspace / "model.fp32.onnx"
    corrected = build_openvino_qdq(source, tmp_path / "ov.onnx", Calibration.load(mnv3_workspace / "calibration.json"),
                                   [])
    model = onnx.load(str(tmp_path / "ov.onnx"))
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    assert corrected > 0  # the same bias correction as the portable model
    # No Q/DQ inside an activation: HardSigmoid and the x * HardSigmoid(x) Muls read float tensors.
    for node in model.graph.node:
        if node.op_type == "HardSigmoid" or node.name in activation_muls(model):
            assert all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear" for i in node.input), node.name
    # Every activation Q/DQ pair feeds a layer that reads it in int8 (never only an activation function).
    for dq in (n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in producer):
        readers = {c.op_type for c in consumers.get(dq.output[0], [])}
        assert readers - {"HardSigmoid"}, f"{dq.name} only feeds {readers}"
    # u8 activations (VNNI multiplies u8 by s8), int8 weights.
    zero_points = {n.input[2] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    inits = {i.name: i for i in model.graph.initializer}
    assert {inits[z].data_type for z in zero_points} == {onnx.TensorProto.UINT8}

    portable = onnx.load(str(mnv3_workspace / "model.int8.onnx"))
    assert count(model, "QuantizeLinear") < count(portable, "QuantizeLinear")


def test_compiled_irs_have_no_reference_kernels_and_agree(mnv3_workspace, tmp_path):
    result = compile_target("openvino", mnv3_workspace, tmp_path)
    assert result.details["activation_rewrites"]["hard_swish"] > 0
    assert set(result.precision.values()) >= {"int8"}
    assert ref_kernels(tmp_path / "model.int8.xml") == [] and ref_kernels(tmp_path / "model.fp32.xml") == []
    agreement, runner = eval_agreement("openvino", mnv3_workspace, tmp_path)
    # Built for this host's CPUs (openvino_cpus' default): weight headroom on an x86 CPU without VNNI, where it saves
    # the IR from clipping, exact weights on one with VNNI/AMX (96.00 % there, 2026-12-02; 94.67 % with the
    # headroom it does not need). A broken IR lands far below.
    assert agreement >= 0.95


def int8_weight_peaks(path) -> list[np.ndarray]:
    """Per output channel, the largest |int8 code| of each quantized Conv weight of an ONNX QDQ model."""
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return [np.abs(w.astype(int)).reshape(len(w), -1).max(axis=1)
            for w in (numpy_helper.to_array(i) for i in model.graph.initializer) if w.dtype == np.int8 and w.ndim == 4]


def test_the_ir_for_all_cpus_widens_only_what_clips_and_the_vnni_ir_keeps_the_calibrated_weights(mnv3_workspace,
                                                                                                 tmp_path, monkeypatch):
    """--openvino-cpus all: the channels whose 16-bit pair sums clip get narrower codes (headroom, recorded);
    vnni: every channel's weights span the full symmetric int8 range, as calibrated, and nothing is recorded. The
    QDQ model each converts is caught on its way to OpenVINO, since the IR holds FakeQuantize, not codes."""
    import edgekit.targets.openvino as target

    built = {}
    convert = target._convert_tuned

    def keep_qdq(path, notes, rewrites):
        if path.name == "model.int8.onnx":
            built[current] = onnx.load(str(path))
        return convert(path, notes, rewrites)

    monkeypatch.setattr(target, "_convert_tuned", keep_qdq)
    details = {}
    for current in ("all", "vnni"):
        details[current] = compile_target("openvino", mnv3_workspace, tmp_path / current,
                                          openvino_cpus=current).details
        onnx.save(built[current], str(tmp_path / f"{current}.onnx"))
    assert details["vnni"]["cpus"] == "vnni" and details["vnni"]["weight_headroom"] is None
    assert details["all"]["cpus"] == "all" and details["all"]["cpus_chosen_by"] == "--openvino-cpus"
    headroom = details["all"]["weight_headroom"]
    assert headroom and headroom["channels"] > 0  # this model clips (it cost it 4 images on VNNI, above)
    exact, widened = int8_weight_peaks(tmp_path / "vnni.onnx"), int8_weight_peaks(tmp_path / "all.onnx")
    assert all(np.all(p == 127) for p in exact)
    narrowed = sum(int((p < 127).sum()) for p in widened)
    # A channel widened by less than 127/126.5 still rounds its largest weight to 127: at most the recorded ones.
    assert 0.9 * headroom["channels"] <= narrowed <= headroom["channels"] < sum(len(p) for p in widened)


def test_runner_compiles_a_static_shape_per_batch_size(quantized_workspace, tmp_path):
    from edgekit.board.openvino_board import StaticShapes
    from edgekit.board.openvino_board import OpenVINOModel

    compile_target("openvino", quantized_workspace, tmp_path)
    runner = OpenVINOModel(tmp_path / "model.int8.xml", threads=1)
    manifest = json.loads((quantized_workspace / "manifest.json").read_text())
    images = open_images(manifest["eval_data"]["path"], "eval")
    x = next(images.batches(Preprocess.from_dict(manifest["preprocess"]), 5))

    dynamic = runner.compiled(x)[0]
    np.testing.assert_allclose(np.concatenate([runner(x[:1]), runner(x[1:])]), dynamic, rtol=1e-5, atol=1e-5)
    assert not runner.compiled.inputs[0].get_partial_shape().is_static  # the IR itself keeps any batch
    for batch in (1, 4):
        assert runner.compiled_for(batch).inputs[0].get_partial_shape().to_shape()[0] == batch
    for batch in range(2, 2 + StaticShapes.KEEP):  # past the cap, calls share the dynamic one
        runner.compiled_for(batch)
    assert len(runner.static_shapes.compiled) == StaticShapes.KEEP
    assert runner.compiled_for(99) is runner.compiled
    np.testing.assert_allclose(runner(np.concatenate([x] * 20))[:5], dynamic, rtol=1e-5, atol=1e-5)
