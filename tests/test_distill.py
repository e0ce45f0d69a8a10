"""`edgekit distill` and `edgekit students`: a short real run, resume, the loss, and bad input.

The bundled teacher is distilled on 256 real Fashion-MNIST images for four short epochs into a small student:
too short to be accurate, long enough to show the loss falling and to exercise every file the stage writes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import edgekit.distill_report
import edgekit.distillation
import edgekit.student_registry
import edgekit.training
from edgekit.cli import main
from edgekit.kd import kd_loss
from tests.conftest import REPO, fashion_arrays, fashion_train_eval_npz, save_model
from tests.models import TinyCNN

TEACHER = REPO / "models" / "fashion_resnet.pt2"
STUDENT = "resnet_s_050"  # few ops: quick to train, export and quantize
NORM = ["--mean", "0.286", "--std", "0.353"]


def run_cli(*args, **kwargs):
    return CliRunner().invoke(main, list(map(str, args)), **kwargs)


def distill_args(data, eval_npz, out, *extra):
    return ["distill", "--teacher", TEACHER, "--data", data, "--eval", eval_npz, "--student", STUDENT,
            "--epochs", "4", "--batch", "16", "--out", out, *NORM, *extra]


@pytest.fixture(scope="module", autouse=True)
def quick_latency():
    """The latency comparison is measured, not asserted here: a few timed calls are enough."""
    mp = pytest.MonkeyPatch()
    mp.setattr(edgekit.distill_report, "LATENCY_RUNS", 10)
    mp.setattr(edgekit.distill_report, "LATENCY_WARMUP_SECONDS", 0.0)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def data_npz(tmp_path_factory):
    return fashion_train_eval_npz(tmp_path_factory.mktemp("distill-data"), 256, 256)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, data_npz):
    """One uninterrupted four-epoch run through the CLI: (output folder, distill.json)."""
    folder = tmp_path_factory.mktemp("distilled")
    result = run_cli(*distill_args(*data_npz, folder / "student.pt2"), "--json")
    assert result.exit_code == 0, result.output
    return folder, json.loads(result.stdout)


def test_distill_writes_a_student_that_learned(distilled):
    folder, report = distilled
    history = report["training"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < 0.8 * history[0]["loss"], "the distillation loss must fall"
    assert json.loads((folder / "distill.json").read_text()) == report
    assert (folder / "distill.ckpt").is_file()
    teacher, student = report["teacher"], report["student"]
    assert teacher["top1"] > 0.9, "the bundled teacher on real test images"
    # Recomputed in torch from the student file written and the teacher, on the eval images (images[256:512]);
    # ONNX Runtime (what distill measures with) may flip the argmax of one near-tie image.
    images, labels = fashion_arrays(512)
    x = (torch.from_numpy(images[256:]).float().div(255).unsqueeze(1) - 0.286) / 0.353
    student_net, teacher_net = (torch.export.load(str(p)).module() for p in (folder / "student.pt2", TEACHER))
    with torch.no_grad():
        s_pred, t_pred = student_net(x).argmax(1).numpy(), teacher_net(x).argmax(1).numpy()
    assert student["top1"] == pytest.approx(np.mean(s_pred == labels[256:]), abs=1.01 / len(x))
    assert student["agreement"] == pytest.approx(np.mean(s_pred == t_pred), abs=1.01 / len(x))
    assert report["macs_ratio"] > 5 and student["macs"] < teacher["macs"]
    assert student["params"] == sum(p.numel() for p in student_net.parameters())
    assert report["speedup"] == pytest.approx(teacher["latency_ms"]["p50"] / student["latency_ms"]["p50"])
    assert report["latency"]["threads"] == 2 and report["latency"]["batch"] == 1
    assert report["training"]["objective"].startswith("KD, T=4")


def test_student_goes_through_quantize(distilled, calib_small, tmp_path):
    folder, _ = distilled
    ws = tmp_path / "ws"
    result = run_cli("quantize", folder / "student.pt2", "--calib", calib_small, "--workdir", ws, "--calib-size", "16",
                     "--method", "minmax", *NORM, "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((ws / "manifest.json").read_text())
    assert manifest["source"]["format"] == "exported_program"
    assert manifest["input"]["shape"] == [None, 1, 28, 28], "dynamic batch, the teacher's input"


def test_resume_continues_exactly(distilled, data_npz, tmp_path, monkeypatch):
    """Interrupted after epoch 1, then --resume: the same weights as the uninterrupted run."""
    # The export and the teacher/student comparison are tested above; skipping them here saves three exports.
    monkeypatch.setattr(edgekit.distillation, "export_student", lambda *_: None)
    monkeypatch.setattr(edgekit.distillation, "compare", lambda *_: {"teacher": {}, "student": {}})
    real_save = edgekit.training.save_checkpoint

    def save_then_interrupt(path, state):
        real_save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(edgekit.training, "save_checkpoint", save_then_interrupt)
    out = tmp_path / "student.pt2"
    assert run_cli(*distill_args(*data_npz, out)).exit_code == 130
    assert not out.exists(), "no student before training has finished"
    monkeypatch.setattr(edgekit.training, "save_checkpoint", real_save)
    result = run_cli(*distill_args(*data_npz, out, "--resume"), "--json")
    assert result.exit_code == 0, result.output
    assert "resuming after epoch 1 of 4" in result.stderr
    resumed = torch.load(tmp_path / "distill.ckpt", weights_only=True)
    straight = torch.load(distilled[0] / "distill.ckpt", weights_only=True)
    assert resumed["epoch"] == 4
    assert all(torch.equal(resumed["model"][k], v) for k, v in straight["model"].items())
    report = json.loads((tmp_path / "distill.json").read_text())
    assert report["training"]["resumed_after_epoch"] == 1 and report["training"]["epochs_run"] == 4


def test_kd_loss():
    torch.manual_seed(0)
    s, t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    assert kd_loss(t, t, None, 4.0, 0.9).abs() < 1e-6, "a student equal to its teacher has nothing to learn"
    ce = torch.nn.functional.cross_entropy(s, y)
    assert torch.allclose(kd_loss(s, t, y, 4.0, 0.0), ce), "alpha 0: labels only"
    soft = kd_loss(s, t, None, 4.0, 0.9)  # no labels: the soft term alone, alpha does not scale it
    assert torch.allclose(kd_loss(s, t, y, 4.0, 0.9), 0.9 * soft + 0.1 * ce)
    # The T^2 factor keeps the soft gradient's size comparable across temperatures (for large T it tends to a
    # constant); without it the gradient at T=8 would be ~1/16 of that at T=2.
    grads = []
    for temp in (2.0, 8.0):
        s_ = s.clone().requires_grad_()
        kd_loss(s_, t, None, temp, 1.0).backward()
        grads.append(s_.grad.norm())
    assert 0.25 < grads[1] / grads[0] < 4


def test_augment_crops_and_flips_each_image():
    torch.manual_seed(0)
    x = torch.arange(2 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6).repeat(8, 1, 1, 1)  # (16, 1, 6, 6)
    fill = torch.tensor([-1.0])
    out = edgekit.training.augment(x, 2, fill)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)

    def view(i, dy, dx, flip):
        crop = padded[i, :, dy : dy + 6, dx : dx + 6]
        return crop.flip(-1) if flip else crop

    seen = set()
    for i in range(len(x)):
        views = {(dy, dx, flip) for dy in range(5) for dx in range(5) for flip in (False, True)
                 if torch.equal(out[i], view(i, dy, dx, flip))}
        assert views, f"image {i} is not a padded crop (or its mirror) of its input"
        seen |= views
    assert len(seen) > 4, "crops and flips differ from image to image"


def train_on_64(tmp_path, spy, opts):
    """edgekit.training.train of a fresh student on 64 Fashion-MNIST images against a TinyCNN teacher, seen through
    spy(teacher, batch) -> logits; returns (student, history)."""
    images, labels = fashion_arrays(64)
    x = ((torch.from_numpy(images).float() / 255 - 0.286) / 0.353)[:, None]
    teacher = TinyCNN(1, 10).eval()
    torch.manual_seed(0)
    student = edgekit.student_registry.create_student(STUDENT, 1, 10, (28, 28))
    history = edgekit.training.train(student, lambda b: spy(teacher, b), x, torch.from_numpy(labels),
                                     torch.tensor([-0.81]), opts, edgekit.training.Dist(), tmp_path / "c.ckpt", {},
                                     None, lambda *_: None)
    return student, history


def test_no_augment_asks_the_teacher_once(tmp_path):
    """Without augmentation the teacher's logits are cached: one pass over the data, whatever the epochs."""
    calls = []
    opts = edgekit.training.TrainOptions(3, 16, 0.05, 5e-4, 4.0, 0.9, False, 0)
    _, history = train_on_64(tmp_path, lambda teacher, b: calls.append(len(b)) or teacher(b), opts)
    assert len(history) == 3 and sum(calls) == 64


