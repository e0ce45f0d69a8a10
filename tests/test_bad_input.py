"""Bad input: one line on stderr saying what and what to do, exit code 2, no traceback, workspace untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgekit.cli import main
from edgekit.workspace import LOCK_FILE
from tests.conftest import save_model, write_pngs
from tests.models import TinyCNN


def snapshot(folder):
    """Every file and its mtime, but the writer lock's file: a refused writer still took (and released) the lock."""
    if not folder.exists():
        return None
    return sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.name != LOCK_FILE)


def assert_bad_input(args, ws, *needles):
    before = snapshot(ws)
    result = CliRunner().invoke(main, list(map(str, args)))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.output
    # Progress lines may come first; the error itself is one line, the last.
    err = lines[-1]
    assert err.startswith("edgekit: error: "), result.stderr
    assert sum("error" in line for line in lines) == 1, result.stderr
    for needle in needles:
        assert needle in err, err
    assert snapshot(ws) == before, "a failed run must leave the workspace as it was"
    return err


@pytest.fixture()
def ep_model(tmp_path, trained_tiny):
    return save_model(trained_tiny, "exported_program", tmp_path / "m.pt2", torch.zeros(2, 1, 28, 28))


@pytest.fixture()
def existing_ws(tmp_path, ep_model, calib_small):
    """A workspace from an earlier good run: a failed run must not touch it."""
    ws = tmp_path / "ws"
    result = CliRunner().invoke(main, ["quantize", str(ep_model), "--calib", str(calib_small), "--workdir", str(ws),
                                       "--calib-size", "8"])
    assert result.exit_code == 0, result.output
    return ws


def test_missing_model(tmp_path, calib_small, existing_ws):
    assert_bad_input(["quantize", tmp_path / "nope.pt", "--calib", calib_small, "--workdir", existing_ws],
                     existing_ws, "does not exist")


def test_garbage_model(tmp_path, calib_small, existing_ws):
    (tmp_path / "garbage.pt").write_bytes(b"this is not a model at all")
    assert_bad_input(["quantize", tmp_path / "garbage.pt", "--calib", calib_small, "--workdir", existing_ws],
                     existing_ws, "not a PyTorch model file")


@pytest.mark.parametrize("fmt", ["exported_program", "state_dict", "torchscript"])
def test_truncated_model(fmt, tmp_path, trained_tiny, calib_small, existing_ws):
    path = save_model(trained_tiny, fmt, tmp_path / "full.pt", torch.zeros(2, 1, 28, 28))
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    err = assert_bad_input(["quantize", tmp_path / "cut.pt", "--calib", calib_small, "--workdir", existing_ws,
                            "--arch", "tests.models:tiny_cnn"], existing_ws)
    assert "truncated" in err or "corrupt" in err


def test_pickled_module_refused_without_trust(tmp_path, trained_tiny, calib_small, existing_ws):
    path = save_model(trained_tiny, "pickled_module", tmp_path / "m.pt", torch.zeros(2, 1, 28, 28))
    assert_bad_input(["quantize", path, "--calib", calib_small, "--workdir", existing_ws],
                     existing_ws, "arbitrary code", "--trust-pickle")


@pytest.mark.parametrize("arch,needle", [
    (None, "--arch"),
    ("tests.models:nope", "has no attribute 'nope'"),
    ("no_such_pkg.models:f", "module 'no_such_pkg' not found"),
    ("tests.models:tiny_cnn_rgb", "do not fit --arch"),
    ("tests.models:not_a_module", "not an nn.Module"),
    ("tests.models", "package.module:factory"),
])
def test_wrong_arch(arch, needle, tmp_path, trained_tiny, calib_small, existing_ws):
    path = save_model(trained_tiny, "state_dict", tmp_path / "sd.pt", torch.zeros(2, 1, 28, 28))
    args = ["quantize", path, "--calib", calib_small, "--workdir", existing_ws]
    assert_bad_input(args + (["--arch", arch] if arch else []), existing_ws, needle)


def test_empty_calibration_folder(tmp_path, ep_model, existing_ws):
    (tmp_path / "empty").mkdir()
    assert_bad_input(["quantize", ep_model, "--calib", tmp_path / "empty", "--workdir", existing_ws],
                     existing_ws, "is empty")


def test_folder_without_images(tmp_path, ep_model, existing_ws):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no images here")
    (tmp_path / "docs" / "fake.jpg").write_bytes(b"not a jpeg")
    assert_bad_input(["quantize", ep_model, "--calib", tmp_path / "docs", "--workdir", existing_ws],
                     existing_ws, "no usable images", "2 unreadable")


