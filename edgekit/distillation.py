"""The distill stage: a trained teacher + images -> a small student (.pt2) that mimics it, measured against it.

    load teacher -> settle input and preprocessing (as quantize does) -> build the student for that input
    and the teacher's classes -> all images into memory once, preprocessed -> train (training.py)
    -> export the student as an ExportedProgram with a dynamic batch -> compare teacher and student
    (distill_report.py) -> distill.json next to the student (or in --workdir)

Every check on the inputs runs before the first write, so bad input leaves every file as it was. The
student file is what `edgekit quantize` takes, with the same --mean/--std: it goes through
quantize -> compile -> bench like any model.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from . import distill_defaults as defaults
from . import student_timing
from .data import ImageSet, Preprocess, open_images
from .distill_report import compare
from .errors import EdgekitError
from .export import torch_outputs
from .inputspec import ModelInputs, parse_size, resolve_preprocess
from .kd import soft_target_stats
from .macs import count_macs
from .progress import track
from .model import LoadedModel, count_params, load_model
from .student_registry import create_student, describe, get_student, list_students
from .training import TrainOptions, check_run, init_distributed, load_checkpoint, share_from_main, train
from .workspace import check_labels, write_json_atomic

HELD_OUT_FRACTION = 0.1  # of --data, for the teacher/student comparison when no --eval is given
REPORT, CHECKPOINT = "distill.json", "distill.ckpt"


def distill(
    teacher: str | Path,
    data: str | Path,
    *,
    student: str | None = None,
    epochs: int = defaults.EPOCHS,
    temperature: float = defaults.TEMPERATURE,
    alpha: float = defaults.ALPHA,
    resume: bool = False,
    out: str | Path = "student.pt2",
    eval: str | Path | None = None,  # noqa: A002 - mirrors the CLI's --eval
    workdir: str | Path | None = None,
    inputs: ModelInputs | None = None,
    batch: int = defaults.BATCH,
    lr: float = defaults.LR,
    seed: int = 0,
    augment: bool = True,
    target: str | None = None,
    speedup: float | None = None,
    budget_ms: float | None = None,
    bf16: bool = False,
    log=print,
) -> dict | None:
    """Knowledge distillation: train a small MobileNet-style `student` to mimic a trained `teacher`.

    teacher: the trained model (any format quantize takes; `inputs` says how to load it and read its input).
    data: training images (class sub-folders or an .npz with labels give labels; unlabelled works with alpha 1).
    student: a name from `edgekit students` (default mobilenetv3_small_100), or with a requirement a pattern of names
    to choose from. target, speedup, budget_ms: choose the student by measured int8 latency: every student (matching
    `student` if it is a pattern) and the teacher are built int8 for `target` ("openvino", "arm", "arm:tflite", or a
    comma list) and timed in one interleaved run; the largest (most MACs) that is `speedup` times faster than the
    teacher and/or has a p50 within `budget_ms` on every target is distilled (a plain `student` name is used as it
    is and only checked); the choice and its timing go to distill.json.
    epochs, lr (peak, SGD with warm-up + cosine), batch (per process under torchrun), seed, augment (random crop +
    flip), bf16 (train under CPU bf16 autocast: about 2x faster where the CPU has AMX/AVX512-BF16; the student is
    exported fp32). temperature, alpha: the soft-target loss and its weight (1 - alpha
    goes to the labels). resume: continue from the last checkpoint of the same run.
    out: the student as an ExportedProgram (.pt2) that `edgekit quantize` loads. eval: images for teacher vs student
    (default: a held-out 10 % of data). workdir: folder for distill.json and the checkpoint (default: out's folder).

    Returns the distill.json content (None on torchrun ranks other than 0).
    """
    import torch

    inputs = inputs or ModelInputs()

    opts = TrainOptions(epochs, batch, lr, defaults.WEIGHT_DECAY, temperature, alpha, augment, seed, bf16)
    requirement = student_timing.Requirement(speedup, budget_ms)
    targets = student_timing.parse_targets(target)
    student, pattern = student_request(student, requirement, targets)  # an unknown name fails before any loading
    dist = init_distributed()
    log = log if dist.main else (lambda *_: None)
    out = Path(out)
    report_dir = Path(workdir) if workdir is not None else out.parent

    loaded = load_model(teacher, arch=inputs.arch, trust_pickle=inputs.trust_pickle)
    if out.resolve() == loaded.path.resolve():
        raise EdgekitError(f"--out {out} is the teacher's own file", "write the student elsewhere, e.g. --out student.pt2")
    data_set = open_images(data, "data")
    eval_set = open_images(eval, "eval") if eval is not None else None
    pre, notes = resolve_preprocess(loaded, data_set, inputs)
    # Two images: a batch of one would let torch.export specialize the batch dimension to 1.
    example = np.stack([data_set.load(i % len(data_set), pre) for i in range(2)])
    num_classes = class_count(loaded, example)
    check_labels(data_set, num_classes, "--data", "teacher")
    if alpha == 0 and data_set.labels is None:
        raise EdgekitError("--alpha 0 trains on labels alone, but the --data images have none",
                           "use class sub-folders or an .npz with labels, or raise --alpha")
    if eval_set is None:
        data_set, eval_set = data_set.split(HELD_OUT_FRACTION, seed)
        eval_label = f"held-out {len(eval_set)} of the --data images (no --eval)"
    else:
        eval_label = f"{eval_set.source} ({len(eval_set)} images)"
    check_labels(eval_set, num_classes, "--eval", "teacher")
    if len(data_set) < 2:
        raise EdgekitError(f"--data leaves {len(data_set)} image for training",
                           "give it more images (thousands, realistically)")
    checkpoint = report_dir / CHECKPOINT
    # Read on rank 0 and handed to the others: on several machines only rank 0's has the checkpoint it wrote. It is
    # read before the student is settled: a resumed run keeps the student it chose by latency.
    previous = share_from_main(dist, lambda: load_checkpoint(checkpoint, {})) if resume else None
    where = ",".join(name if pair == "main" else f"{name}:{pair}" for name, pair in targets)
    selection = {"pattern": pattern, "targets": where, **requirement.to_dict()} if requirement.given else None
    choice = None
    if selection is not None:
        if previous is not None:
            check_run(checkpoint, previous, {"student_selection": selection})  # before timing anything
            choice = previous["run"]["student_choice"]
            log(f"student: {choice['chosen']}, chosen by int8 latency when this run started")
        else:
            choice = share_from_main(dist, lambda: choose_by_latency(
                pattern, loaded, pre, num_classes, data_set, targets, requirement, inputs, log))
        student = choice["chosen"]
    torch.manual_seed(seed)  # the student's initial weights
    model = create_student(student, pre.channels, num_classes, (pre.height, pre.width))
    # What a checkpoint must match to be resumed: the same student, teacher, data and options.
    run = json.loads(json.dumps({"student": student, "teacher_sha256": loaded.sha256, "data_images": len(data_set),
                                 "preprocess": pre.to_dict(), "world_size": dist.world, **opts.to_dict(),
                                 **({"student_selection": selection, "student_choice": choice} if selection else {})}))
    state = check_run(checkpoint, previous, run) if resume else None

    objective = describe_objective(opts, data_set.labels is not None)
    log(f"teacher: {loaded.path} ({loaded.format.replace('_', ' ')}, {count_params(loaded.module):,} parameters,"
        f" {num_classes} classes)")
    log(f"input: {pre.describe()}")
    for note in notes:
        log(f"  note: {note}")
    log(f"student: {student} ({count_params(model):,} parameters); {objective}")
    log(f"data: {len(data_set)} images from {data}; eval: {eval_label}")
    if dist.world > 1:
        log(f"distributed: {dist.world} processes (torchrun), gloo")

    x = torch.from_numpy(load_pixels(data_set, pre, "data", dist.main))
    labels = torch.tensor(data_set.labels) if data_set.labels is not None else None
    targets = None if alpha == 0 else check_soft_targets(loaded.module, x, temperature, log)
    t0 = time.perf_counter()
    history = train(model, None if alpha == 0 else loaded.module, x, labels, black_pixel(pre), opts, dist,
                    checkpoint, run, state, log)
    wall = time.perf_counter() - t0
    if not dist.main:
        return None

    export_student(model, example, out)
    log(f"wrote {out}; comparing teacher and student on the eval images")
    x_eval = load_pixels(eval_set, pre, "eval", True)
    labels_eval = np.asarray(eval_set.labels) if eval_set.labels is not None else None
    report = compare(loaded, out, x_eval, labels_eval)
    report["teacher"].update(loaded.describe())
    report["student"].update({"name": student, "path": str(out), "family": get_student(student).family})
    report["eval"] = {"source": eval_label, "images": len(eval_set), "labelled": labels_eval is not None}
    report["preprocess"] = pre.to_dict()
    if choice is not None:
        report["student_choice"] = choice
    report["training"] = {
        "objective": objective, "soft_targets": targets, "options": opts.to_dict(), "data": str(data),
        "images": len(data_set),
        "epochs_run": len(history), "resumed_after_epoch": state["epoch"] if state else None,
        "seconds": round(sum(h["seconds"] for h in history), 2), "wall_seconds_this_run": round(wall, 2),
        "world_size": dist.world, "checkpoint": str(checkpoint), "history": history,
    }
    write_json_atomic(report_dir / REPORT, report)
    return report


def check_soft_targets(teacher, x, temperature: float, log, sample: int = 256) -> dict:
    """The softened teacher on `sample` training images spread over the set (kd.soft_target_stats; folders are read
    class by class), logged, with a warning when it is nearly uniform: then KD teaches almost nothing, and a lower
    temperature is the cure."""
    import torch

    with torch.no_grad():
        stats = soft_target_stats(teacher(x[:: max(1, len(x) // sample)][:sample]), temperature)
    log(f"soft targets at T={temperature:g}: mean top probability {stats['mean_top_probability']:.2f}, entropy "
        f"{100 * stats['entropy_share']:.0f} % of the maximum")
    if stats["flat"]:
        log(f"  warning: the teacher's soft targets at T={temperature:g} are almost uniform, so KD passes on little; "
            f"a teacher trained with label smoothing (or otherwise unsure) wants a lower --temperature, e.g. 1 or 2")
    return stats


def student_request(student: str | None, requirement: student_timing.Requirement,
                    targets: list) -> tuple[str | None, str | None]:
    """(the student's name, or None when it is to be chosen by latency; the pattern it is chosen from)."""
    if requirement.given and not targets:
        raise EdgekitError("--speedup / --budget-ms are measured on a target, and none was given",
                           "add --target openvino (or arm, arm:tflite)")
    if targets and not requirement.given:
        raise EdgekitError("--target chooses the student by latency, and no requirement was given",
                           "add --speedup 2 (over the teacher) or --budget-ms X, or drop --target")
    if student is None:
        return (None, "*") if requirement.given else (defaults.STUDENT, None)
    if any(c in student for c in "*?[,"):
        if not requirement.given:
            raise EdgekitError(f"--student {student!r} is a pattern, and nothing says which of its students to take",
                               "name one student, or choose by latency: --target openvino --speedup 2")
        if not list_students(student):
            raise EdgekitError(f"no student matches {student!r}", f"registered: {', '.join(list_students())}")
        return None, student
    get_student(student)
    return student, student if requirement.given else None


def choose_by_latency(pattern: str, teacher: LoadedModel, pre: Preprocess, num_classes: int, images: ImageSet,
                      targets: list, requirement: student_timing.Requirement, inputs: ModelInputs, log) -> dict:
    """The students matching `pattern` and the teacher timed int8 on `targets` (student_timing.py), and the largest
    that meets the requirement: what distill.json records under "student_choice". A plain name is the one
    candidate and is taken even when it misses (with a warning); a pattern none of whose students meets it is
    an error."""
    names = list_students(pattern)
    ranking = student_timing.rank_students(names, teacher, pre, num_classes, targets, requirement, images,
                                           arch=inputs.arch, log=log)
    where = ", ".join(student_timing.spec(e) for e in ranking["timing"]["targets"])
    chosen = ranking["chosen"]
    if chosen is None and pattern in names and len(names) == 1:  # --student NAME: it wins, checked only
        chosen = pattern
        log(f"  warning: {pattern} does not meet {requirement.describe()} on {where}: "
            f"{student_timing.shortfall(ranking)}; distilling it as --student asks")
    elif chosen is None:
        raise EdgekitError(f"no student matching {pattern!r} meets {requirement.describe()} on {where}: "
                           f"{student_timing.shortfall(ranking)}",
                           "lower --speedup or raise --budget-ms; `edgekit students --target ... --teacher ...` "
                           "shows the whole table")
    row = next(r for r in ranking["students"] if r["name"] == chosen)
    figures = ", ".join(f"{t} p50 {v['p50_ms']:.3f} ms" + (f", {v['speedup']:.2f}x the teacher" if v["speedup"] else "")
                        for t, v in row["latency"].items())
    meeting = sum(bool(r["meets"]) for r in ranking["students"])
    log(f"student: {chosen} by measured int8 latency ({figures}): the largest of {meeting} of "
        f"{len(ranking['students'])} students meeting {requirement.describe()}")
    return {"chosen": chosen, "pattern": pattern, "targets": [student_timing.spec(e) for e in ranking["timing"]["targets"]],
            "requirement": ranking["requirement"], "rule": "the largest student (most MACs) that meets the requirement "
            "on every target; a student named with --student is taken as it is",
            "meets": bool(row["meets"]), "teacher_p50_ms": ranking["teacher"],
            "students": ranking["students"], "timing": ranking["timing"]["targets"]}


def describe_objective(opts: TrainOptions, labelled: bool) -> str:
    if opts.alpha == 0:
        return "labels only (cross-entropy, no teacher)"
    if not labelled:
        return f"teacher soft targets only (KD, T={opts.temperature:g}; the data has no labels)"
    return f"KD, T={opts.temperature:g}: {opts.alpha:g} x soft targets + {1 - opts.alpha:g} x cross-entropy"


def class_count(teacher: LoadedModel, example: np.ndarray) -> int:
    """The teacher's number of classes; an error unless it returns (N, classes) logits with classes >= 2."""
    outputs = torch_outputs(teacher, example)
    if len(outputs.shapes) != 1 or len(outputs.shapes[0]) != 1:
        shapes = ", ".join(f"{n} {s}" for n, s in zip(outputs.names, outputs.shapes))
        raise EdgekitError(f"the teacher returns {shapes} per image, not one vector of class logits",
                           "distillation trains a classifier student: give a teacher that returns (N, classes)")
    classes = outputs.shapes[0][0]
    if classes < 2:
        raise EdgekitError(f"the teacher outputs {classes} value per image, not class logits",
                           "distillation needs a classifier with at least 2 classes")
    return classes


def load_pixels(images: ImageSet, pre: Preprocess, what: str, show: bool) -> np.ndarray:
    """Every image preprocessed once into one (N, C, H, W) float32 array: augmentation then works on tensors."""
    pixels = np.empty((len(images), pre.channels, pre.height, pre.width), np.float32)
    for i in track(range(len(images)), f"loading {what}", "img", enabled=show):
        pixels[i] = images.load(i, pre)
    return pixels


def black_pixel(pre: Preprocess):
    """(C,) the normalized value of a 0 pixel: what random-crop padding fills with (torchvision's fill=0)."""
    import torch

    mean = np.broadcast_to(np.asarray(pre.mean, np.float32), (pre.channels,))
    std = np.broadcast_to(np.asarray(pre.std, np.float32), (pre.channels,))
    return torch.from_numpy(-mean / std)


def export_student(model, example: np.ndarray, out: Path) -> None:
    """The trained student as an ExportedProgram with a dynamic batch (loads without unpickling); atomic."""
    import torch

    model.eval().to(memory_format=torch.contiguous_format)  # the layout every runtime expects by default
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (torch.from_numpy(example),), dynamic_shapes=({0: batch},))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial.pt2")
    torch.export.save(program, tmp)
    os.replace(tmp, out)


def student_overview(pattern: str = "*", *, teacher: str | Path | None = None, inputs: ModelInputs | None = None,
                     classes: int | None = None, target: str | None = None, speedup: float | None = None,
                     budget_ms: float | None = None, threads: int = 0, runs: int = student_timing.RUNS,
                     log=print) -> dict:
    """The registered students matching `pattern`, with params and MACs at the teacher's input (or the given one:
    inputs.size and inputs.channels, and `classes`).

    target: also build each student (random weights) and the teacher int8 for this target ("openvino", "arm",
    "arm:tflite" for arm's .tflite in LiteRT + XNNPACK, or a comma list) and time them all in one interleaved run
    (batch 1, `threads` threads, 0: all cores; `runs` calls each): p50, speed-up over the teacher with its 95 %
    interval. speedup / budget_ms: the requirement (on every target); the overview then says which students meet
    it and names the largest (most MACs) that does under "chosen"."""
    inputs = inputs or ModelInputs()
    size, channels = inputs.size, inputs.channels
    requirement = student_timing.Requirement(speedup, budget_ms)
    targets = student_timing.parse_targets(target)
    if requirement.given and not targets:
        raise EdgekitError("--speedup / --budget-ms are measured on a target, and none was given",
                           "add --target openvino (or arm, arm:tflite)")
    names = list_students(pattern)
    if not names and not any(c in pattern for c in "*?[,"):
        get_student(pattern)  # a plain name: unknown, with a did-you-mean
    if not names:
        raise EdgekitError(f"no student matches {pattern!r}", f"registered: {', '.join(list_students())}")
    teacher_info, loaded = None, None
    if teacher is None:
        hw, c, k = parse_size(size) or (224, 224), channels or 3, classes or 1000
    else:
        loaded = load_model(teacher, arch=inputs.arch, trust_pickle=inputs.trust_pickle)
        shape = loaded.input_shape
        recorded = tuple(shape[2:]) if shape and min(shape[2:]) > 0 else None
        hw = parse_size(size) or recorded
        if hw is None:
            raise EdgekitError(f"{teacher} does not record its input size", "pass --size, e.g. --size 224")
        c = (shape[1] if shape and shape[1] > 0 else None) or loaded.channels or channels or 3
        k = class_count(loaded, np.zeros((2, c, *hw), np.float32))
        teacher_info = {"path": str(loaded.path), "params": count_params(loaded.module),
                        "macs": count_macs(loaded.module, (c, *hw))}
    overview = {"input": [c, hw[0], hw[1]], "classes": k, "teacher": teacher_info,
                "students": describe(names, c, k, hw)}
    if targets:
        pre = Preprocess(hw[0], hw[1], c, (0.0,), (1.0,))  # noise images; the normalization does not change speed
        ranking = student_timing.rank_students(names, loaded, pre, k, targets, requirement, threads=threads,
                                               runs=runs, arch=inputs.arch, log=log)
        overview.update({"students": ranking["students"], "requirement": ranking["requirement"],
                         "chosen": ranking["chosen"], "timing": ranking["timing"]})
        if teacher_info:
            teacher_info["latency"] = ranking["teacher"]
    return overview
