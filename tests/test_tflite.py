"""The arm target's .tflite pair (optional `edgekit[tflite]` extra): a full-integer int8 .tflite in the TFLite scheme
that agrees with its fp32 .tflite, run in LiteRT + XNNPACK, and timed by bench beside the ONNX pair.
Without the extra, compile says what to install and writes the ONNX pair only."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from edgekit import metrics
from edgekit.data import Preprocess, open_images
from edgekit.targets.tflite_export import FILES, INSTALL, missing
from tests.target_helpers import compile_target
from tests.test_remote import NEEDS_OPENSSH, no_user_ssh_config, sshd  # noqa: F401 - fixtures used below

WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _require_extra():
    for module in ("litert_torch", "ai_edge_quantizer", "ai_edge_litert.interpreter"):
        pytest.importorskip(module, reason=f"the edgekit[tflite] extra is not installed ({INSTALL})")


@pytest.mark.skipif(missing() is None, reason="the edgekit[tflite] extra is installed")
def test_without_the_extra_compile_says_what_to_install(tmp_path, quantized_workspace):
    result = compile_target("arm", quantized_workspace, tmp_path / "arm")
    assert result.files == {"int8": "model.int8.onnx", "fp32": "model.fp32.onnx"}
    assert result.details["tflite"] is None
    assert any("no .tflite written" in n and INSTALL in n for n in result.notes)
    assert not list((tmp_path / "arm").glob("*.tflite"))


@pytest.fixture(scope="module")
def arm_ws(tmp_path_factory, quantized_workspace):
    """A copy of the quantized workspace compiled for arm by the CLI, with the .tflite pair."""
    _require_extra()
    from click.testing import CliRunner

    from edgekit.cli import main

    ws = tmp_path_factory.mktemp("tflite") / "ws"
    shutil.copytree(quantized_workspace, ws)
    result = CliRunner().invoke(main, ["compile", "--target", "arm", "--workdir", str(ws)])
    assert result.exit_code == 0, result.output
    return ws


@pytest.fixture(scope="module")
def compile_json(arm_ws) -> dict:
    return json.loads((arm_ws / "targets" / "arm" / "compile.json").read_text())


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def test_compile_writes_both_tflite_files(arm_ws, compile_json):
    folder = arm_ws / "targets" / "arm"
    assert compile_json["files"] == {"int8": "model.int8.onnx", "fp32": "model.fp32.onnx", **FILES}
    for name in FILES.values():
        assert (folder / name).read_bytes()[4:8] == b"TFL3", f"{name} is a TFLite flatbuffer"
    tflite = compile_json["details"]["tflite"]
    assert tflite["validation"]["conversion"]["ok"]
    assert tflite["validation"]["agreement"] >= 0.95
    # Activation ranges come from edgekit's calibration.json wherever model.fp32.onnx has the tensor.
    assert tflite["ranges"]["from_calibration_json"] >= 0.8 * (
        tflite["ranges"]["from_calibration_json"] + tflite["ranges"]["from_litert_calibration"])
    assert not any("no .tflite written" in n for n in compile_json["notes"])


def test_compile_checks_the_tflite_pair_on_the_eval_images(arm_ws, compile_json):
    """Beside the ONNX pair's check, the .tflite pair's, in LiteRT, on the same eval images."""
    v = compile_json["validation"]["variants"]["tflite"]
    manifest = json.loads((arm_ws / "manifest.json").read_text())
    pre = Preprocess.from_dict(manifest["preprocess"])
    images = open_images(manifest["eval_data"]["path"], "eval")
    from edgekit.targets import get_target

    arm = get_target("arm")
    int8, fp32 = (arm.runner(arm_ws / "targets/arm", role, 1) for role in ("tflite_int8", "tflite_fp32"))
    x = np.concatenate(list(images.batches(pre, 64)))
    assert v["images"] == len(images) and "LiteRT" in v["runtime"]
    assert v["agreement"] == pytest.approx(metrics.agreement(int8(x), fp32(x)))


def test_the_budget_holds_the_tflite_too(tmp_path, arm_ws):
    """--min-agreement on arm is measured on the artifact furthest from its fp32 reference, the .tflite included:
    each fallback step's disagreement is the larger of the two pairs'."""
    from click.testing import CliRunner

    from edgekit.cli import main

    ws = tmp_path / "ws"
    shutil.copytree(arm_ws, ws)
    result = CliRunner().invoke(main, ["compile", "--target", "arm", "--workdir", str(ws), "--min-agreement", "100"])
    assert result.exit_code == 0, result.output
    info = json.loads((ws / "targets/arm/compile.json").read_text())
    v = info["validation"]
    worst = max(100 * (1 - v["agreement"]), 100 * (1 - v["variants"]["tflite"]["agreement"]))
    assert info["details"]["fallback"]["steps"][-1]["drop_points"] == pytest.approx(worst, abs=1e-3)
    assert info["details"]["fallback"]["measure"] == "agreement"


def test_int8_tflite_is_full_integer_in_the_tflite_scheme(arm_ws):
    it = _interpreter(arm_ws / "targets" / "arm" / FILES["tflite_int8"])
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    ops = it._get_ops_details()
    weighted = [o for o in ops if o["op_name"] in WEIGHT_OPS]
    # TinyCNN's 3 convs (the 1-channel stem becomes a DEPTHWISE_CONV_2D with multiplier 8) and its Linear.
    assert sum(o["op_name"] != "FULLY_CONNECTED" for o in weighted) == 3
    assert sum(o["op_name"] == "FULLY_CONNECTED" for o in weighted) == 1
    for op in weighted:
        x, w, b = (tensors[int(i)] for i in op["inputs"][:3])
        out = tensors[int(op["outputs"][0])]
        wq, bq = w["quantization_parameters"], b["quantization_parameters"]
        assert w["dtype"] == np.int8 and it.get_tensor(w["index"]).min() >= -127
        channels = w["shape"][3] if op["op_name"] == "DEPTHWISE_CONV_2D" else w["shape"][0]
        assert wq["scales"].size == channels, "weights per output channel"
        assert not wq["zero_points"].any(), "weights symmetric"
        assert b["dtype"] == np.int32 and not bq["zero_points"].any()
        np.testing.assert_allclose(bq["scales"], x["quantization_parameters"]["scales"] * wq["scales"], rtol=1e-5)
        for act in (x, out):
            assert act["dtype"] == np.int8 and act["quantization_parameters"]["scales"].size == 1, "int8 per-tensor"
    assert not [d["name"] for d in tensors.values() if d["dtype"] == np.float32], "no float tensor left"
    assert it.get_input_details()[0]["dtype"] == np.int8 and it.get_output_details()[0]["dtype"] == np.int8


def test_tflite_runners_agree_and_run_on_xnnpack(arm_ws):
    from edgekit.ort_runner import OrtModel
    from edgekit.targets import get_target

    manifest = json.loads((arm_ws / "manifest.json").read_text())
    pre = Preprocess.from_dict(manifest["preprocess"])
    x = np.concatenate(list(open_images(manifest["eval_data"]["path"], "eval").batches(pre, 100)))
    arm = get_target("arm")
    int8, fp32 = (arm.runner(arm_ws / "targets" / "arm", w, 2) for w in ("tflite_int8", "tflite_fp32"))
    a, b = int8(x), fp32(x)
    assert a.shape == b.shape == (len(x), 10)
    assert metrics.agreement(a, b) >= 0.95
    np.testing.assert_allclose(b, OrtModel(arm_ws / "model.fp32.onnx")(x), atol=1e-3)  # the conversion is exact
    assert int8.delegated_ops >= 1 and int8.builtin_ops == [], "every op runs in XNNPACK"
    assert "XNNPACK" in int8.providers[0] and not int8.emulated


def test_bench_times_the_tflite_pair_beside_the_onnx_pair(arm_ws):
    from edgekit.benchmarking import bench

    result = bench("arm", workdir=arm_ws, threads=2, runs=10, warmup=2, warmup_seconds=0.0, log=lambda *_: None)["arm"]
    tfl = result["variants"]["tflite"]
    assert tfl["runtime"].startswith("LiteRT Interpreter + XNNPACK")
    assert tfl["accuracy"]["agreement"] >= 0.95 and tfl["latency_ms"]["n"] == 10
    assert tfl["int8_over_reference_p50"] == pytest.approx(tfl["latency_ms"]["p50"] / tfl["reference_latency_ms"]["p50"])
    on_arm = result["environment"]["machine"] in ("aarch64", "arm64")
    assert tfl["host_proxy"] is (not on_arm) and result["host_proxy"] is (not on_arm)
    if not on_arm:
        assert "host proxy: timed on this" in tfl["latency_note"] and "not on the target device" in tfl["latency_note"]
    saved = json.loads((arm_ws / "targets" / "arm" / "bench.json").read_text())
    assert saved["variants"]["tflite"]["latency_ms"]["p50"] == tfl["latency_ms"]["p50"]


def test_hard_swish_stays_float_so_xnnpack_takes_the_whole_int8_graph(tmp_path, mnv3_workspace):
    """XNNPACK has no int8 HARD_SWISH: quantized, each one fell back to LiteRT's builtin kernels and split the
    graph. Kept in float, the whole MobileNetV3 int8 .tflite runs as one XNNPACK partition."""
    _require_extra()
    from edgekit.board.tflite_board import TfliteModel

    compile_target("arm", mnv3_workspace, tmp_path)
    int8 = TfliteModel(tmp_path / FILES["tflite_int8"], 1)
    assert int8.delegated_ops == 1 and int8.builtin_ops == []
    ops = int8.interpreter._get_ops_details()  # noqa: SLF001
    tensors = {t["index"]: t for t in int8.interpreter.get_tensor_details()}
    hard_swish = [o for o in ops if o["op_name"] == "HARD_SWISH"]
    assert hard_swish and all(tensors[int(o["inputs"][0])]["dtype"] == np.float32 for o in hard_swish)
    assert [o for o in ops if o["op_name"] == "CONV_2D"] and all(
        tensors[int(o["inputs"][1])]["dtype"] == np.int8 for o in ops if o["op_name"] == "CONV_2D")


@NEEDS_OPENSSH
def test_remote_bench_runs_the_tflite_pair_on_the_board(arm_ws, sshd):
    """bench --remote copies the .tflite pair and edgekit's board package to the board and times them there."""
    from edgekit.benchmarking import bench

    fast = {"threads": 1, "runs": 10, "warmup": 2, "warmup_seconds": 0.0, "log": lambda *_: None}
    local = bench("arm", workdir=arm_ws, **fast)["arm"]["variants"]["tflite"]
    remote = bench("arm", workdir=arm_ws, remote=sshd.host, ssh_key=sshd.key, remote_python=sys.executable,
                   **fast)["arm"]["variants"]["tflite"]
    assert remote["remote"] == sshd.host and "LiteRT Interpreter + XNNPACK" in remote["providers"]["int8"][0]
    assert remote["accuracy"] == local["accuracy"], "the board computed the same logits"
    assert remote["latency_ms"]["n"] == 10 and sshd.host in remote["latency_note"]


