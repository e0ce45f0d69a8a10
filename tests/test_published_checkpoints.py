"""Published checkpoints load as published: the CIFAR-10 ResNet-20 (akamaster/pytorch_resnet_cifar10, BSD-2-Clause),
saved by an older torch in the legacy (non-zip) format, as a dict with `state_dict` and `module.`-prefixed keys."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli import main
from edgekit.model import detect_format, load_model
from tests.conftest import REPO

SHARED = REPO.parent / "shared" / "data"
RESNET20 = SHARED / "resnet-cifar10" / "resnet20.th"
CIFAR_TEST = SHARED / "cifar10" / "cifar10-test-jpg.tar.gz"
NEEDS_DATA = pytest.mark.skipif(not (RESNET20.is_file() and CIFAR_TEST.is_file()),
                                reason="needs ../shared/data (resnet-cifar10/resnet20.th, cifar10/*.tar.gz)")
IMAGENET_MEAN, IMAGENET_STD = "0.485,0.456,0.406", "0.229,0.224,0.225"


@pytest.fixture(scope="module")
def cifar_subset(tmp_path_factory) -> Path:
    """The first 30 test JPEGs of each class, in class folders (class order = sorted names = CIFAR-10's order)."""
    root = tmp_path_factory.mktemp("cifar")
    taken: dict[str, int] = {}
    with tarfile.open(CIFAR_TEST) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 2 or taken.get(parts[-2], 0) >= 30:
                continue
            taken[parts[-2]] = taken.get(parts[-2], 0) + 1
            (root / parts[-2]).mkdir(exist_ok=True)
            (root / parts[-2] / parts[-1]).write_bytes(tar.extractfile(member).read())
    assert len(taken) == 10
    return root


@NEEDS_DATA
def test_legacy_checkpoint_of_plain_weights_loads_without_trust_pickle():
    assert detect_format(RESNET20) == "legacy_pickle"
    loaded = load_model(RESNET20, arch="edgekit.zoo.cifar_resnet:resnet20")  # no trust_pickle: only weights
    assert loaded.format == "state_dict" and sum(p.numel() for p in loaded.module.parameters()) == 269_722


@NEEDS_DATA
def test_resnet20_as_published_quantizes_and_classifies_cifar(cifar_subset, tmp_path):
    result = CliRunner().invoke(main, [
        "quantize", str(RESNET20), "--arch", "edgekit.zoo.cifar_resnet:resnet20", "--calib", str(cifar_subset),
        "--eval", str(cifar_subset), "--mean", IMAGENET_MEAN, "--std", IMAGENET_STD, "--workdir", str(tmp_path / "ws"),
        "--calib-size", "100", "--json"])
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.stdout)
    # 91.7 % on the original PNGs; these JPEGs were re-encoded (about quality 75), which costs it ~10 points
    assert 0.7 <= report["fp32"]["top1"] <= 0.95, report["fp32"]
    assert report["int8"]["agreement"] >= 0.95


def test_a_pickled_module_is_still_refused(tmp_path, trained_tiny):
    import torch

    torch.save(trained_tiny, tmp_path / "m.pt")
    result = CliRunner().invoke(main, ["quantize", str(tmp_path / "m.pt"), "--calib", str(tmp_path),
                                       "--workdir", str(tmp_path / "ws")])
    assert result.exit_code == 2 and "--trust-pickle" in result.stderr
