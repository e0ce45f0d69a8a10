"""The bundled default: the shipped teacher and data quantize within the promised accuracy and size."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgekit.cli import main
from edgekit.datasets import BUNDLED_FASHION_EVAL

REPO = Path(__file__).resolve().parent.parent


def test_bundled_teacher_quantizes_within_budget(tmp_path):
    # The shipped 2,000-image eval subset (the full 10k runs in the README's main job when the Debian package
    # is installed). Percentile calibration on the 320 shipped calibration PNGs, as the main job does.
    result = CliRunner().invoke(main, [
        "quantize", str(REPO / "models" / "fashion_resnet.pt2"), "--calib", str(REPO / "calibration"),
        "--eval", str(BUNDLED_FASHION_EVAL), "--mean", "0.286", "--std", "0.353",
        "--workdir", str(tmp_path / "ws"), "--json",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["fp32"]["top1"] >= 0.92
    assert report["drop_points"] <= 0.3
    assert report["size_ratio"] <= 0.3
    assert report["int8"]["agreement"] >= 0.99
    assert report["calibration"]["samples"] == 320