def test_layers_kept_in_float_stay_float_in_the_tflite(tmp_path, arm_ws):
    import onnx

    from edgekit.targets import CompileContext, get_target

    manifest = json.loads((arm_ws / "manifest.json").read_text())
    convs = [n.name for n in onnx.load(str(arm_ws / "model.fp32.onnx")).graph.node if n.op_type == "Conv"]
    ctx = CompileContext(arm_ws, tmp_path, manifest, Preprocess.from_dict(manifest["preprocess"]),
                         open_images(manifest["calibration_data"]["path"], "calibration"), {}, lambda *_: None,
                         [convs[1]])
    result = get_target("arm").compile(ctx)  # the conversion is cached from arm_ws's compile: quantization only
    assert result.details["tflite"]["float_layers"] == {"kept_float": [convs[1]], "not_mapped": []}
    it = _interpreter(tmp_path / FILES["tflite_int8"])
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    weights = [tensors[int(o["inputs"][1])]["dtype"] for o in it._get_ops_details() if o["op_name"] in WEIGHT_OPS]
    assert weights.count(np.float32) == 1 and weights.count(np.int8) == 3, "only that conv is float"
    assert result.details["tflite"]["validation"]["agreement"] >= 0.95


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_shift_matches_a_direct_convolution(multiplier):
    """output_shift's channel bookkeeping against the convolution itself: a constant input image whose channels
    hold their means, convolved (valid padding) with the weight error dW, gives E[dW * x] per output channel."""
    from edgekit.targets.tflite_bias import output_shift

    rng = np.random.default_rng(0)
    cin, k = 3, 3
    mean = rng.normal(size=cin)
    image = np.broadcast_to(mean, (k, k, cin))  # NHWC, one output position
    dw_depthwise = rng.normal(size=(1, k, k, cin * multiplier))
    direct = [(dw_depthwise[0, :, :, c] * image[:, :, c // multiplier]).sum() for c in range(cin * multiplier)]
    np.testing.assert_allclose(output_shift("DEPTHWISE_CONV_2D", dw_depthwise, mean), direct)
    dw_conv = rng.normal(size=(5, k, k, cin))  # (O, kH, kW, I)
    direct = [(dw_conv[o] * image).sum() for o in range(5)]
    np.testing.assert_allclose(output_shift("CONV_2D", dw_conv, mean), direct)


def test_tflite_bias_correction_matches_the_onnx_models(tmp_path, arm_ws, compile_json, monkeypatch):
    """The .tflite's convolution biases move by the same amounts, channel by channel, as the portable ONNX model's
    (bias_correction.py): two implementations, two graph formats (NHWC vs NCHW weights, a 1-channel stem that the
    converter writes as a depthwise conv), one correction."""
    import onnx
    from ai_edge_litert.tools import flatbuffer_utils
    from onnx import numpy_helper

    import edgekit.targets.tflite_bias as tflite_bias

    assert compile_json["details"]["tflite"]["bias_corrected_convs"] > 0
    monkeypatch.setattr(tflite_bias, "correct_tflite_biases", lambda *a, **k: 0)
    uncorrected = tmp_path / "uncorrected"
    compile_target("arm", arm_ws, uncorrected)

    def tflite_biases(path):
        model = flatbuffer_utils.read_model(str(path))
        graph = model.subgraphs[0]
        out = []
        for op in graph.operators:
            if flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) in tflite_bias.WEIGHTED:
                bias = graph.tensors[op.inputs[2]]
                out.append(tflite_bias._array(model, bias, np.int32) * np.asarray(bias.quantization.scale))
        return out

    moved_tflite = np.concatenate([a - b for a, b in zip(tflite_biases(arm_ws / "targets/arm" / FILES["tflite_int8"]),
                                                          tflite_biases(uncorrected / FILES["tflite_int8"]))])
    fp32, int8 = (onnx.load(str(arm_ws / f)) for f in ("model.fp32.onnx", "model.int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for m in (fp32, int8) for i in m.graph.initializer}
    producer = {o: n for n in int8.graph.node for o in n.output}
    float_bias = {n.name: inits[n.input[2]] for n in fp32.graph.node if n.op_type == "Conv"}
    moved_onnx = []
    for node in (n for n in int8.graph.node if n.op_type == "Conv"):
        dq = producer[node.input[2]]
        moved_onnx.append(inits[dq.input[0]] * inits[dq.input[1]] - float_bias[node.name])
    moved_onnx = np.concatenate(moved_onnx)
    assert moved_tflite.shape == moved_onnx.shape and np.abs(moved_onnx).max() > 0
    assert np.corrcoef(moved_tflite, moved_onnx)[0, 1] > 0.95
    assert np.linalg.norm(moved_tflite - moved_onnx) < 0.3 * np.linalg.norm(moved_onnx)


# --- A .tflite for every source format: sources edgekit cannot trace again go through model.fp32.onnx ------------


@pytest.fixture(scope="module")
def torchscript_ws(tmp_path_factory, trained_tiny, calib_small, eval_npz_small):
    """The tiny model saved as TorchScript (what torch.jit users deploy), quantized, compiled for arm by the CLI."""
    _require_extra()
    import torch
    from click.testing import CliRunner

    from edgekit.cli import main
    from edgekit.inputspec import ModelInputs
    from edgekit.quantization import quantize
    from tests.conftest import save_model

    root = tmp_path_factory.mktemp("torchscript")
    path = save_model(trained_tiny, "torchscript", root / "tiny.ts", torch.zeros(2, 1, 28, 28))
    quantize(path, calib_small, eval=eval_npz_small, workdir=root / "ws", inputs=ModelInputs(mean="0.286", std="0.353"),
             method="minmax", log=lambda *_: None)
    result = CliRunner().invoke(main, ["compile", "--target", "arm", "--workdir", str(root / "ws")])
    assert result.exit_code == 0, result.output
    return root / "ws"


def test_a_torchscript_source_gets_the_tflite_pair_validated_and_benched(torchscript_ws):
    from click.testing import CliRunner

    from edgekit.cli import main

    saved = json.loads((torchscript_ws / "targets" / "arm" / "compile.json").read_text())
    assert not any("no .tflite written" in n for n in saved["notes"]), saved["notes"]
    for name in FILES.values():
        assert (torchscript_ws / "targets" / "arm" / name).read_bytes()[4:8] == b"TFL3"
    tflite = saved["details"]["tflite"]
    assert tflite["converted_from"]["graph"] == "model.fp32.onnx"
    assert "TorchScript" in tflite["converted_from"]["not_used"]["source model"]
    conversion = tflite["validation"]["conversion"]
    assert conversion["ok"] and conversion["max_abs_diff_vs_onnx_fp32"] < 1e-4 and conversion["agreement_vs_onnx_fp32"] == 1.0
    assert tflite["validation"]["agreement"] >= 0.95
    assert tflite["ranges"]["from_calibration_json"] >= 0.8 * (
        tflite["ranges"]["from_calibration_json"] + tflite["ranges"]["from_litert_calibration"])
    assert tflite["bias_corrected_convs"] > 0

    result = CliRunner().invoke(main, ["bench", "--target", "arm", "--workdir", str(torchscript_ws), "--threads", "2",
                                       "--runs", "10", "--warmup", "2", "--warmup-seconds", "0"])
    assert result.exit_code == 0, result.output
    tfl = json.loads((torchscript_ws / "targets" / "arm" / "bench.json").read_text())["variants"]["tflite"]
    assert tfl["runtime"].startswith("LiteRT Interpreter + XNNPACK") and tfl["latency_ms"]["n"] == 10
    assert tfl["accuracy"]["agreement"] >= 0.95


def test_a_trusted_pickle_source_gets_the_tflite_pair_too(tmp_path, trained_tiny, calib_small, eval_npz_small):
    """Trusting a pickle is a decision made at quantize, on the command line; compile never unpickles. The rebuild
    of model.fp32.onnx reads the workspace only."""
    _require_extra()
    import torch

    from edgekit.inputspec import ModelInputs
    from edgekit.quantization import quantize
    from tests.conftest import save_model

    path = save_model(trained_tiny, "pickled_module", tmp_path / "tiny.pth", torch.zeros(2, 1, 28, 28))
    quantize(path, calib_small, eval=eval_npz_small, workdir=tmp_path / "ws", method="minmax", log=lambda *_: None,
             inputs=ModelInputs(trust_pickle=True, mean="0.286", std="0.353"))
    tflite = compile_target("arm", tmp_path / "ws", tmp_path / "arm").details["tflite"]
    assert tflite is not None and tflite["converted_from"]["graph"] == "model.fp32.onnx"
    assert "pickled" in tflite["converted_from"]["not_used"]["source model"]
    assert tflite["validation"]["conversion"]["ok"] and tflite["validation"]["agreement"] >= 0.95


def test_the_onnx_rebuild_matches_onnx_runtime_on_the_ops_classifiers_use(tmp_path):
    """Both of edgekit's exporters (TorchScript's: shape arithmetic for the flatten, folded at trace time; dynamo's),
    with asymmetric padding, both pools, hard-swish split in two, a SE gate, concat and softmax."""
    _require_extra()
    import torch
    from torch import nn

    from edgekit.export import export_onnx
    from edgekit.model import LoadedModel
    from edgekit.ort_runner import OrtModel
    from edgekit.targets.onnx_torch import rebuild

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = nn.Conv2d(3, 8, 3, stride=2), nn.Conv2d(3, 8, 1)
            self.fc = nn.Linear(16 * 4 * 4, 10)

        def forward(self, x):
            a = nn.functional.hardswish(self.a(nn.functional.pad(x, (0, 2, 0, 2))))  # 9 -> 11 -> 5
            a = nn.functional.max_pool2d(a, 2, ceil_mode=True)  # 3
            a = a * nn.functional.hardsigmoid(a.mean((2, 3), keepdim=True))
            b = nn.functional.avg_pool2d(nn.functional.relu6(self.b(x)), 3, 3, padding=1)  # 3
            y = nn.functional.pad(torch.cat([a, b], 1), (0, 1, 0, 1))
            return torch.softmax(self.fc(y.view(y.size(0), -1)), 1)

    x = np.random.default_rng(0).normal(size=(3, 3, 9, 9)).astype(np.float32)
    for fmt in ("torchscript", "nn_module"):
        module = torch.jit.trace(Net().eval(), torch.from_numpy(x)) if fmt == "torchscript" else Net().eval()
        onnx_path = tmp_path / f"{fmt}.onnx"
        export_onnx(LoadedModel(module, None, fmt, tmp_path, "", None, 3), x, onnx_path)
        rebuilt = rebuild(onnx_path)
        assert rebuilt.hardswish, f"{fmt}: Mul(x, HardSigmoid(x)) becomes one hard-swish"
        with torch.no_grad():
            got = rebuilt(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, OrtModel(onnx_path)(x), atol=1e-5, err_msg=fmt)


def test_an_onnx_graph_with_relu6_rebuilds_into_a_tflite(tmp_path):
    """Clip's min/max are scalar initializers in the ONNX graph (EfficientNet-Lite's ReLU6). The rebuild must read
    them as numbers while litert-torch traces, or a graph accuracy recovery adjusted (whose only route is the
    rebuild) gets no .tflite: "RuntimeError: .numpy() is not supported for tensor subclasses"."""
    _require_extra()
    import torch
    from torch import nn

    from edgekit.board.tflite_board import TfliteModel
    from edgekit.export import export_onnx
    from edgekit.model import LoadedModel
    from edgekit.ort_runner import OrtModel
    from edgekit.targets.onnx_torch import rebuild
    from edgekit.targets.tflite_export import _convert

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8, 4)

        def forward(self, x):
            y = torch.clamp(nn.functional.relu6(self.conv(x)) - 1.0, -0.5, 4.0)
            return self.fc(y.mean((2, 3)))

    x = np.random.default_rng(0).normal(size=(1, 3, 8, 8)).astype(np.float32) * 3
    onnx_path = tmp_path / "net.onnx"
    export_onnx(LoadedModel(Net().eval(), None, "nn_module", tmp_path, "", None, 3), x, onnx_path)
    import onnx

    clips = [n for n in onnx.load(str(onnx_path)).graph.node if n.op_type == "Clip"]
    assert clips and all(len(n.input) == 3 for n in clips), "the bounds are graph inputs, as in EfficientNet-Lite"
    _convert(rebuild(onnx_path), x, tmp_path / "net.tflite")
    np.testing.assert_allclose(TfliteModel(tmp_path / "net.tflite")(x), OrtModel(onnx_path)(x), atol=1e-5)


def test_a_graph_no_route_converts_is_reported_with_the_op_that_stops_it(tmp_path):
    """TorchScript cannot be traced, and its ONNX graph holds an op the rebuild does not map: both reasons, and
    the op with its node, end up in the note compile.json keeps."""
    _require_extra()
    import types

    import onnx
    from onnx import TensorProto, helper

    from edgekit.targets.tflite_export import TfliteSkipped, convert

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["r"], name="relu"),
         helper.make_node("Resize", ["r", "", "scales"], ["logits"], name="upsample", mode="nearest")], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
        [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "m.onnx"))
    ctx = types.SimpleNamespace(workspace=tmp_path, fp32_onnx=tmp_path / "m.onnx",
                                manifest={"source": {"format": "torchscript", "path": str(tmp_path / "m.ts")}})
    with pytest.raises(TfliteSkipped) as e:
        convert(ctx, np.zeros((1, 1, 4, 4), np.float32), tmp_path / "m.tflite")
    assert "TorchScript" in str(e.value) and "ONNX op Resize (node upsample)" in str(e.value)
    assert not (tmp_path / "m.tflite").exists()


