"""Input sanity: a pipeline whose preprocessing is wrong must not pass its gates quietly."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from edgekit.cli import main
from tests.conftest import CALIB_DIR, fashion_arrays, save_model, write_pngs


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture(scope="module")
def model(tmp_path_factory, trained_tiny):
    return save_model(trained_tiny, "exported_program", tmp_path_factory.mktemp("m") / "tiny.pt2",
                      torch.zeros(2, 1, 28, 28))


def test_mean_std_on_the_0_255_scale_is_refused_with_the_fix(model, calib_small, tmp_path):
    result = invoke("quantize", model, "--calib", calib_small, "--workdir", tmp_path / "ws",
                    "--mean", "123.7", "--std", "58.4")
    assert result.exit_code == 2 and "0..255 pixel scale" in result.stderr
    assert "--mean 0.4851 --std 0.229" in result.stderr and "--pixel-range 255" in result.stderr
    assert not (tmp_path / "ws").exists()


def test_pixel_range_255_takes_them_as_written(model, calib_small, tmp_path):
    result = invoke("quantize", model, "--calib", calib_small, "--workdir", tmp_path / "ws", "--method", "minmax",
                    "--mean", f"{0.286 * 255}", "--std", f"{0.353 * 255}", "--pixel-range", "255", "--json")
    assert result.exit_code == 0, result.output
    pre = json.loads(result.stdout)["preprocess"]
    assert pre["mean"] == [pytest.approx(0.286)] and pre["std"] == [pytest.approx(0.353)]


@pytest.fixture(scope="module")
def mislabelled(tmp_path_factory):
    """Real Fashion-MNIST images whose class folders are named so that sorted order shifts every label by one."""
    images, labels = fashion_arrays(300)
    classes = [f"class_{(i + 1) % 10}" for i in range(10)]  # image of class c lands in folder "class_{c+1}"
    return write_pngs(tmp_path_factory.mktemp("mislabelled") / "eval", images, labels, classes)


def test_chance_level_top1_warns_loudly_and_strict_refuses(model, calib_small, mislabelled, tmp_path):
    args = ["quantize", model, "--calib", calib_small, "--eval", mislabelled, "--mean", "0.286", "--std", "0.353",
            "--method", "minmax"]
    warned = invoke(*args, "--workdir", tmp_path / "a", "--json")
    assert warned.exit_code == 0, warned.output
    assert "WARNING: the fp32 model's own top-1 is" in warned.stderr and "label order" in warned.stderr
    report = json.loads(warned.stdout)
    assert report["fp32"]["top1"] <= 0.15 and any("about chance" in w for w in report["warnings"])
    refused = invoke(*args, "--workdir", tmp_path / "b", "--strict")
    assert refused.exit_code == 2 and "about chance for 10 classes" in refused.stderr
    assert not (tmp_path / "b").exists()


def test_a_correct_pipeline_does_not_warn(quantized_workspace):
    report = json.loads((quantized_workspace / "quantize.json").read_text())
    assert report["fp32"]["top1"] > 0.3 and not any("about chance" in w for w in report["warnings"])


def test_conversions_are_said_once_with_counts(model, tmp_path):
    """Colour and odd-sized images fed to a 1-channel 28x28 model: each conversion is named, with how many."""
    from PIL import Image

    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, png in enumerate(sorted(CALIB_DIR.rglob("*.png"))[:12]):
        img = Image.open(png)
        if i < 5:
            img = img.convert("RGBA").resize((40, 36))  # colour with alpha, another size
        img.save(folder / f"{i:02d}.png")
    result = invoke("quantize", model, "--calib", folder, "--workdir", tmp_path / "ws", "--mean", "0.286",
                    "--std", "0.353", "--method", "minmax", "--json")
    assert result.exit_code == 0, result.output
    conv = json.loads(result.stdout)["input_conversions"]
    said = " | ".join(conv["calibration"] + conv["eval"])
    total = sum(int(n.split(" of ")[0]) for n in conv["calibration"] + conv["eval"] if "alpha" in n)
    assert total == 5, said  # every RGBA image counted once, across the calibration/held-out split
    assert "converted to greyscale" in said and "not 28x28 (36x40" in said
    assert result.stderr.count("alpha channel") == len([n for n in conv["calibration"] + conv["eval"] if "alpha" in n])
    shutil.rmtree(folder)
