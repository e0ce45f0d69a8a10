"""A non-editable install carries what the tool reads at run time: built as a wheel, installed alone into a
fresh venv, run from a folder outside the checkout, `--eval fashion-mnist:test` finds the bundled subset."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from edgekit.datasets import NO_SYSTEM_DATASETS_ENV

REPO = Path(__file__).resolve().parent.parent


def _cannot_build_wheel() -> str | None:
    """Why `pip wheel --no-build-isolation` cannot work here (it uses this venv's setuptools), or None."""
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed in this venv (pip install setuptools wheel)"
    import setuptools

    if int(setuptools.__version__.split(".")[0]) < 68:
        return f"setuptools {setuptools.__version__} is older than pyproject's build-system needs (>=68)"
    # setuptools >= 70.1 builds wheels itself; older ones need the `wheel` package.
    if importlib.util.find_spec("setuptools.command.bdist_wheel") is None and importlib.util.find_spec("wheel") is None:
        return "neither setuptools' bdist_wheel nor the `wheel` package is installed (pip install wheel)"
    return None


WHY_NOT = _cannot_build_wheel()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, **kwargs)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_wheel_install_finds_bundled_eval_outside_the_checkout(tmp_path):
    # Build from a copy of what the wheel is made of: an in-tree build would write build/ and *.egg-info into
    # the shared checkout. Nothing else from the checkout (data/, tests/) reaches the wheel this way either.
    src = tmp_path / "src"
    shutil.copytree(REPO / "edgekit", src / "edgekit", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", src, "-w", tmp_path / "dist")
    wheel = next((tmp_path / "dist").glob("edgekit-*.whl"))

    # A bare venv that gets only the wheel; this venv's dependencies come through a .pth line, which adds the
    # folder to sys.path without running that folder's own .pth files (so not this venv's editable edgekit).
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    parents = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "parent_venv.pth").write_text("".join(f"{p}\n" for p in parents))
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env[NO_SYSTEM_DATASETS_ENV] = "1"  # the bundled fallback, even where Debian's dataset-fashion-mnist exists
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = Path(run(python, "-c", "import edgekit; print(edgekit.__file__)", cwd=elsewhere, env=env).stdout.strip())
    assert found.is_relative_to(site), f"edgekit imported from {found}, not from the wheel in {site}"
    bundled = site / "edgekit" / "bundled" / "fashion_mnist_eval.npz"
    assert bundled.is_file(), "the eval subset is package data"

    result = run(venv / "bin" / "edgekit", "quantize", REPO / "models" / "fashion_resnet.pt2",
                 "--calib", REPO / "calibration", "--eval", "fashion-mnist:test", "--mean", "0.286", "--std", "0.353",
                 "--calib-size", "32", "--workdir", "ws", cwd=elsewhere, env=env)
    report = json.loads((elsewhere / "ws" / "quantize.json").read_text())
    assert report["eval"]["source"].startswith(f"{bundled} (bundled subset"), report["eval"]
    assert report["eval"]["images"] == 2000 and report["eval"]["labelled"]
    assert report["fp32"]["top1"] > 0.9, "the shipped teacher on the shipped test images"
    # Not a TTY: each progress bar is one summary line, not hundreds of redraws.
    assert "\r" not in result.stderr
