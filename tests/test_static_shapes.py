"""Models whose file fixes the batch (torch.export's default: the example's batch is baked in) work with no shape
flag: the shape is read from the model, and every stage and target feeds it exactly that many images per call."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from edgekit.cli import main


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture(scope="module")
def static_ws(tmp_path_factory, trained_tiny, calib_small, eval_npz_small):
    root = tmp_path_factory.mktemp("static")
    path = root / "static1.pt2"
    torch.export.save(torch.export.export(trained_tiny.eval(), (torch.zeros(1, 1, 28, 28),)), str(path))  # defaults
    result = invoke("quantize", path, "--calib", calib_small, "--eval", eval_npz_small, "--mean", "0.286",
                    "--std", "0.353", "--method", "minmax", "--workdir", root / "ws", "--json")
    assert result.exit_code == 0, result.output
    return root / "ws", json.loads(result.stdout)


def test_a_static_batch_export_quantizes_with_no_shape_flag(static_ws):
    ws, report = static_ws
    manifest = json.loads((ws / "manifest.json").read_text())
    assert manifest["input"]["shape"] == [1, 1, 28, 28]
    assert report["int8"]["agreement"] >= 0.95 and report["fp32"]["top1"] > 0.3


def test_every_target_and_a_larger_bench_batch_work(static_ws, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(static_ws[0], ws)
    compiled = invoke("compile", "--target", "all", "--workdir", ws, "--json")
    assert compiled.exit_code == 0, compiled.output
    results = json.loads(compiled.stdout)
    assert all(r["status"] == "ok" and r["validation"]["agreement"] >= 0.95 for r in results.values()), results
    assert "--minShapes" not in results["jetson"]["details"]["trtexec"]  # trtexec refuses shapes on a static input
    bench = invoke("bench", "--target", "openvino,arm", "--workdir", ws, "--batch", "4", "--runs", "10",
                   "--warmup", "1", "--warmup-seconds", "0", "--threads", "1", "--json")
    assert bench.exit_code == 0, bench.output
    for r in json.loads(bench.stdout).values():
        assert r["model_batch"] == 1 and "a batch of 4 is 4 calls" in r["latency_note"]


def test_input_shape_always_wins(trained_tiny, calib_small, tmp_path):
    path = tmp_path / "static1.pt2"
    torch.export.save(torch.export.export(trained_tiny.eval(), (torch.zeros(1, 1, 28, 28),)), str(path))
    ok = invoke("quantize", path, "--calib", calib_small, "--input-shape", "1,1,28,28", "--workdir", tmp_path / "a",
                "--method", "minmax", "--mean", "0.286", "--std", "0.353")
    assert ok.exit_code == 0, ok.output
    wrong = invoke("quantize", path, "--calib", calib_small, "--input-shape", "2,1,28,28", "--workdir", tmp_path / "b",
                   "--mean", "0.286", "--std", "0.353")
    assert wrong.exit_code == 2 and "rejected an input of shape (2, 1, 28, 28)" in wrong.stderr
