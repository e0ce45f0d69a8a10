"""Image loading and preprocessing: folders, arrays, labels, skipping, sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekit.data import Preprocess, open_images
from edgekit.datasets import read_idx
from edgekit.errors import EdgekitError
from tests.conftest import write_pngs


def test_class_folders_give_imagefolder_labels(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (6, 10, 10), dtype=np.uint8)
    write_pngs(tmp_path, imgs, np.array([2, 0, 1, 2, 0, 1]), ["zebra", "ant", "moth"])
    s = open_images(tmp_path, "eval")
    assert s.classes == ("ant", "moth", "zebra")  # sorted folder names
    assert sorted(s.labels) == [0, 0, 1, 1, 2, 2]
    assert all(s.classes[label] == path.parent.name for path, label in zip(s.items, s.labels))


def test_flat_folder_has_no_labels_and_skips_junk(tmp_path):
    write_pngs(tmp_path, np.zeros((3, 8, 8), np.uint8))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    s = open_images(tmp_path, "calibration")
    assert len(s) == 3 and s.labels is None
    assert len(s.skipped) == 2


def test_recursive_mixed_formats(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (12, 9), "red").save(tmp_path / "a" / "x.jpg")
    Image.new("L", (12, 9)).save(tmp_path / "a" / "b" / "y.bmp")
    Image.new("RGB", (12, 9)).save(tmp_path / "z.webp")
    s = open_images(tmp_path, "calibration")
    assert len(s) == 3 and s.labels is None  # nesting is uneven: no class labels


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw", "float"])
def test_array_files(tmp_path, layout):
    base = np.random.default_rng(0).integers(0, 255, (5, 16, 16), dtype=np.uint8)
    arr = {"nhw": base, "nhwc": base[..., None].repeat(3, -1), "nchw": base[:, None].repeat(3, 1),
           "float": base.astype(np.float32) / 255}[layout]
    np.savez(tmp_path / "d.npz", images=arr, labels=np.arange(5))
    s = open_images(tmp_path / "d.npz", "eval")
    pre = Preprocess(16, 16, 1, (0.0,), (1.0,))
    assert s.labels == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(s.load(2, pre)[0], base[2] / 255, atol=1 / 255 + 1e-6)


def test_preprocess_resize_crop_and_normalize():
    img = Image.fromarray(np.full((40, 80, 3), 255, np.uint8))
    pre = Preprocess(32, 32, 3, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    x = pre.apply_pil(img)
    assert x.shape == (3, 32, 32)
    np.testing.assert_allclose(x[:, 0, 0], [2.0, 1.0, 0.5], rtol=1e-6)  # (1 - 0.5) / std


def test_sampling_is_seeded(tmp_path):
    write_pngs(tmp_path, np.zeros((20, 4, 4), np.uint8))
    s = open_images(tmp_path, "calibration")
    assert [p.name for p in s.sample(5, 1).items] == [p.name for p in s.sample(5, 1).items]
    assert [p.name for p in s.sample(5, 1).items] != [p.name for p in s.sample(5, 2).items]
    assert len(s.sample(100, 0)) == 20


def test_empty_and_imageless_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgekitError, match="empty"):
        open_images(tmp_path / "empty", "calibration")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(EdgekitError, match="no usable images .*1 unreadable"):
        open_images(tmp_path / "junk", "calibration")


def test_idx_reader_rejects_truncation(tmp_path):
    header = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + (2).to_bytes(4, "big")
    (tmp_path / "ok").write_bytes(header + bytes(8))
    assert read_idx(tmp_path / "ok").shape == (2, 2, 2)
    (tmp_path / "short").write_bytes(header + bytes(5))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")


def _cifar_tar(folder: Path, split: str, classes=("cat", "airplane", "dog")) -> None:
    """A tiny cifar10-<split>-jpg.tar.gz: two 32x32 JPEGs per class folder, as the shared tars hold them."""
    import io
    import tarfile

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / f"cifar10-{split}-jpg.tar.gz", "w:gz") as tar:
        for c_i, c in enumerate(classes):
            for k in range(2):
                buf = io.BytesIO()
                Image.new("RGB", (32, 32), (40 * c_i, 10 * k, 0)).save(buf, "JPEG")
                info = tarfile.TarInfo(f"cifar10/{split}/{c}/{k:04d}.jpg")
                info.size = len(buf.getvalue())
                tar.addfile(info, io.BytesIO(buf.getvalue()))


def test_cifar10_named_sets_read_the_tars_in_class_order(tmp_path, monkeypatch):
    _cifar_tar(tmp_path, "train")
    monkeypatch.setenv("EDGEKIT_CIFAR10_DIR", str(tmp_path))
    images = open_images("cifar10:train", "data")
    assert images.classes == ("airplane", "cat", "dog")  # sorted folder names: CIFAR-10's own label order
    assert images.labels == [0, 0, 1, 1, 2, 2]
    assert images.load(2, Preprocess(32, 32, 3, (0.0,) * 3, (1.0,) * 3)).shape == (3, 32, 32)


def test_cifar10_test_falls_back_to_the_bundled_subset_and_train_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CIFAR10_DIR", str(tmp_path))  # no tars there
    images = open_images("cifar10:test", "eval")
    assert len(images) == 2000 and "bundled" in images.source and sorted(set(images.labels)) == list(range(10))
    with pytest.raises(EdgekitError, match="cifar10-train-jpg.tar.gz.*EDGEKIT_CIFAR10_DIR"):
        open_images("cifar10:train", "data")
