"""Accuracy-aware fallback (`--max-drop`) and per-layer sensitivity, on a model made quantization-sensitive on purpose.

OutlierCNN is trained briefly on real Fashion-MNIST images, then one channel of one activation is scaled up
1000x and the next conv's weights on it down 1000x: the fp32 function is unchanged, but that tensor's one
per-tensor int8 range now spans the outlier and flattens every other channel to a few codes (the outlier-channel
failure of real CNNs). Plain int8 loses tens of points; keeping the layers around that tensor in float fixes it.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgekit import recovery
from edgekit.fallback import Budget
from edgekit.cli import main
from edgekit.targets import REGISTRY, get_target
from tests.conftest import fashion_arrays, save_model, train_tiny

BUDGET = 0.5


@pytest.fixture(scope="module", autouse=True)
def float_fallback_only():
    """These tests are about keeping layers in float: without the accuracy recovery that is tried first (CLE fixes
    this model with every layer int8: tests/test_recovery.py)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recovery, "FALLBACK_METHODS", ())
        yield


class OutlierCNN(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[nn.Sequential(nn.Conv2d(1 if i == 0 else width, width, 3, padding=1), nn.ReLU())
                                     for i in range(4)])
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(2 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(self.convs(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    @torch.no_grad()
    def add_outlier_channel(self, factor: float = 1000.0) -> "OutlierCNN":
        """Function-preserving: ReLU commutes with a positive scale, so conv 1's channel 0 x factor and conv 2's
        input weights on it / factor give the same logits."""
        producer, consumer = self.convs[1][0], self.convs[2][0]
        producer.weight[0] *= factor
        producer.bias[0] *= factor
        consumer.weight[:, 0] /= factor
        return self


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("outlier")
    torch.manual_seed(0)
    model = train_tiny(OutlierCNN(), 1, 28, steps=200).add_outlier_channel()
    images, labels = fashion_arrays(600)
    np.savez(root / "eval.npz", images=images, labels=labels)
    return save_model(model, "exported_program", root / "outlier.pt2", torch.zeros(2, 1, 28, 28)), root / "eval.npz"


def quantize_args(model, calib, eval_npz, ws, *extra):
    return ("quantize", model, "--calib", calib, "--eval", eval_npz, "--workdir", ws, "--mean", "0.286",
            "--std", "0.353", "--calib-size", "32", "--json", *extra)


@pytest.fixture(scope="module")
def plain_workspace(tmp_path_factory, outlier_model, calib_small):
    model, eval_npz = outlier_model
    ws = tmp_path_factory.mktemp("plain") / "ws"
    result = invoke(*quantize_args(model, calib_small, eval_npz, ws))
    assert result.exit_code == 0, result.output
    return ws


def test_sensitivity_finds_the_outlier_layers(plain_workspace):
    report = json.loads((plain_workspace / "quantize.json").read_text())
    assert report["drop_points"] > 2, "the outlier channel must make plain int8 lose accuracy"
    assert report["fallback"] is None
    layers = json.loads((plain_workspace / "sensitivity.json").read_text())["layers"]
    assert len(layers) == 6 and {r["op_type"] for r in layers} == {"Conv", "Gemm"}
    # The tensor with the outlier is conv 1's output and conv 2's input: quantizing either alone quantizes it.
    worst = {r["node"] for r in layers[:2]}
    assert worst == {"node_conv2d_1", "node_conv2d_2"}, layers
    assert layers[0]["sqnr_db"] < 10 < layers[-1]["sqnr_db"], "the outlier layers are far noisier than the rest"
    assert report["sensitivity"]["most_sensitive"][0]["node"] == layers[0]["node"]


def test_quantize_fallback_meets_the_budget(tmp_path, outlier_model, calib_small):
    model, eval_npz = outlier_model
    ws = tmp_path / "ws"
    result = invoke(*quantize_args(model, calib_small, eval_npz, ws, "--max-drop", BUDGET))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    fb = report["fallback"]
    assert fb["met"] and fb["budget_points"] == BUDGET and fb["initial_drop_points"] > 2
    assert report["drop_points"] == fb["drop_points"] <= BUDGET
    assert 1 <= len(fb["float_layers"]) < 6, "some layers in float, not all"
    assert fb["size_bytes"] == (ws / "model.int8.onnx").stat().st_size
    assert "within --max-drop 0.5" in result.stderr
    manifest = json.loads((ws / "manifest.json").read_text())
    assert manifest["float_layers"] == fb["float_layers"]
    # The targets honour the quantize stage's float layers, and their conformance checks accept them.
    result = invoke("compile", "--target", "arm,jetson", "--workdir", ws, "--json")
    assert result.exit_code == 0, result.output
    for name, info in json.loads(result.stdout).items():
        assert info["details"]["float_layers"] == fb["float_layers"]
        assert info["details"]["conformance"]["violations"] == [], name


def test_min_agreement_is_met_on_disagreement_with_fp32(tmp_path, outlier_model, calib_small):
    """--min-agreement: the same fallback, measured as disagreement with fp32 whatever the labels say; quantize's
    float layers carry to compile, which checks the budget again on the target's own artifact."""
    model, eval_npz = outlier_model
    ws = tmp_path / "ws"
    result = invoke(*quantize_args(model, calib_small, eval_npz, ws, "--min-agreement", 100 - BUDGET))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    fb = report["fallback"]
    assert fb["measure"] == "agreement" and fb["budget_points"] == BUDGET and fb["met"]
    assert fb["initial_drop_points"] > 2 and 1 <= len(fb["float_layers"]) < 6
    # The measure is the int8 model's disagreement with fp32 on the eval images, not its top-1 drop.
    assert fb["drop_points"] == pytest.approx(100 * (1 - report["int8"]["agreement"]), abs=1e-3)  # 4 decimals
    assert report["int8"]["agreement"] >= 1 - BUDGET / 100
    assert f"within --min-agreement {100 - BUDGET:g}" in result.stderr
    manifest = json.loads((ws / "manifest.json").read_text())
    assert manifest["stages"]["quantize"]["options"]["min_agreement"] == 100 - BUDGET
    result = invoke("compile", "--target", "arm", "--workdir", ws, "--min-agreement", 100 - BUDGET, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)["arm"]
    fb = info["details"]["fallback"]
    assert fb["measure"] == "agreement"
    # The budget holds for every artifact: with the tflite extra, the .tflite too, whose int8 input and int8
    # pooling/Add keep the outlier channel's damage even with every weighted layer in float. The record says
    # whether it was met, and by which artifact it was judged.
    pairs = [info["validation"], *info["validation"].get("variants", {}).values()]
    worst = max(100 * (1 - v["agreement"]) for v in pairs)
    assert fb["drop_points"] == pytest.approx(worst, abs=1e-3) and fb["met"] == (round(worst, 4) <= BUDGET)
    assert info["validation"]["agreement"] >= 1 - BUDGET / 100


def test_search_does_not_rebuild_the_artifact_it_was_handed():
    """compile hands the search the drop of what it already built and checked: met, nothing is built again;
    missed, the search builds only with more layers in float."""
    from edgekit import fallback

    built = []

    def build(layers):
        built.append(list(layers))
        return 2.0 - len(layers)

    met = fallback.search(build, ["a", "b", "c"], Budget(1.0, "agreement"), start=["a"], start_drop=0.8)
    assert built == [] and met["met"] and met["float_layers"] == ["a"] and met["measure"] == "agreement"
    missed = fallback.search(build, ["a", "b", "c"], Budget(0.0), start=["a"], start_drop=1.0)
    assert built == [["a", "b"]] and missed["met"] and missed["float_layers"] == ["a", "b"]
    assert [s["drop_points"] for s in missed["steps"]] == [1.0, 0.0]
    # the log line names what the first build was: quantize's float layers here, not every layer in int8
    assert "(with quantize's 1 float layer(s): 1.00 pts)" in fallback.describe("openvino", missed)
    from_scratch = fallback.search(lambda layers: 2.0 - len(layers), ["a", "b"], Budget(1.0))
    assert "(int8 alone: 2.00 pts)" in fallback.describe("openvino", from_scratch)


def test_prune_keeps_only_the_layers_the_budget_needs():
    """The greedy search keeps layers in float in ranking order; a layer kept early can be unnecessary once a later
    one is float. prune tries each back in int8 (in the order given) and leaves the folder holding the final set."""
    from edgekit import fallback

    built = []

    def build(layers):  # the budget (1.0) holds exactly when "c" is float
        built.append(sorted(layers))
        return 0.5 if "c" in layers else 3.0

    result = fallback.prune(build, ["a", "b", "c"], ["c", "b", "a"], Budget(1.0), 0.5)
    assert result["float_layers"] == ["c"] and result["drop_points"] == 0.5
    assert [(s["int8_again"], s["kept"]) for s in result["steps"]] == [("c", False), ("b", True), ("a", True)]
    assert built == [["a", "b"], ["a", "c"], ["c"]], "the last try was kept: nothing built again"
    built.clear()
    result = fallback.prune(build, ["a", "c"], ["a", "c"], Budget(1.0), 0.5)
    assert result["float_layers"] == ["c"] and built == [["c"], [], ["c"]], "rebuilt after a rejected last try"


def test_both_budgets_together_hold_each_limit():
    """--min-agreement 99 --max-drop 0.5: the measure is the larger share of its limit either uses, so the search's
    one number is at most 1 exactly when both hold."""
    budget = Budget.from_options(0.5, 99)
    assert (budget.measure, budget.points, budget.flag) == ("both", 1.0, "--min-agreement 99 --max-drop 0.5")
    labels = np.zeros(500, dtype=int)
    reference = np.tile([[5.0, 0.0]], (500, 1))  # fp32: every image right

    def int8_wrong_on(n: int) -> np.ndarray:
        logits = reference.copy()
        logits[:n] = [0.0, 5.0]
        return logits

    # 4 of 500 answers changed, all 4 from right to wrong: 0.8 pts of disagreement (within 1), 0.8 of top-1 (not
    # within 0.5): one limit broken is the budget broken.
    assert budget.drop(int8_wrong_on(4), reference, labels) == pytest.approx(0.8 / 0.5)
    assert budget.drop(int8_wrong_on(2), reference, labels) == pytest.approx(0.4 / 0.5)  # both hold: below 1
    validation = {"agreement": 0.992, "top1": 0.874, "reference_top1": 0.880}  # Lite0's jetson at --min-agreement 99
    assert budget.validation_drop(validation) == pytest.approx(0.6 / 0.5)
    assert Budget.from_options(None, 99).validation_drop(validation) == pytest.approx(0.8)
    assert budget.limits() == (0.5, 99) and budget.key() != Budget.from_options(None, 99).key()


def test_both_budgets_on_the_command_line(tmp_path, outlier_model, calib_small):
    """`quantize --min-agreement 99 --max-drop 0.5`: met only with both limits held, recorded as both flags."""
    model, eval_npz = outlier_model
    result = invoke(*quantize_args(model, calib_small, eval_npz, tmp_path / "ws", "--min-agreement", 99,
                                   "--max-drop", BUDGET))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    fb = report["fallback"]
    assert fb["measure"] == "both" and fb["flag"] == f"--min-agreement 99 --max-drop {BUDGET:g}" and fb["met"]
    assert report["int8"]["agreement"] >= 0.99
    assert 100 * (report["fp32"]["top1"] - report["int8"]["top1"]) <= BUDGET + 1e-9
    assert "of the limits within --min-agreement 99 --max-drop 0.5" in result.stderr
    options = json.loads((tmp_path / "ws/manifest.json").read_text())["stages"]["quantize"]["options"]
    assert (options["min_agreement"], options["max_drop"]) == (99, BUDGET)


@pytest.mark.parametrize("args,needle", [
    (["--max-drop", "-1", "--min-agreement", "99"], "--max-drop must be 0 or more points"),
    (["--min-agreement", "0"], "--min-agreement is a percentage above 0 and at most 100"),
    (["--min-agreement", "100.5"], "--min-agreement is a percentage above 0 and at most 100"),
])
def test_budget_bad_input(args, needle, tmp_path, outlier_model, calib_small):
    model, eval_npz = outlier_model
    result = invoke(*quantize_args(model, calib_small, eval_npz, tmp_path / "ws", *args))
    assert result.exit_code == 2 and needle in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "ws").exists(), "refused before any work"
    compiled = invoke("compile", "--workdir", tmp_path / "ws", *args)
    assert compiled.exit_code == 2 and needle in compiled.stderr


@pytest.fixture(scope="module")
def compiled_with_budget(tmp_path_factory, plain_workspace):
    ws = tmp_path_factory.mktemp("compiled") / "ws"
    shutil.copytree(plain_workspace, ws)
    result = invoke("compile", "--target", "all", "--workdir", ws, "--max-drop", BUDGET, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_compile_fallback_on_every_target(name, compiled_with_budget):
    if get_target(name).available() is not None:
        pytest.skip(f"{name} not available here")
    info = compiled_with_budget[name]
    fb = info["details"]["fallback"]
    assert fb["initial_drop_points"] > 2, f"{name}: plain int8 must lose accuracy in this target's own runtime"
    assert fb["met"] and fb["drop_points"] <= BUDGET
    v = info["validation"]
    assert 100 * (v["reference_top1"] - v["top1"]) <= BUDGET + 1e-9
    assert 1 <= len(fb["float_layers"]) < 6
    assert info["details"]["float_layers"] == fb["float_layers"]
    # "mixed": some layers of a kind int8, the ones kept in float not (arm keeps a conv float on this net)
    assert set(info["precision"].values()) & {"int8", "mixed"}, "the rest still runs in int8"


def test_no_fallback_when_none_is_needed(tmp_path, trained_tiny, calib_small, eval_npz_small):
    model = save_model(trained_tiny, "exported_program", tmp_path / "tiny.pt2", torch.zeros(2, 1, 28, 28))
    result = invoke(*quantize_args(model, calib_small, eval_npz_small, tmp_path / "ws", "--max-drop", 10))
    assert result.exit_code == 0, result.output
    fb = json.loads(result.stdout)["fallback"]
    assert fb["met"] and fb["float_layers"] == [] and len(fb["steps"]) == 1


def test_unmet_budget_still_writes_artifacts_and_warns(tmp_path, plain_workspace):
    ws = tmp_path / "ws"
    shutil.copytree(plain_workspace, ws)
    (ws / "sensitivity.json").write_text(json.dumps({"images": 0, "layers": []}))  # nothing left to keep in float
    result = invoke("compile", "--target", "arm", "--workdir", ws, "--max-drop", BUDGET, "--json")
    assert result.exit_code == 0, result.output
    fb = json.loads(result.stdout)["arm"]["details"]["fallback"]
    assert not fb["met"] and fb["float_layers"] == []
    assert "warning: arm: drop" in result.stderr and (ws / "targets" / "arm" / "model.int8.onnx").is_file()


def test_method_auto_keeps_the_best_and_says_why(tmp_path, trained_tiny, calib_small):
    model = save_model(trained_tiny, "exported_program", tmp_path / "tiny.pt2", torch.zeros(2, 1, 28, 28))
    result = invoke("quantize", model, "--calib", calib_small, "--workdir", tmp_path / "ws", "--mean", "0.286",
                    "--std", "0.353", "--method", "auto", "--json")
    assert result.exit_code == 0, result.output
    cal = json.loads(result.stdout)["calibration"]
    auto = cal["auto"]
    assert {"minmax", "percentile", "entropy", "cle"} <= set(auto["scores"])  # + cle+adaround with aimet-onnx
    best = max(auto["scores"].values(), key=lambda s: (s["agreement"], s["cosine"]))
    assert cal["method"] == auto["range_method"] and auto["scores"][auto["chosen"]] == best
    assert auto["fit_images"] + auto["held_out_images"] == cal["samples"]
    assert f"method auto: {auto['chosen']}: highest top-1 agreement" in result.stderr


def test_warnings_point_to_a_fix(monkeypatch):
    from onnx import TensorProto, helper, numpy_helper

    from edgekit import preflight

    # A depthwise conv (group = 4 channels) whose weights were quantized with one scale for all channels.
    inits = [numpy_helper.from_array(np.zeros((4, 1, 3, 3), np.int8), "w_q"),
             numpy_helper.from_array(np.array(0.1, np.float32), "w_scale"),
             numpy_helper.from_array(np.array(0, np.int8), "w_zp")]
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"]),
             helper.make_node("Conv", ["x", "w"], ["y"], name="dw", group=4, pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    (warning,) = preflight.depthwise_per_tensor(helper.make_model(graph))
    assert "'dw'" in warning and "per channel" in warning
    monkeypatch.setattr("edgekit.environment.environment", lambda: {"int8_dot_product": False})
    assert "slower" in preflight.cpu_without_dot_product()[0]
    hint = get_target("jetson").not_int8_hint  # the target's own words for why and what to do
    assert preflight.not_int8("jetson", {"Conv": "int8", "MaxPool": "fp16"}, hint) == [], "cheap ops: no noise"
    (line,) = preflight.not_int8("jetson", {"Conv": "mixed", "Gemm": "int8", "MaxPool": "fp16"}, hint)
    assert "Conv (mixed)" in line and "Gemm" not in line and "MaxPool" not in line and line.endswith(hint)


def test_a_layer_is_ranked_with_its_fused_activation(quantized_workspace, tmp_path):
    """Alone in int8, a Conv followed by a Relu is quantized as the full int8 model has it: the Relu folded into
    the range of the Conv's output (zero point at the bottom of int8), not the Conv's pre-activation range."""
    import onnx
    from onnx import numpy_helper

    from edgekit.calibration import Calibration
    from edgekit.qdq_build import quantize_qdq
    from edgekit.sensitivity import layer_nodes

    fp32 = onnx.load(str(quantized_workspace / "model.fp32.onnx"))
    relu = next(n for n in fp32.graph.node if n.op_type == "Relu")
    conv = next(n for n in fp32.graph.node if n.op_type == "Conv" and n.output[0] in relu.input)
    assert layer_nodes(fp32, conv.name) == [conv.name, relu.name]
    last = next(n for n in fp32.graph.node if n.op_type == "Gemm")
    assert layer_nodes(fp32, last.name) == [last.name]

    cal = Calibration.load(quantized_workspace / "calibration.json")
    out = tmp_path / "one.onnx"
    quantize_qdq(quantized_workspace / "model.fp32.onnx", out, cal, nodes_to_quantize=layer_nodes(fp32, conv.name))
    model = onnx.load(str(out))
    assert sum(n.op_type == "Relu" for n in model.graph.node) == sum(n.op_type == "Relu" for n in fp32.graph.node) - 1
    conv_out = next(n for n in model.graph.node if n.name == conv.name).output[0]  # renamed when the Relu went
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == conv_out)
    zero_point = next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == q.input[2])
    assert int(zero_point) == -128, "the output range starts at 0: the Relu's, not the Conv's"


def test_compile_gives_back_to_int8_the_float_layers_its_target_does_not_need(tmp_path, outlier_model, calib_small):
    """quantize picks its float layers in ONNX Runtime on this host, for its own budget; a target checked on its own
    runtime, here against a looser budget, needs fewer. compile tries each inherited layer back in int8, least
    sensitive first, and keeps it there when the budget still holds: the artifact it writes is the pruned one."""
    model, eval_npz = outlier_model
    ws = tmp_path / "ws"
    result = invoke(*quantize_args(model, calib_small, eval_npz, ws, "--min-agreement", 100))
    assert result.exit_code == 0, result.output
    inherited = json.loads((ws / "manifest.json").read_text())["float_layers"]
    assert len(inherited) >= 2, "the strict budget keeps several layers in float"
    result = invoke("compile", "--target", "openvino", "--workdir", ws, "--max-drop", 5, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)["openvino"]
    fb = info["details"]["fallback"]
    ranking = [r["node"] for r in json.loads((ws / "sensitivity.json").read_text())["layers"]]
    assert [s["int8_again"] for s in fb["pruned"]] == sorted(inherited, key=ranking.index, reverse=True)
    assert fb["met"] and set(fb["float_layers"]) < set(inherited), "at least one layer back in int8"
    assert all(s["kept"] == (s["drop_points"] <= 5) for s in fb["pruned"])
    # What was written is the pruned artifact, checked: its own validation is within the budget.
    assert info["details"]["float_layers"] == fb["float_layers"]
    v = info["validation"]
    drop = 100 * (v["reference_top1"] - v["top1"])
    assert drop == pytest.approx(fb["drop_points"], abs=1e-3) and drop <= 5
    assert "int8 again" in result.stderr
