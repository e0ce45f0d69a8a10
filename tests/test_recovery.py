"""Accuracy recovery before float fallback (recovery.py): cross-layer equalization in edgekit, AdaRound via aimet-onnx.

Two models made quantization-hostile on purpose, each function-preserving in fp32: test_fallback's OutlierCNN (one
activation channel 1000x) and a MobileNetV2-style net whose depthwise conv has a few channels 100x larger (its
BatchNorm scale) and the following pointwise conv's inputs on them 1/100x, with ReLU between (ReLU6 would make the
rescale change the function; recovery.py leaves Clip chains alone for the same reason). On both, `--max-drop 0.5`
used to be met by keeping layers in float; CLE meets it with every layer int8, and every target builds its int8
artifact from the adjusted graph.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgekit import recovery
from edgekit.cli import main
from tests.conftest import fashion_arrays, save_model, train_tiny
from tests.test_fallback import OutlierCNN

BUDGET = 0.5
SIZE = 14


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int = 4, stride: int = 1) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1), nn.BatchNorm2d(mid), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid), nn.BatchNorm2d(mid), nn.ReLU())
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y


class MobileNetV2Style(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(InvertedResidual(8, 8), InvertedResidual(8, 16, stride=2), InvertedResidual(16, 16))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    @torch.no_grad()
    def unbalance_depthwise(self, factor: float = 100.0, channels: int = 4) -> "MobileNetV2Style":
        """Function-preserving: the first block's depthwise BatchNorm scales `channels` channels up `factor`x (what
        BN folding puts into the depthwise weights), ReLU commutes with it, and the pointwise conv after it takes
        those inputs 1/factor."""
        block = self.blocks[1]
        bn, pw = block.dw[1], block.project[0]
        bn.weight[:channels] *= factor
        bn.bias[:channels] *= factor
        pw.weight[:, :channels] /= factor
        return self


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def quantize_args(model, calib, eval_npz, ws, *extra):
    return ("quantize", model, "--calib", calib, "--eval", eval_npz, "--workdir", ws, "--mean", "0.286",
            "--std", "0.353", "--calib-size", "32", "--json", *extra)


@pytest.fixture(scope="module")
def hostile_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("recovery")
    images, labels = fashion_arrays(600)
    np.savez(root / "eval.npz", images=images, labels=labels)
    # 14 px and 50 steps keep the fixture cheap (benchmarks/recovery.py trains the same nets at 28 px, 200 steps).
    torch.manual_seed(0)
    outlier = train_tiny(OutlierCNN(), 1, SIZE, steps=50).add_outlier_channel()
    torch.manual_seed(0)
    mbv2 = train_tiny(MobileNetV2Style(), 1, SIZE, steps=50).unbalance_depthwise()
    example = torch.zeros(2, 1, SIZE, SIZE)
    return {"outlier": save_model(outlier, "exported_program", root / "outlier.pt2", example),
            "mbv2": save_model(mbv2, "exported_program", root / "mbv2.pt2", example)}, root / "eval.npz"


def _mbv2_onnx(path):
    torch.manual_seed(0)
    model = MobileNetV2Style().eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, so the folded weights differ per channel
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    model.unbalance_depthwise()
    x = torch.randn(2, 1, 28, 28)
    torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["logits"], dynamo=False,
                      do_constant_folding=True)
    return x.numpy()


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_cle_is_function_preserving_and_balances_the_depthwise(tmp_path):
    src, out = tmp_path / "m.onnx", tmp_path / "cle.onnx"
    x = _mbv2_onnx(src)
    record = recovery.equalize(src, out)
    assert len(record["pairs"]) >= 6, record  # expand -> dw -> project in each block, stem -> expand
    assert max(p["max_rescale"] for p in record["pairs"]) > 10, "the 100x depthwise channels are rescaled"
    ref, got = _run(src, x), _run(out, x)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    # The unbalanced depthwise: its per-channel weight ranges spread 100x before, within a few x after.
    before, after = onnx.load(str(src)), onnx.load(str(out))

    def spreads(model):
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        out = {}
        for n in model.graph.node:
            if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute):
                r = np.abs(inits[n.input[1]]).reshape(inits[n.input[1]].shape[0], -1).max(1)
                out[n.name] = r.max() / r.min()
        return out

    was, now = spreads(before), spreads(after)
    worst = max(was, key=was.get)  # the unbalanced depthwise
    assert was[worst] > 50 and now[worst] < was[worst] / 10, (was, now)


def test_cle_leaves_clip_chains_alone(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU6(), nn.Conv2d(4, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    with torch.no_grad():
        model[0].weight[0] *= 50
    src, out = tmp_path / "m.onnx", tmp_path / "cle.onnx"
    torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), str(src), input_names=["input"], dynamo=False)
    record = recovery.equalize(src, out)
    assert [(p["through"]) for p in record["pairs"]] == [["Relu"]], "only the ReLU chain; ReLU6 would change"
    assert len(record["skipped_clip_chains"]) == 1


def test_baked_adaround_integers_survive_any_max_abs_quantizer():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 3, 3, 3)).astype(np.float32) * rng.uniform(0.01, 3, size=(6, 1, 1, 1)).astype(np.float32)
    s = np.abs(w).reshape(6, -1).max(1) / 127
    w_ada = (np.floor(w / s[:, None, None, None]) + rng.integers(0, 2, w.shape)) * s[:, None, None, None]
    q = recovery.baked_integers(w, w_ada, 0)
    baked = (q * s[:, None]).reshape(w.shape)
    # Every target's weight quantizer is symmetric narrow-range, scale max|W|/127: ORT's WeightSymmetric int8 (the
    # portable, arm and jetson models), NNCF's weights, ai-edge-quantizer's (TFLite spec).
    scale = np.abs(baked).reshape(6, -1).max(1) / 127
    again = np.clip(np.round(baked.reshape(6, -1) / scale[:, None]), -127, 127)
    assert np.array_equal(again, q), "a target's weight quantizer must give back AdaRound's integers"
    assert np.array_equal(np.abs(q).max(1), np.full(6, 127))


def _float_layers(result):
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    return report, report["fallback"]["float_layers"]


@pytest.mark.parametrize("name", ["outlier", "mbv2"])
def test_recovery_meets_the_budget_with_fewer_float_layers(name, hostile_models, calib_small, tmp_path,
                                                            monkeypatch):
    models, eval_npz = hostile_models
    monkeypatch.setattr(recovery, "FALLBACK_METHODS", ())  # the float-only fallback recovery replaces
    before, float_before = _float_layers(invoke(*quantize_args(models[name], calib_small, eval_npz, tmp_path / "a",
                                                               "--max-drop", BUDGET)))
    monkeypatch.setattr(recovery, "FALLBACK_METHODS", recovery.METHODS)
    ws = tmp_path / "b"
    result = invoke(*quantize_args(models[name], calib_small, eval_npz, ws, "--max-drop", BUDGET))
    after, float_after = _float_layers(result)
    assert before["fallback"]["initial_drop_points"] > 5 * BUDGET and float_before, "plain int8 misses; float kept"
    assert after["fallback"]["met"] and after["drop_points"] <= BUDGET
    # Fewer float layers than the plain fallback: none at 2 torch threads; the fixture's nets trained on one thread
    # leave mbv2 one (of two) after CLE, so "none" is not asserted (the issue asks for fewer, ideally none).
    assert len(float_after) < len(float_before), (float_before, float_after)
    assert after["fallback"]["recovery"]["chosen"] == "cle"
    assert not float_after or "with every layer in int8, by cle" not in result.stderr
    assert float_after or "with every layer in int8, by cle" in result.stderr
    manifest = json.loads((ws / "manifest.json").read_text())
    assert manifest["int8_source"] == recovery.ADJUSTED_ONNX and recovery.ADJUSTED_ONNX in manifest["files_sha256"]
    assert json.loads((ws / "calibration.json").read_text())["reference_model"] == recovery.ADJUSTED_ONNX
    if name == "mbv2":  # every target's int8 artifact comes from the adjusted graph: all int8, within the budget
        result = invoke("compile", "--target", "openvino,arm,jetson", "--workdir", ws, "--json")
        assert result.exit_code == 0, result.output
        for target, info in json.loads(result.stdout).items():
            # Rounded: a drop of exactly 1.0 point (6 of the 600 eval images, jetson on an AMD EPYC) is within
            # the bound, not 1.0000000000000009 past it.
            drop = round(100 * (info["validation"]["reference_top1"] - info["validation"]["top1"]), 9)
            assert drop <= BUDGET + 0.5, (target, drop)  # an artifact from the unadjusted graph loses ~50 points
            if not float_after:
                assert info["precision"].get("Conv", info["precision"].get("Convolution")) == "int8", target
            tflite = info["details"].get("tflite")
            if tflite:
                assert tflite["converted_from"]["int8_source"] == recovery.ADJUSTED_ONNX
                assert tflite["validation"]["agreement"] >= 0.9


def test_compile_max_drop_recovers_before_float(hostile_models, calib_small, tmp_path):
    """A workspace quantized without --max-drop: compile --max-drop runs the recovery itself, per target."""
    models, eval_npz = hostile_models
    ws = tmp_path / "ws"
    assert invoke(*quantize_args(models["outlier"], calib_small, eval_npz, ws)).exit_code == 0
    result = invoke("compile", "--target", "jetson", "--workdir", ws, "--max-drop", BUDGET, "--json")
    assert result.exit_code == 0, result.output
    fb = json.loads(result.stdout)["jetson"]["details"]["fallback"]
    assert fb["met"] and fb["float_layers"] == [] and fb["recovery"]["chosen"] == "cle", fb
    assert fb["recovery"]["initial_drop_points"] > 5 * BUDGET


def test_method_auto_considers_recovery(hostile_models, calib_small, tmp_path):
    models, eval_npz = hostile_models
    ws = tmp_path / "auto"
    result = invoke(*quantize_args(models["outlier"], calib_small, eval_npz, ws, "--method", "auto"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    auto = report["calibration"]["auto"]
    assert auto["chosen"] == "cle" and {"minmax", "percentile", "entropy", "cle"} <= set(auto["scores"]), auto
    assert report["drop_points"] <= BUDGET and report["recovery"]["method"] == "cle"
    assert report["calibration"]["method"] == auto["range_method"]
    assert json.loads((ws / "manifest.json").read_text())["int8_source"] == recovery.ADJUSTED_ONNX
    if recovery.aimet_missing():
        assert "cle+adaround" in auto["recovery_not_tried"]


def test_method_adaround_without_aimet_says_how_to_install(hostile_models, calib_small, tmp_path):
    if not recovery.aimet_missing():
        pytest.skip("aimet-onnx is installed")
    models, eval_npz = hostile_models
    result = invoke(*quantize_args(models["outlier"], calib_small, eval_npz, tmp_path / "ws",
                                   "--method", "cle+adaround"))
    assert result.exit_code == 2 and "edgekit[aimet]" in result.output


@pytest.mark.skipif(recovery.aimet_missing() is not None,
                    reason="aimet-onnx not installed (pip install 'edgekit[aimet]')")
def test_adaround_bakes_integers_targets_recover(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # AdaRound must neither change nor write into the working directory
    src, out = tmp_path / "m.onnx", tmp_path / "ada.onnx"
    x = _mbv2_onnx(src)
    recovery.equalize(src, src)
    lines = []
    record = recovery.adaround(src, out, [x] * 4, "input", lines.append, iterations=20)  # the graph fixes batch 2
    assert Path.cwd() == cwd and not list(cwd.iterdir())
    assert record["layers"] and record["baked"] == len(record["layers"])
    assert any("ETA" in line for line in lines)
    w = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer}
    for node in onnx.load(str(out)).graph.node:
        if node.op_type == "Conv":
            v = w[node.input[1]].reshape(w[node.input[1]].shape[0], -1)
            q = v / (np.abs(v).max(1, keepdims=True) / 127)
            assert np.abs(q - np.round(q)).max() < 1e-3, node.name  # on the max-abs/127 grid: any target keeps q
    ref, got = _run(src, x), _run(out, x)
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.99
