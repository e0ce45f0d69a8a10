"""`edgekit run RECIPE`: schema validation, the plan, skipping unchanged stages, overrides, gates."""

from __future__ import annotations

import dataclasses
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
    distilled = load_recipe(REPO / "recipes" / "fashion_mnist_distill.yaml")
    assert distilled.distill is not None and distilled.distill.data == "fashion-mnist:train"


def test_distill_recipe_plans_student_first(tmp_path):
    """Before the student exists, quantize's inputs (the student's sha256) cannot be known: the plan says those
    stages run after distill."""
    result = invoke("run", REPO / "recipes" / "fashion_mnist_distill.yaml", "--dry-run", "--workdir", tmp_path / "ws",
                    "--set", "compile.targets=[arm]")
    assert result.exit_code == 0, result.output
    assert [line.split("  ")[-1].strip() for line in result.stdout.splitlines()] == [
        "distill", "quantize", "compile arm", "bench arm"]
    assert result.stdout.count("run (after distill)") == 3 and not (tmp_path / "ws").exists()


def test_distill_spec_defaults_match_the_stage():
    """The recipe's distill defaults are the CLI's: a recipe that leaves a key out trains what the CLI would."""
    import inspect

    from edgekit.distillation import distill
    from edgekit.recipe import DistillSpec

    stage = inspect.signature(distill).parameters
    for f in dataclasses.fields(DistillSpec):
        if f.name in stage and f.name not in ("data", "out"):
            assert f.default == stage[f.name].default, f.name


# CLI options that are not recipe keys by design, or are under another name.
NOT_RECIPE_KEYS = {"as_json", "workdir", "model", "teacher", "target", "eval_", "seed", "no_augment", "calib",
                   "force", "trust_pickle",  # force: adopt a folder here, redo all in run; trust_pickle: CLI only
                   "calib_size", "data", "max_drop", "max_latency_ms", "min_speedup"}
SECTION_KEYS = {"quantize": ["model", "preprocess", "data", "quantize"], "distill": ["distill", "preprocess", "model"],
                "compile": ["compile"], "bench": ["bench", "bench.gates"]}


def keys_of(section: str) -> set[str]:
    from edgekit import recipe as r

    spec = {"model": r.ModelSpec, "preprocess": r.PreprocessSpec, "data": r.DataSpec, "distill": r.DistillSpec,
            "quantize": r.QuantizeSpec, "compile": r.CompileSpec, "bench": r.BenchSpec, "bench.gates": r.GatesSpec}
    return {f.name for f in dataclasses.fields(spec[section])}


@pytest.mark.parametrize("stage", sorted(SECTION_KEYS))
def test_every_stage_option_has_a_recipe_key(stage):
    keys = set().union(*(keys_of(section) for section in SECTION_KEYS[stage]))
    options = {p.name for p in main.commands[stage].params} - NOT_RECIPE_KEYS
    assert options <= keys, options - keys
    # the ones under another name are there too
    assert {"calib", "calib_size", "seed", "eval"} <= keys_of("data") and "augment" in keys_of("distill")
    assert {"max_drop", "max_latency_ms", "min_speedup"} <= keys_of("bench.gates")
    assert "max_drop" in keys_of("quantize") and "max_drop" in keys_of("compile")