def test_mismatched_channels(ep_model, calib_small, existing_ws):
    assert_bad_input(["quantize", ep_model, "--calib", calib_small, "--workdir", existing_ws, "--channels", "3"],
                     existing_ws, "3 channel(s)", "takes 1")


def test_mismatched_input_shape(tmp_path, trained_tiny, calib_small, existing_ws):
    path = save_model(trained_tiny, "torchscript", tmp_path / "ts.pt", torch.zeros(2, 1, 28, 28))
    # TorchScript does not record its channels in the shape, but its first conv does.
    assert_bad_input(["quantize", path, "--calib", calib_small, "--workdir", existing_ws,
                      "--input-shape", "1,3,28,28"], existing_ws, "takes 1")


def test_size_contradicts_exported_program(ep_model, calib_small, existing_ws):
    assert_bad_input(["quantize", ep_model, "--calib", calib_small, "--workdir", existing_ws, "--size", "32"],
                     existing_ws, "exported for 28x28")


class FlattenFixed(torch.nn.Module):
    """Works only at 28x28: the linear layer's size is tied to it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(28 * 28, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_model_rejects_input_size(tmp_path, calib_small, existing_ws):
    torch.save(FlattenFixed(), tmp_path / "fixed.pt")
    assert_bad_input(["quantize", tmp_path / "fixed.pt", "--trust-pickle", "--calib", calib_small, "--workdir",
                      existing_ws, "--size", "32", "--channels", "1"], existing_ws,
                     "rejected an input of shape (2, 1, 32, 32)")


@torch.library.custom_op("edgekit_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@mystery.register_fake
def _(x):
    return torch.empty_like(x)


class UsesCustomOp(TinyCNN):
    def forward(self, x):
        return super().forward(torch.ops.edgekit_test.mystery(x))


def uses_custom_op():
    return UsesCustomOp(1, 10)


def test_model_that_cannot_export_names_the_op(tmp_path, calib_small, existing_ws):
    torch.save(UsesCustomOp(1, 10).state_dict(), tmp_path / "sd.pt")
    assert_bad_input(["quantize", tmp_path / "sd.pt", "--arch", "tests.test_bad_input:uses_custom_op",
                      "--calib", calib_small, "--workdir", existing_ws], existing_ws,
                     "cannot be exported to ONNX", "edgekit_test.mystery")


class ArgmaxModel(torch.nn.Module):
    """Returns class ids, not scores: no int8 fidelity can be measured on them, and no target should carry them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)

    def forward(self, x):
        return self.conv(x).flatten(1).argmax(1, keepdim=True)


def test_integer_output_is_refused(tmp_path, calib_small, existing_ws):
    # Dense maps, tuples and dicts are accepted (tests/test_outputs.py); integer outputs are bad input.
    torch.save(ArgmaxModel(), tmp_path / "argmax.pt")
    assert_bad_input(["quantize", tmp_path / "argmax.pt", "--trust-pickle", "--calib", calib_small, "--workdir",
                      existing_ws], existing_ws, "take argmax/indices outside the model")


def test_eval_classes_do_not_match(tmp_path, ep_model, calib_small, existing_ws):
    imgs = np.zeros((3, 28, 28), np.uint8)
    write_pngs(tmp_path / "ev", imgs, np.array([0, 1, 2]), ["a", "b", "c"])
    assert_bad_input(["quantize", ep_model, "--calib", calib_small, "--eval", tmp_path / "ev", "--workdir",
                      existing_ws], existing_ws, "3 classes but the model outputs 10")


def test_foreign_workspace_is_refused(tmp_path, ep_model, calib_small):
    ws = tmp_path / "foreign"
    ws.mkdir()
    (ws / "manifest.json").write_text('{"schema": 99}')
    assert_bad_input(["quantize", ep_model, "--calib", calib_small, "--workdir", ws], ws, "schema 99")


def test_debug_shows_traceback(tmp_path, calib_small):
    result = CliRunner().invoke(main, ["--debug", "quantize", str(tmp_path / "nope.pt"), "--calib", str(calib_small)])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


def test_failed_first_run_leaves_no_workspace(tmp_path, calib_small):
    """The export fails inside the stage, after the workspace folder was made: it must go again."""
    torch.save(UsesCustomOp(1, 10).state_dict(), tmp_path / "sd.pt")
    ws = tmp_path / "fresh"
    assert_bad_input(["quantize", tmp_path / "sd.pt", "--arch", "tests.test_bad_input:uses_custom_op",
                      "--calib", calib_small, "--workdir", ws], ws, "cannot be exported")
    assert not ws.exists()
