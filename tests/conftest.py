"""Shared fixtures: tiny models in every format, image folders, and a quantized workspace.

Models are trained for a few steps on real Fashion-MNIST images from the repository so accuracy figures
mean something, and kept tiny so the whole suite stays fast on two cores.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgekit.datasets import BUNDLED_FASHION_EVAL
from edgekit.inputspec import ModelInputs
from tests.models import TinyCNN

REPO = Path(__file__).resolve().parent.parent
CALIB_DIR = REPO / "calibration"
EVAL_NPZ = BUNDLED_FASHION_EVAL  # edgekit/bundled/: shipped in the wheel as package data


def fashion_arrays(n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    with np.load(EVAL_NPZ) as z:
        return z["images"][:n], z["labels"][:n].astype(np.int64)


def fashion_train_eval_npz(folder, n_train: int, n_eval: int):
    """(train.npz, eval.npz) in `folder`: the first n_train bundled Fashion-MNIST images, then the next n_eval."""
    images, labels = fashion_arrays(n_train + n_eval)
    np.savez(folder / "train.npz", images=images[:n_train], labels=labels[:n_train])
    np.savez(folder / "eval.npz", images=images[n_train:], labels=labels[n_train:])
    return folder / "train.npz", folder / "eval.npz"


def train_tiny(model: TinyCNN, channels: int, size: int, steps: int = 150) -> TinyCNN:
    """A few Adam steps on real images so the model's logits are not noise (~50 % top-1 on 10 classes)."""
    images, labels = fashion_arrays(600)
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - 0.286) / 0.353
    if channels == 3:
        x = x.repeat(1, 3, 1, 1)
    y = torch.from_numpy(labels)
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(x), (64,))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def trained_tiny() -> TinyCNN:
    torch.manual_seed(0)  # the initial weights too: the result must not depend on which tests ran first
    return train_tiny(TinyCNN(1, 10), 1, 28)


def save_model(model: torch.nn.Module, fmt: str, path: Path, example: torch.Tensor) -> Path:
    """Write `model` in one of the four formats edgekit loads."""
    model = model.eval()
    if fmt == "torchscript":
        torch.jit.save(torch.jit.trace(model, example), str(path))
    elif fmt == "exported_program":
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.export.save(torch.export.export(model, (example,), dynamic_shapes=({0: batch},)), str(path))
    elif fmt == "state_dict":
        torch.save(model.state_dict(), str(path))
    elif fmt == "pickled_module":
        torch.save(model, str(path))
    else:
        raise ValueError(fmt)
    return path


@pytest.fixture(scope="session")
def calib_small(tmp_path_factory) -> Path:
    """40 real calibration PNGs (4 per class) in class sub-folders."""
    root = tmp_path_factory.mktemp("calib")
    for class_dir in sorted(CALIB_DIR.iterdir()):
        (root / class_dir.name).mkdir()
        for png in sorted(class_dir.glob("*.png"))[:4]:
            shutil.copy(png, root / class_dir.name / png.name)
    return root


@pytest.fixture(scope="session")
def eval_npz_small(tmp_path_factory) -> Path:
    images, labels = fashion_arrays(300)
    path = tmp_path_factory.mktemp("eval") / "eval.npz"
    np.savez(path, images=images, labels=labels)
    return path


def write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray | None = None, classes=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        sub = folder if labels is None else folder / classes[labels[i]]
        sub.mkdir(exist_ok=True)
        Image.fromarray(img).save(sub / f"{i:04d}.png")
    return folder


@pytest.fixture(scope="session")
def quantized_workspace(tmp_path_factory, trained_tiny, calib_small, eval_npz_small) -> Path:
    """A workspace after `edgekit quantize` on the tiny trained model: what compile/bench start from."""
    from edgekit.quantization import quantize

    root = tmp_path_factory.mktemp("ws")
    model_path = save_model(trained_tiny, "exported_program", root / "tiny.pt2", torch.zeros(2, 1, 28, 28))
    quantize(model_path, calib_small, eval=eval_npz_small, workdir=root / "out", inputs=ModelInputs(mean="0.286", std="0.353"),
             method="minmax", log=lambda *_: None)
    return root / "out"


def compile_all(ws: Path, quantized: Path) -> Path:
    """A private copy of a quantized workspace, compiled for every target: what bench starts from."""
    from click.testing import CliRunner

    from edgekit.cli import main

    shutil.copytree(quantized, ws)
    result = CliRunner().invoke(main, ["compile", "--target", "all", "--workdir", str(ws)])
    assert result.exit_code == 0, result.output
    return ws


@pytest.fixture(scope="session")
def mnv3_workspace(tmp_path_factory, calib_small, eval_npz_small):
    """`edgekit quantize` on a briefly trained mobilenetv3_small_050 (hard-swish, SE gates, 28x28x1)."""
    from edgekit.quantization import quantize
    from edgekit.student_registry import create_student

    root = tmp_path_factory.mktemp("mnv3")
    torch.manual_seed(0)
    student = train_tiny(create_student("mobilenetv3_small_050", 1, 10, (28, 28)), 1, 28, steps=60)
    path = save_model(student, "exported_program", root / "mnv3.pt2", torch.zeros(2, 1, 28, 28))
    quantize(path, calib_small, eval=eval_npz_small, workdir=root / "ws", inputs=ModelInputs(mean="0.286", std="0.353"),
             method="minmax", log=lambda *_: None)
    return root / "ws"
