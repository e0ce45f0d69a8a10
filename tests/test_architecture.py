"""The layering the code promises (docs/architecture.md), checked on the source itself.

Stages never import each other; targets never import a stage; the board package imports nothing of edgekit and
nothing third-party but numpy and the runtime each module is for; everything a stage, preflight or the remote
bench knows about a target goes through the Target Protocol, not getattr.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import edgekit
from edgekit.targets import REGISTRY, get_target
from edgekit.targets.base import Target

PKG = Path(edgekit.__file__).resolve().parent
STAGES = {"quantization", "compiling", "benchmarking", "distillation", "pipeline"}
RUNTIMES = {"onnxruntime", "openvino", "ai_edge_litert", "tensorrt", "torch"}  # torch: the TensorRT engine's CUDA memory


def imported_edgekit_modules(path: Path) -> set[str]:
    """edgekit module names (the part after `edgekit.`) a file imports, at any depth of the file."""
    package = ".".join(path.relative_to(PKG.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.split(".", 1)[1] for n in names if n.startswith("edgekit.")}
    return found


def top_level_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out.add((node.module or "").split(".")[0])
    return out


def test_the_import_walker_sees_relative_and_absolute_imports(tmp_path):
    """The checks below are only as good as this walker: it must see every form of import."""
    found = imported_edgekit_modules(PKG / "compiling.py")
    assert {"workspace", "targets", "stage_keys"} <= found
    assert "distillation" in imported_edgekit_modules(PKG / "cli.py") or "distill_report" in imported_edgekit_modules(
        PKG / "cli.py")  # the CLI's distill table helper, a relative import inside a function
    assert "board.timing" in imported_edgekit_modules(PKG / "benchmarking.py")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_no_stage_imports_another_stage(stage):
    imported = {m.split(".")[0] for m in imported_edgekit_modules(PKG / f"{stage}.py")}
    assert not (imported & (STAGES - {stage})), f"{stage}.py imports the stage(s) {imported & (STAGES - {stage})}"


def test_targets_and_shared_modules_import_no_stage():
    offenders = {}
    for path in [*PKG.glob("targets/*.py"), *PKG.glob("board/*.py"),
                 *(p for p in PKG.glob("*.py") if p.stem not in STAGES | {"cli", "__init__"})]:
        hits = {m.split(".")[0] for m in imported_edgekit_modules(path)} & STAGES
        if hits:
            offenders[str(path.relative_to(PKG))] = hits
    assert not offenders


def test_board_package_is_standalone():
    """A board has the runtime, numpy and Python; no edgekit, no torch (except the engine's CUDA buffers)."""
    import sys

    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in PKG.glob("board/*.py"):
        third_party = top_level_imports(path) - stdlib - {""}
        assert third_party <= {"numpy"} | RUNTIMES, (path.name, third_party)
        outside = {m for m in imported_edgekit_modules(path) if m != "board" and not m.startswith("board.")}
        assert not outside, (path.name, outside)


def test_no_module_reads_a_target_by_getattr():
    """What other modules use of a target is declared in the Protocol; getattr(target, ...) would bypass it."""
    for path in PKG.rglob("*.py"):
        text = path.read_text()
        for needle in ("getattr(tgt", "getattr(target", "getattr(int8", "getattr(runner"):
            assert needle not in text, f"{path.relative_to(PKG)} uses {needle}...)"


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_target_implements_the_whole_protocol(name):
    tgt = get_target(name)
    declared = {n for n in Target.__annotations__} | {n for n, v in vars(Target).items() if callable(v)
                                                       and not n.startswith("_")}
    missing = {n for n in declared if not hasattr(tgt, n)}
    assert not missing, f"{name} lacks {missing}"
    assert isinstance(tgt.native_machines, tuple) and isinstance(tgt.cpu_bound, bool) and tgt.not_int8_hint


def test_api_has_real_signatures_and_docstrings():
    for name in ("quantize", "distill", "compile", "bench", "report", "run"):
        fn = getattr(edgekit, name)
        params = inspect.signature(fn).parameters
        assert "kwargs" not in params and "args" not in params, name
        assert fn.__doc__ and len(fn.__doc__) > 200, name
    assert {"model", "calib", "eval", "workdir", "inputs", "method", "max_drop", "force"} <= set(
        inspect.signature(edgekit.quantize).parameters)


def test_help_shows_quantize_parameters():
    import pydoc

    text = pydoc.render_doc(edgekit.quantize, renderer=pydoc.plaintext)
    for parameter in ("calib", "eval", "workdir", "inputs", "max_drop", "calib_size"):
        assert f"{parameter}:" in text or f"{parameter}=" in text, parameter


def test_cli_calls_only_the_public_api():
    imported = {m.split(".")[0] for m in imported_edgekit_modules(PKG / "cli.py")}
    assert not imported & STAGES, imported & STAGES


def test_gate_failed_is_gone_and_the_exit_code_decision_exists_once():
    assert not hasattr(edgekit.errors, "GateFailed")
    cli = (PKG / "cli.py").read_text()
    assert cli.count('r["passed"]') == 1 and cli.count("ctx.exit(1)") == 1
