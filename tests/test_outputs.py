"""Any output head: dense maps, multi-tensor detector heads, dict outputs and embeddings get per-output fidelity
(cosine, SQNR, max abs error) in quantize.json, bench.json and the report; roles are detected, stored and
overridable; outputs no target can carry are refused with one line (exit 2) and nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from edgekit.cli import main
from edgekit.errors import EdgekitError
from edgekit.outputs import OutputLayout, detect_layout, fidelity, parse_overrides, sqnr_db


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def bn_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU())


class TinyUNet(nn.Module):
    """Encoder, ConvTranspose up, skip concat, per-pixel scores for 4 classes: (N, 4, 28, 28)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.down = bn_block(1, 8), bn_block(8, 16, 2)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.head = nn.Sequential(bn_block(16, 8), nn.Conv2d(8, 4, 1))

    def forward(self, x):
        skip = self.enc(x)
        return self.head(torch.cat([self.up(self.down(skip)), skip], 1))


class TwoHeadDetector(nn.Module):
    """A single-stage detector head before NMS: boxes (N, A, 4) and class scores (N, A, 3) over 7x7 anchors."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(bn_block(1, 8, 2), bn_block(8, 16, 2))
        self.box, self.cls = nn.Conv2d(16, 4, 1), nn.Conv2d(16, 3, 1)

    def forward(self, x):
        f = self.body(x)
        return self.box(f).flatten(2).transpose(1, 2), self.cls(f).flatten(2).transpose(1, 2)


class DictHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(bn_block(1, 8, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc, self.proj = nn.Linear(8, 10), nn.Linear(8, 6)

    def forward(self, x):
        f = self.body(x)
        return {"logits": 4 * self.fc(f), "embedding": self.proj(f)}


def exported(model: nn.Module, path, calib_images: np.ndarray):
    """BatchNorm statistics from forward passes over real images, then an ExportedProgram with a dynamic batch."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # a cumulative average over the passes below
        model(torch.from_numpy(calib_images))
    model.eval()
    x = torch.from_numpy(calib_images[:2])
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    torch.export.save(program, str(path))
    return path


@pytest.fixture(scope="module")
def real_images(calib_small):
    from edgekit.data import Preprocess, open_images

    images = open_images(calib_small, "calibration")
    pre = Preprocess(channels=1, height=28, width=28, mean=(0.286,), std=(0.353,))
    return np.stack([images.load(i, pre) for i in range(len(images))])


def quantize(model_path, calib_small, ws, *extra):
    return invoke("quantize", model_path, "--calib", calib_small, "--calib-size", 32, "--mean", "0.286",
                  "--std", "0.353", "--workdir", ws, "--json", *extra)


@pytest.fixture(scope="module")
def unet_ws(tmp_path_factory, calib_small, real_images):
    root = tmp_path_factory.mktemp("unet")
    result = quantize(exported(TinyUNet(), root / "unet.pt2", real_images), calib_small, root / "ws")
    assert result.exit_code == 0, result.output
    return root / "ws", json.loads(result.stdout)


def test_a_segmenter_gets_pixel_agreement_and_sqnr(unet_ws):
    ws, report = unet_ws
    out = report["outputs"]["output"]
    assert out["role"] == "dense" and out["shape"] == [4, 28, 28]
    assert out["sqnr_db"] > 20 and out["pixel_agreement"] > 0.95 and 0 < out["miou_vs_reference"] <= 1
    assert report["int8"]["agreement"] is None and report["fp32"]["top1"] is None  # no class logits to judge
    manifest = json.loads((ws / "manifest.json").read_text())
    assert manifest["outputs"] == [{"name": "output", "role": "dense", "shape": [4, 28, 28]}]


def test_segmenter_fidelity_reaches_bench_json_and_the_report(unet_ws):
    ws, _ = unet_ws
    assert invoke("compile", "--target", "openvino,arm", "--workdir", ws).exit_code == 0
    result = invoke("bench", "--target", "openvino,arm", "--workdir", ws, "--runs", 5, "--warmup", 1,
                    "--warmup-seconds", 0, "--min-sqnr", 20)
    assert result.exit_code == 0, result.output
    for target in ("openvino", "arm"):
        row = json.loads((ws / "targets" / target / "bench.json").read_text())
        rows = [row, *row.get("variants", {}).values()]  # arm: the .tflite pair too, where it was written
        for r in rows:
            assert r["outputs"]["output"]["sqnr_db"] > 20 and r["outputs"]["output"]["pixel_agreement"] > 0.95
        gate = next(g for g in row["gates"] if g["name"] == "min_sqnr_db")
        assert gate["status"] == "passed" and gate["value"] == pytest.approx(row["outputs"]["output"]["sqnr_db"])
    # An unreachable SQNR fails the gate: exit 1, and the gate says by how much.
    failing = invoke("bench", "--target", "openvino", "--workdir", ws, "--runs", 5, "--warmup", 1,
                     "--warmup-seconds", 0, "--min-sqnr", 90)
    assert failing.exit_code == 1
    assert invoke("report", "--workdir", ws).exit_code == 0
    page = (ws / "report.html").read_text()
    assert "Output fidelity" in page and "of pixels" in page and "dense" in page