def test_bf16_runs_both_models_under_autocast_and_keeps_fp32_weights(tmp_path):
    """--bf16: the teacher's and the student's forward passes in bfloat16 (AMX), the weights and the loss in fp32."""
    dtypes = []
    opts = edgekit.training.TrainOptions(2, 16, 0.05, 5e-4, 4.0, 0.9, True, 0, bf16=True)
    student, history = train_on_64(tmp_path, lambda teacher, b: dtypes.append(teacher(b).dtype) or teacher(b), opts)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert {p.dtype for p in student.parameters()} == {torch.float32}
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)


def test_students_list(tmp_path):
    result = run_cli("students", "mobilenetv3*", "--teacher", TEACHER, "--json")
    assert result.exit_code == 0, result.output
    overview = json.loads(result.stdout)
    assert overview["input"] == [1, 28, 28] and overview["classes"] == 10
    assert [r["name"] for r in overview["students"]] == ["mobilenetv3_small_050", "mobilenetv3_small_075",
                                                          "mobilenetv3_small_100"]
    assert all(r["macs"] < overview["teacher"]["macs"] for r in overview["students"])
    table = run_cli("students").stdout
    for name in ("mobilenetv2_035", "mobilenetv2_050", "mobilenetv2_075", "mobilenetv2_100", "resnet_s_050",
                 "resnet_s_100", "resnet_s_125", "mbv2_s_050", "mbv2_s_100"):
        assert name in table
    fast = json.loads(run_cli("students", "resnet_s*,mbv2_s*", "--size", "32", "--classes", "10", "--json").stdout)
    assert [r["name"] for r in fast["students"]] == ["resnet_s_050", "resnet_s_075", "resnet_s_100", "resnet_s_125",
                                                     "mbv2_s_050", "mbv2_s_075", "mbv2_s_100"]
    assert all(r["fits"] for r in fast["students"]) and "timing" not in fast, "no --target: sizes only"
    # Bigger with the width, and none at 32 px above the ~1 M parameters / 80 M MACs of a 2x-faster student.
    widths = [r for r in fast["students"] if r["family"] == "resnet_s"]
    assert [r["macs"] for r in widths] == sorted(r["macs"] for r in widths) and widths[-1]["macs"] < 80e6