def test_distill_recipe_runs_teacher_to_student_to_target(tmp_path, trained_tiny, calib_small, eval_npz_small):
    """teacher -> distilled student -> int8 -> arm, in one run; the quantized model is the student, not the teacher."""
    import numpy as np

    from tests.conftest import fashion_arrays

    save_model(trained_tiny, "exported_program", tmp_path / "teacher.pt2", torch.zeros(2, 1, 28, 28))
    images, labels = fashion_arrays(128)
    np.savez(tmp_path / "train.npz", images=images, labels=labels)
    recipe = write_recipe(tmp_path, f"""
        workdir: out
        model: {{path: teacher.pt2}}
        preprocess: {{mean: 0.286, std: 0.353}}
        data: {{calib: {calib_small}, eval: {eval_npz_small}, calib_size: 40}}
        distill: {{data: train.npz, student: resnet_s_050, epochs: 1, batch: 32}}
        quantize: {{method: minmax}}
        compile: {{targets: [arm]}}
        bench: {{runs: 5, warmup: 1, warmup_seconds: 0.01, threads: 1}}
    """)
    result = invoke("run", recipe, "--json")
    assert result.exit_code == 0, result.output
    stages = json.loads(result.stdout)["stages"]
    assert [s["stage"] for s in stages] == ["distill", "quantize", "compile arm", "bench arm"]
    out = tmp_path / "out"
    distilled = json.loads((out / "distill.json").read_text())
    assert distilled["student"]["name"] == "resnet_s_050"
    quantized = json.loads((out / "quantize.json").read_text())
    assert quantized["model"]["path"] == str(out / "student.pt2")
    rerun = json.loads(invoke("run", recipe, "--json").stdout)["stages"]
    assert {s["status"] for s in rerun} == {"skip (unchanged)"}


def test_a_hand_run_quantize_is_noticed_by_the_next_run(tiny_recipe, trained_tiny, calib_small, eval_npz_small):
    """The manifest, not a side file, decides what is current: after `edgekit quantize other.pt` into the recipe's
    workspace, `edgekit run` re-quantizes its own model and recompiles, rather than compiling the other model."""
    assert invoke("run", tiny_recipe).exit_code == 0
    out = tiny_recipe.parent / "out"
    other = save_model(trained_tiny, "torchscript", tiny_recipe.parent / "other.pt", torch.zeros(2, 1, 28, 28))
    hand = invoke("quantize", other, "--calib", calib_small, "--eval", eval_npz_small, "--workdir", out,
                  "--mean", "0.286", "--std", "0.353", "--method", "minmax")
    assert hand.exit_code == 0, hand.output
    assert "removed what was built from the previous model: targets/arm, report.md, report.html" in hand.stderr
    assert not (out / "targets").exists() and not (out / "report.html").exists()
    again = json.loads(invoke("run", tiny_recipe, "--json").stdout)
    assert [s["status"] for s in again["stages"]] == ["run"] * 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["path"].endswith("tiny.pt2")
    assert not (out / "run.json").exists()


def test_trust_pickle_is_a_command_line_decision_only(tmp_path, trained_tiny, calib_small):
    torch.save(trained_tiny, tmp_path / "pickled.pt")
    recipe = write_recipe(tmp_path, f"""
        model: {{path: pickled.pt, trust_pickle: true}}
        data: {{calib: {calib_small}}}
    """)
    result = invoke("run", recipe, "--dry-run")
    assert result.exit_code == 2 and "trust_pickle is not a recipe key" in result.stderr
    assert "edgekit run RECIPE --trust-pickle" in result.stderr
    plain = write_recipe(tmp_path, f"""
        model: {{path: pickled.pt}}
        preprocess: {{mean: 0.286, std: 0.353}}
        data: {{calib: {calib_small}, calib_size: 16}}
        compile: {{targets: [arm]}}
        bench: {{runs: 5, warmup: 1, warmup_seconds: 0.01, threads: 1}}
    """)
    refused = invoke("run", plain)
    assert refused.exit_code == 2 and "--trust-pickle" in refused.stderr
    assert invoke("run", plain, "--trust-pickle").exit_code == 0


def test_a_remote_recipe_says_where_it_uploads_before_connecting(tiny_recipe):
    result = invoke("run", tiny_recipe, "--set", "bench.remote=pi@127.0.0.1:1", "--set", "compile.targets=[arm]")
    assert result.exit_code == 2  # nothing listens on port 1
    announced = result.stderr.index("will be uploaded there over ssh")
    assert announced < result.stderr.index("cannot reach pi@127.0.0.1:1")