def test_a_two_output_detector_gets_sqnr_per_output(tmp_path, calib_small, real_images):
    result = quantize(exported(TwoHeadDetector(), tmp_path / "det.pt2", real_images), calib_small, tmp_path / "ws")
    assert result.exit_code == 0, result.output
    outs = json.loads(result.stdout)["outputs"]
    assert list(outs) == ["output0", "output1"]
    assert [o["role"] for o in outs.values()] == ["detect", "detect"]
    assert outs["output0"]["shape"] == [49, 4] and outs["output1"]["shape"] == [49, 3]
    assert all(o["sqnr_db"] > 20 and o["max_abs_err"] > 0 for o in outs.values())
    # The int8 ONNX keeps both outputs, in the same order and names.
    import onnx

    graph = onnx.load(str(tmp_path / "ws" / "model.int8.onnx")).graph
    assert [o.name for o in graph.output] == ["output0", "output1"]


def test_dict_outputs_roles_and_overrides(tmp_path, calib_small, real_images):
    path = exported(DictHead(), tmp_path / "dict.pt2", real_images)
    result = quantize(path, calib_small, tmp_path / "ws")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {n: o["role"] for n, o in report["outputs"].items()} == {"logits": "logits", "embedding": "features"}
    assert report["int8"]["agreement"] == report["outputs"]["logits"]["agreement"] >= 0.9
    # --output wins over the detection, and the roles are stored in the manifest.
    result = quantize(path, calib_small, tmp_path / "ws2", "--output", "logits=features", "--output", "embedding=logits")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "ws2" / "manifest.json").read_text())
    assert {o["name"]: o["role"] for o in manifest["outputs"]} == {"logits": "features", "embedding": "logits"}
    assert manifest["input"]["num_classes"] == 6
    # --task features: nothing is class logits, so a top-1 budget cannot apply: exit 2, one line, nothing written.
    result = quantize(path, calib_small, tmp_path / "ws3", "--task", "features", "--max-drop", "1")
    assert result.exit_code == 2 and "no class-logits output" in result.output
    assert not (tmp_path / "ws3" / "model.int8.onnx").exists()
    result = quantize(path, calib_small, tmp_path / "ws4", "--output", "nosuch=logits")
    assert result.exit_code == 2 and "does not return" in result.output and "logits, embedding" in result.output


class IntegerOutput(nn.Module):
    def forward(self, x):
        return x.flatten(1).argmax(1, keepdim=True)


class DataDependentOutput(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, : int((x > 0).sum()) % 7 + 1]  # the width depends on the pixels


class NoBatchDimension(nn.Module):
    def forward(self, x):
        return x.mean()


class NoTensor(nn.Module):
    def forward(self, x):
        return [x.shape[0]]


@pytest.mark.parametrize("model, message", [
    (IntegerOutput(), "is int64"),
    (DataDependentOutput(), "changes shape with the image"),
    (NoBatchDimension(), "not the batch"),
    (NoTensor(), "not a tensor"),
])
def test_outputs_no_target_can_carry_are_one_line_errors(tmp_path, calib_small, model, message):
    path = tmp_path / "m.pt"
    torch.save(model, path)  # a pickled module: the one format any forward() can be saved in
    result = invoke("quantize", path, "--trust-pickle", "--calib", calib_small, "--input-shape", "2,1,28,28",
                    "--workdir", tmp_path / "ws")
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()
    assert any(message in x for x in line) and "Traceback" not in result.output
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").glob("*.onnx"))


def test_layout_detection_prefers_the_output_that_matches_the_labels():
    layout = detect_layout(["feat", "scores"], [(128,), (10,)], num_labels=10)
    assert [o.role for o in layout.outputs] == ["features", "logits"]
    layout = detect_layout(["a", "b"], [(128,), (10,)])
    assert [o.role for o in layout.outputs] == ["logits", "features"]
    assert [o.role for o in detect_layout(["m"], [(3, 8, 8)], task="segment").outputs] == ["dense"]
    with pytest.raises(EdgekitError, match="class logits are one vector"):
        detect_layout(["m"], [(3, 8, 8)], overrides={"m": "logits"})
    with pytest.raises(EdgekitError, match="NAME=ROLE"):
        parse_overrides(["oops"])


def test_fidelity_figures_are_what_they_say():
    layout = OutputLayout.from_list([{"name": "a", "role": "logits", "shape": [3]},
                                     {"name": "m", "role": "dense", "shape": [2, 2, 2]}])
    ref = np.array([[1.0, 2.0, 3.0, 1, 0, 0, 1, 0, 1, 1, 0]], np.float32)
    noisy = ref.copy()
    noisy[0, 0] += 0.1  # logits: argmax unchanged; noise energy 0.01 against signal 14
    noisy[0, 3:] = [0, 1, 1, 0, 1, 0, 0, 1]  # the dense map's argmax flips on every pixel
    f = fidelity(layout, noisy, ref)
    assert f["a"]["agreement"] == 1.0 and f["a"]["sqnr_db"] == pytest.approx(10 * np.log10(14 / 0.01), abs=1e-3)
    assert f["a"]["max_abs_err"] == pytest.approx(0.1, abs=1e-6)
    assert f["m"]["pixel_agreement"] == 0.0 and f["m"]["miou_vs_reference"] == 0.0
    assert sqnr_db(ref, ref) is None