# Bad input: one line, exit 2, and nothing in the output folder touched.

def snapshot(folder):
    return sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def assert_bad_input(args, folder, *needles):
    (folder / "student.pt2").write_bytes(b"an earlier student")  # must survive the failed run
    (folder / "distill.json").write_text("{}")
    before = snapshot(folder)
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    err = result.stderr.strip().splitlines()[-1]
    assert err.startswith("edgekit: error: ") and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in err, err
    assert snapshot(folder) == before, "a failed run must leave every file as it was"


def test_teacher_without_class_logits(tmp_path, data_npz):
    feature_map = save_model(torch.nn.Conv2d(1, 4, 3), "exported_program", tmp_path / "conv.pt2",
                             torch.zeros(2, 1, 28, 28))
    args = distill_args(*data_npz, tmp_path / "student.pt2")
    args[args.index("--teacher") + 1] = feature_map
    assert_bad_input(args, tmp_path, "not one vector of class logits")


def test_data_folder_without_images(tmp_path, data_npz):
    empty = tmp_path / "data"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    assert_bad_input(distill_args(empty, data_npz[1], tmp_path / "student.pt2"), tmp_path, "no usable images")


def test_unknown_student(tmp_path, data_npz):
    args = distill_args(*data_npz, tmp_path / "student.pt2")
    args[args.index("--student") + 1] = "mobilenetv2_35"
    assert_bad_input(args, tmp_path, "unknown student 'mobilenetv2_35'", "did you mean 'mobilenetv2_035'")


def test_student_too_large_for_the_input(tmp_path, data_npz):
    torch.manual_seed(0)
    small = save_model(TinyCNN(1, 10), "exported_program", tmp_path / "t8.pt2", torch.zeros(2, 1, 8, 8))
    args = distill_args(*data_npz, tmp_path / "student.pt2")
    args[args.index("--teacher") + 1] = small
    assert_bad_input(args, tmp_path, f"student {STUDENT} needs inputs of at least 16x16", "takes 8x8")


def test_corrupt_checkpoint_on_resume(tmp_path, data_npz):
    (tmp_path / "distill.ckpt").write_bytes(b"PK\x03\x04 truncated")
    assert_bad_input(distill_args(*data_npz, tmp_path / "student.pt2", "--resume"), tmp_path,
                     "checkpoint", "is unreadable", "without --resume")


def test_resume_with_other_options(tmp_path, data_npz, distilled):
    (tmp_path / "distill.ckpt").write_bytes((distilled[0] / "distill.ckpt").read_bytes())
    args = distill_args(*data_npz, tmp_path / "student.pt2", "--resume")
    args[args.index("--epochs") + 1] = "5"
    assert_bad_input(args, tmp_path, "written with epochs = 4, this run has 5")


def test_flat_soft_targets_warn(tmp_path, data_npz):
    """A teacher whose softened outputs are nearly uniform at the chosen T gets a warning naming the cure; its
    figures land in distill.json either way."""
    result = run_cli(*distill_args(*data_npz, tmp_path / "s.pt2", "--epochs", "1", "--temperature", "50"), "--json")
    assert result.exit_code == 0, result.output
    assert "almost uniform" in result.stderr and "lower --temperature" in result.stderr
    stats = json.loads(result.stdout)["training"]["soft_targets"]
    assert stats["flat"] and stats["entropy_share"] > 0.9 and stats["temperature"] == 50


def test_soft_target_stats():
    from edgekit.kd import soft_target_stats

    sharp = soft_target_stats(torch.tensor([[10.0, 0, 0, 0]] * 8), 1.0)
    assert sharp["mean_top_probability"] > 0.99 and not sharp["flat"]
    flat = soft_target_stats(torch.tensor([[1.0, 0, 0, 0]] * 8), 10.0)
    assert flat["flat"] and flat["entropy_share"] > 0.99
