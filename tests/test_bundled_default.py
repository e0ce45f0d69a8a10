"""The bundled default: the shipped CIFAR-10 teacher and data quantize within the promised accuracy and size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli import main

REPO = Path(__file__).resolve().parent.parent
STUDENT_FLOOR = 0.88  # the shipped student: 88.70 % on these 2,000, 88.60 % on the 10k (models/cifar10_student.distill.json)
CIFAR10_NORM = ["--mean", "0.4914,0.4822,0.4465", "--std", "0.2470,0.2435,0.2616"]


@pytest.mark.parametrize("model, floor", [
    ("cifar10_net.pt2", 0.895),  # the teacher: 90.00 % on these 2,000 (docs/bundled-default.md)
    ("cifar10_student.pt2", STUDENT_FLOOR),  # the distilled student (benchmarks/student_vs_teacher.py)
])
def test_bundled_models_quantize_within_budget(tmp_path, model, floor):
    # The shipped 2,000-image test subset (the README's main job evaluates the full 10k where the shared tars are).
    # Percentile calibration on the 320 shipped training JPEGs, as recipes/cifar10.yaml does.
    result = CliRunner().invoke(main, [
        "quantize", str(REPO / "models" / model), "--calib", str(REPO / "data" / "cifar10" / "calib"),
        "--eval", str(REPO / "data" / "cifar10" / "test"), *CIFAR10_NORM, "--workdir", str(tmp_path / "ws"), "--json",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["fp32"]["top1"] >= floor
    assert report["drop_points"] <= 0.3
    assert report["size_ratio"] <= 0.3
    assert report["int8"]["agreement"] >= 0.99
    assert report["calibration"]["samples"] == 320


def test_recipes_name_the_shipped_files():
    from edgekit.recipe import load_recipe

    for name in ("cifar10.yaml", "fashion_mnist.yaml"):
        recipe = load_recipe(REPO / "recipes" / name)
        assert Path(recipe.resolve(recipe.model.path)).is_file(), (name, recipe.model.path)
        assert Path(recipe.resolve(recipe.data.calib)).is_dir(), (name, recipe.data.calib)
    cifar = load_recipe(REPO / "recipes" / "cifar10.yaml")
    assert cifar.bench.gates.max_drop == 0.3 and cifar.data.eval == "cifar10:test"
