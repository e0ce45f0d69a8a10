"""`edgekit compile`: one contract test per registered target, plus the stage's bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import main
from edgekit.data import Preprocess, open_images
from edgekit.targets import REGISTRY, get_target

REQUIRED_KEYS = {"target", "status", "files", "sizes_bytes", "precision", "versions", "seconds", "inputs", "validation"}


@pytest.fixture()
def workspace(tmp_path, quantized_workspace):
    """A private copy of the quantized workspace, so each test may compile (or break) it freely."""
    ws = tmp_path / "ws"
    shutil.copytree(quantized_workspace, ws)
    return ws


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.mark.parametrize("name", list(REGISTRY))
def test_target_contract(name, workspace):
    """Every target: compiles, writes compile.json, its artifacts load in its runtime and agree with fp32."""
    target = get_target(name)
    if target.available() is not None:
        pytest.skip(f"{name} not available here: {target.available()}")
    result = invoke("compile", "--target", name, "--workdir", workspace, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)[name]
    folder = workspace / "targets" / name
    on_disk = json.loads((folder / "compile.json").read_text())
    assert on_disk == info and REQUIRED_KEYS <= set(info)
    assert info["status"] == "ok"
    for role, file in info["files"].items():
        assert (folder / file).is_file(), f"{role} artifact {file} missing"
    manifest = json.loads((workspace / "manifest.json").read_text())
    assert info["inputs"]["model.int8.onnx"] == manifest["files_sha256"]["model.int8.onnx"]
    assert manifest["targets"][name]["dir"] == f"targets/{name}"
    assert info["validation"]["agreement"] >= 0.9 and info["validation"]["images"] == manifest["eval_data"]["images"]
    assert set(info["precision"].values()) & {"int8"}, "something must run in int8"
    # The runner works at any batch size and returns logits for the model's classes.
    pre = Preprocess.from_dict(manifest["preprocess"])
    images = open_images(manifest["eval_data"]["path"], "eval")
    x = np.stack([images.load(i, pre) for i in range(5)])
    for which in ("int8", "fp32"):
        run = target.runner(folder, which, 1, {"device": "CPU"})
        assert run(x).shape == (5, 10) and run(x[:1]).shape == (1, 10)
    assert not list(workspace.glob(".staging-*"))


def test_targets_command_lists_registry():
    result = invoke("targets")
    assert result.exit_code == 0
    for name in REGISTRY:
        assert name in result.stdout
    assert "available here" in result.stdout


def test_compile_before_quantize(tmp_path):
    result = invoke("compile", "--target", "arm", "--workdir", tmp_path / "empty")
    assert result.exit_code == 2
    assert "run `edgekit quantize MODEL --calib DIR" in result.stderr
    assert not (tmp_path / "empty" / "manifest.json").exists()


def test_unknown_target_did_you_mean(workspace):
    result = invoke("compile", "--target", "openvno", "--workdir", workspace)
    assert result.exit_code == 2 and "did you mean 'openvino'" in result.stderr


def test_hand_edited_workspace_is_refused(workspace):
    model = workspace / "model.int8.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    before = sorted(p.name for p in workspace.rglob("*"))
    result = invoke("compile", "--target", "arm", "--workdir", workspace)
    assert result.exit_code == 2 and "changed after `edgekit quantize`" in result.stderr
    assert sorted(p.name for p in workspace.rglob("*")) == before


def test_other_edgekit_version_is_refused(workspace):
    manifest = json.loads((workspace / "manifest.json").read_text())
    manifest["schema"] = 0
    (workspace / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("compile", "--target", "arm", "--workdir", workspace)
    assert result.exit_code == 2 and "schema 0" in result.stderr


def test_missing_runtime(workspace, monkeypatch):
    """A target whose runtime is absent: an error naming what to install when asked for by name, a skip in `all`."""
    from edgekit.targets.openvino import OpenVINOTarget

    monkeypatch.setattr(OpenVINOTarget, "available", lambda self: "openvino not installed")
    result = invoke("compile", "--target", "openvino", "--workdir", workspace)
    assert result.exit_code == 2
    assert "openvino not installed" in result.stderr and "pip install 'edgekit[openvino]'" in result.stderr
    assert not (workspace / "targets" / "openvino").exists()
    result = invoke("compile", "--target", "all", "--workdir", workspace, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["openvino"]["status"] == "skipped" and info["arm"]["status"] == "ok"
    assert "openvino" not in json.loads((workspace / "manifest.json").read_text())["targets"]


def test_recompile_replaces_the_whole_target_folder(workspace):
    assert invoke("compile", "--target", "arm", "--workdir", workspace).exit_code == 0
    stale = workspace / "targets" / "arm" / "bench.json"
    stale.write_text("{}")  # a result of the previous build
    assert invoke("compile", "--target", "arm", "--workdir", workspace).exit_code == 0
    assert not stale.exists() and (workspace / "targets" / "arm" / "compile.json").is_file()
    assert not list(workspace.glob(".staging-*"))
