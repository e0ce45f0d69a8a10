"""`edgekit run RECIPE`: schema validation, the plan, skipping unchanged stages, overrides, gates."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from click.testing import CliRunner

from edgekit.cli import main
from tests.conftest import REPO, save_model


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def write_recipe(folder, body: str):
    path = folder / "r.yaml"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture()
def tiny_recipe(tmp_path, trained_tiny, calib_small, eval_npz_small):
    save_model(trained_tiny, "exported_program", tmp_path / "tiny.pt2", torch.zeros(2, 1, 28, 28))
    return write_recipe(tmp_path, f"""
        workdir: out
        model: {{path: tiny.pt2}}
        preprocess: {{mean: 0.286, std: 0.353}}
        data: {{calib: {calib_small}, eval: {eval_npz_small}, calib_size: 40}}
        quantize: {{method: minmax}}
        compile: {{targets: [arm]}}
        bench: {{runs: 10, warmup: 1, warmup_seconds: 0.01, threads: 1, gates: {{max_drop: 100}}}}
    """)


def test_run_then_rerun_skips_everything(tiny_recipe):
    first = invoke("run", tiny_recipe, "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert [s["status"] for s in summary["stages"]] == ["run"] * 3
    assert summary["bench"]["arm"]["passed"] is True
    out = tiny_recipe.parent / "out"
    assert (out / "report.html").is_file() and (out / "targets" / "arm" / "bench.json").is_file()
    second = invoke("run", tiny_recipe, "--json")
    assert second.exit_code == 0
    assert [s["status"] for s in json.loads(second.stdout)["stages"]] == ["skip (unchanged)"] * 3
    assert "[skip (unchanged)] quantize" in second.stderr
    # A changed option re-runs its stage and everything after it; --force re-runs all.
    third = json.loads(invoke("run", tiny_recipe, "--json", "--set", "bench.runs=12").stdout)
    assert [s["status"] for s in third["stages"]] == ["skip (unchanged)", "skip (unchanged)", "run"]
    fourth = json.loads(invoke("run", tiny_recipe, "--json", "--force", "--set", "bench.runs=12").stdout)
    assert [s["status"] for s in fourth["stages"]] == ["run"] * 3


def test_gate_failure_exits_1(tiny_recipe):
    result = invoke("run", tiny_recipe, "--set", "bench.gates.min_speedup=1000")
    assert result.exit_code == 1 and "gates failed for arm" in result.stderr


def test_dry_run_runs_nothing(tiny_recipe):
    result = invoke("run", tiny_recipe, "--dry-run")
    assert result.exit_code == 0
    assert result.stdout.split() == ["run", "quantize", "run", "compile", "arm", "run", "bench", "arm"]
    assert not (tiny_recipe.parent / "out").exists()


@pytest.mark.parametrize("body,needle", [
    ("model: {path: m.pt}\ndata: {calib: c}\nquantise: {}\n", "unknown recipe key 'quantise'. did you mean 'quantize'?"),
    ("model: {path: m.pt}\ndata: {calib: c}\nbench: {gates: {max_dorp: 1}}\n", "did you mean 'bench.gates.max_drop'?"),
    ("model: {path: m.pt}\ndata: {calib: c}\nbench: {runs: many}\n", "recipe key bench.runs: expected an integer, got 'many'"),
    ("model: {path: m.pt}\ndata: {calib: c}\nbench: {gates: {max_drop: high}}\n", "bench.gates.max_drop: expected a number"),
    ("model: {path: m.pt\ndata: x\n", "not valid YAML at line"),
    ("data: {calib: c}\n", "model.path is required"),
    ("model: {path: missing.pt}\ndata: {calib: c}\n", "model.path = 'missing.pt' does not exist"),
    ("- a list\n", "must be a mapping"),
])
def test_bad_recipes(tmp_path, body, needle):
    (tmp_path / "m.pt").write_bytes(b"x")
    (tmp_path / "c").mkdir()
    result = invoke("run", write_recipe(tmp_path, body))
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "edgekit-out").exists(), "nothing ran"


def test_missing_recipe(tmp_path):
    result = invoke("run", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_shipped_recipes_validate():
    from edgekit.recipe import load_recipe

    default = load_recipe(REPO / "recipes" / "fashion_mnist.yaml")
    assert default.bench.gates.max_drop == 0.5 and default.preprocess.mean == "0.286"
    template = load_recipe(REPO / "recipes" / "template.yaml", ["model.path=fashion_mnist.yaml",
                                                                 "data.calib=../calibration"])
    assert template.quantize.method == "percentile" and template.compile.targets == ["all"]
