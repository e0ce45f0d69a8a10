"""Labelled data as users hold it: partial class coverage, integer class folders, wnid/name folders through a
classes file, a labels file (JSON, CSV, the shared ImageNet sample's labels.json form); unmappable sets refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from edgekit.cli import main
from edgekit.data import open_images
from edgekit.errors import EdgekitError
from tests.conftest import fashion_arrays, save_model, write_pngs

NAMES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    """120 real Fashion-MNIST images of the EVEN classes only (partial coverage), flat, with their labels."""
    images, labels = fashion_arrays(300)
    keep = [i for i in range(len(labels)) if labels[i] % 2 == 0][:120]
    folder = write_pngs(tmp_path_factory.mktemp("flat") / "eval", images[keep])
    return folder, [int(labels[i]) for i in keep]


def by_class_folder(root, pngs, name_of):
    folder, labels = pngs
    for i, png in enumerate(sorted(folder.glob("*.png"))):
        (root / name_of(labels[i])).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, root / name_of(labels[i]) / png.name)
    return root


def test_integer_class_folders_give_their_index_even_with_classes_missing(pngs, tmp_path):
    root = by_class_folder(tmp_path / "int", pngs, lambda c: f"{c:04d}")
    images = open_images(root, "eval")
    assert sorted(set(images.labels)) == [0, 2, 4, 6, 8] and images.classes is None
    folder, labels = pngs
    truth = {p.name: l for p, l in zip(sorted(folder.glob("*.png")), labels)}
    assert {p.name: l for p, l in zip(images.items, images.labels)} == truth  # each image keeps its own class
    assert "class index" in images.mapping


def test_name_folders_through_a_classes_file(pngs, tmp_path):
    root = by_class_folder(tmp_path / "named", pngs, lambda c: NAMES[c])
    (tmp_path / "classes.txt").write_text("\n".join(NAMES) + "\n")
    images = open_images(root, "eval", classes=tmp_path / "classes.txt")
    by_name = {p.name: l for p, l in zip(images.items, images.labels)}
    folder, labels = pngs
    assert by_name == {p.name: l for p, l in zip(sorted(folder.glob("*.png")), labels)}
    # Without the classes file, the five folders would be read as classes 0..4: the wrong labels, silently
    assert open_images(root, "eval").labels != images.labels


@pytest.mark.parametrize("form", ["json", "json-nested", "csv", "csv-names"])
def test_a_labels_file_in_each_form(pngs, tmp_path, form):
    folder, labels = pngs
    files = sorted(p.name for p in folder.glob("*.png"))
    classes = None
    if form == "json":
        (path := tmp_path / "labels.json").write_text(json.dumps(dict(zip(files, labels))))
    elif form == "json-nested":  # as ../shared/data/imagenet-sample/labels.json is written
        (path := tmp_path / "labels.json").write_text(json.dumps({"class_index_is": "x", "labels": dict(zip(files, labels))}))
    elif form == "csv":
        (path := tmp_path / "labels.csv").write_text("file,label\n" + "".join(f"{f},{l}\n" for f, l in zip(files, labels)))
    else:
        (path := tmp_path / "labels.csv").write_text("".join(f"{f},{NAMES[l]}\n" for f, l in zip(files, labels)))
        (classes := tmp_path / "classes.json").write_text(json.dumps(NAMES))
    images = open_images(folder, "eval", labels=path, classes=classes)
    assert images.labels == labels and images.classes is None


def test_unmappable_sets_are_refused_with_the_reason(pngs, tmp_path):
    folder, labels = pngs
    files = sorted(p.name for p in folder.glob("*.png"))
    (partial := tmp_path / "partial.json").write_text(json.dumps(dict(zip(files[:10], labels[:10]))))
    with pytest.raises(EdgekitError, match="has no label for 110 of 120 images"):
        open_images(folder, "eval", labels=partial)
    (names := tmp_path / "names.csv").write_text("".join(f"{f},{NAMES[l]}\n" for f, l in zip(files, labels)))
    with pytest.raises(EdgekitError, match="no --classes file says its index"):
        open_images(folder, "eval", labels=names)
    root = by_class_folder(tmp_path / "named", pngs, lambda c: NAMES[c] + "_x")
    (tmp_path / "classes.txt").write_text("\n".join(NAMES))
    with pytest.raises(EdgekitError, match="not in the --classes file"):
        open_images(root, "eval", classes=tmp_path / "classes.txt")


def test_quantize_with_a_labels_file_records_the_mapping_and_bench_reuses_it(pngs, trained_tiny, calib_small, tmp_path):
    folder, labels = pngs
    files = sorted(p.name for p in folder.glob("*.png"))
    (path := tmp_path / "labels.json").write_text(json.dumps({"labels": dict(zip(files, labels))}))
    model = save_model(trained_tiny, "exported_program", tmp_path / "m.pt2", torch.zeros(2, 1, 28, 28))
    result = invoke("quantize", model, "--calib", calib_small, "--eval", folder, "--labels", path, "--mean", "0.286",
                    "--std", "0.353", "--method", "minmax", "--workdir", tmp_path / "ws", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["eval"]["labelled"] and report["fp32"]["top1"] > 0.3  # real labels: well above chance
    manifest = json.loads((tmp_path / "ws" / "manifest.json").read_text())
    assert manifest["eval_data"]["labels"] == str(path) and manifest["eval_data"]["label_mapping"] == "--labels labels.json"
    from edgekit.workspace import workspace_images

    assert workspace_images(manifest)[1].labels == labels  # later stages rebuild the same labels


def test_labels_without_eval_is_bad_input(trained_tiny, calib_small, tmp_path):
    (path := tmp_path / "l.json").write_text("{}")
    model = save_model(trained_tiny, "exported_program", tmp_path / "m.pt2", torch.zeros(2, 1, 28, 28))
    result = invoke("quantize", model, "--calib", calib_small, "--labels", path, "--workdir", tmp_path / "ws")
    assert result.exit_code == 2 and "there is no --eval" in result.stderr