@pytest.mark.parametrize("op, named", [("erfinv", "aten.erfinv"), ("sort", "STABLEHLO_SORT")])
def test_a_conversion_failure_names_the_op(tmp_path, op, named):
    """An op litert-torch has no lowering for (named by its aten op) and one it writes but LiteRT has no kernel for
    (named by its .tflite op)."""
    _require_extra()
    import torch

    from edgekit.targets.tflite_export import _convert, _loads, conversion_failure

    class Net(torch.nn.Module):
        def forward(self, x):
            return torch.erfinv(x.clamp(-0.5, 0.5)) if op == "erfinv" else torch.sort(x, 1)[0]

    with pytest.raises(Exception) as e:  # noqa: PT011 - the converters raise many types
        _convert(Net().eval(), np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32), tmp_path / "m.tflite")
        _loads(tmp_path / "m.tflite")
    assert named in conversion_failure(e.value)


def test_a_bound_call_runs_the_same_inference_as_the_full_call(arm_ws):
    """bench times the .tflite's bound call: the input quantized and written once, then the interpreter's invoke
    alone (as LiteRT's benchmark_model times it). It must leave the outputs runner(x) returns."""
    from edgekit.board.tflite_board import _dequantize
    from edgekit.targets import get_target

    manifest = json.loads((arm_ws / "manifest.json").read_text())
    pre = Preprocess.from_dict(manifest["preprocess"])
    x = np.ascontiguousarray(next(open_images(manifest["eval_data"]["path"], "eval").batches(pre, 3)))
    for role in ("tflite_int8", "tflite_fp32"):
        runner = get_target("arm").runner(arm_ws / "targets" / "arm", role, 1)
        expected = runner(x[1:2])
        runner(x[:1])  # another image in the input first: the bound call must write its own
        call = runner.bind(x[1:2])
        call()
        out = runner._out  # noqa: SLF001
        np.testing.assert_array_equal(_dequantize(runner.interpreter.get_tensor(out["index"]), out).reshape(1, -1), expected)
        many = runner.bind(x)  # a batch the .tflite's fixed batch 1 cannot take at once: the full call
        assert many() is not None
