"""Students ranked by measured int8 latency on a target, against the teacher, in one interleaved run.

MACs do not predict latency at small inputs: at 28-32 px and batch 1 a network of many small ops (depthwise convs,
squeeze-excitation, hard-swish) pays per-op overhead that a teacher of fewer, larger convolutions does not, and a
student chosen by MACs alone came out slower than its teacher (issue 14). So each candidate is built the way the
pipeline builds it and timed in the target's own runtime:

    candidate (the teacher as loaded; a student untrained, its BatchNorm statistics set by forward passes on the
    calibration images, so activations have realistic ranges) -> model.fp32.onnx (export.py) -> calibration.json
    (calibration.py, minmax on a few images: ranges do not change speed) -> model.int8.onnx (qdq_build.py) ->
    the target's compile (Target.compile, a throw-away workspace) -> the int8 artifact of the chosen pair,
    opened as the target opens it (Target.runner)

then every int8 runner is timed in the same run (board/timing.py's interleaved rounds: round-robin over all
candidates, the order reversed every other round), batch 1, fixed threads, so the ratios survive a busy machine.
The speed-up of a student is teacher p50 / student p50, with the distribution-free 95 % interval of its per-round
ratios (timing_stats.py). Random weights suffice: the ops, shapes and int8 kernels are what cost time.

A target spec is "name" (its main pair) or "name:pair" for another pair the target lists (arm:tflite, the .tflite
int8 in LiteRT + XNNPACK). A shared module: the stages (distillation) use it; it uses the Target interface only.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .board.timing import interleaved_latency, load_between, load_snapshot, summarize
from .data import ImageSet, Preprocess
from .errors import EdgekitError
from .export import INPUT_NAME, example_batch, export_onnx, fixed_batch
from .model import LoadedModel
from .progress import track
from .timing_stats import median_interval, round_medians, round_ratios
from .workspace import write_json_atomic

TEACHER = "teacher"  # the teacher's key in the timings; no student may carry this name
CALIB_IMAGES = 8  # minmax ranges from a handful of images: enough for the graph, speed does not depend on them
BN_BATCHES = 4  # forward passes in train mode that set an untrained student's BatchNorm statistics
RUNS, WARMUP, WARMUP_SECONDS = 100, 10, 0.3  # per candidate; interleaved rounds of board.timing.ROUND calls


@dataclass(frozen=True)
class Requirement:
    """What a student must reach on every timed target: a speed-up over the teacher and/or a p50 budget (ms)."""

    speedup: float | None = None
    budget_ms: float | None = None

    def __post_init__(self) -> None:
        if self.speedup is not None and self.speedup <= 0:
            raise EdgekitError(f"--speedup must be positive, got {self.speedup:g}", "e.g. --speedup 2")
        if self.budget_ms is not None and self.budget_ms <= 0:
            raise EdgekitError(f"--budget-ms must be positive, got {self.budget_ms:g}", "e.g. --budget-ms 0.5")

    @property
    def given(self) -> bool:
        return self.speedup is not None or self.budget_ms is not None

    def describe(self) -> str:
        parts = ([f">= {self.speedup:g}x the teacher's speed"] if self.speedup is not None else []) + (
            [f"p50 <= {self.budget_ms:g} ms"] if self.budget_ms is not None else [])
        return " and ".join(parts) or "none"

    def to_dict(self) -> dict:
        return {"speedup": self.speedup, "budget_ms": self.budget_ms}


def parse_targets(spec: str | None) -> list[tuple[str, str]]:
    """"openvino", "arm:tflite", "openvino,arm:tflite" -> [(target, pair)], pair "main" unless named."""
    from .targets import get_target

    if not spec:
        return []
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name, _, pair = item.partition(":")
        if name == "all":
            raise EdgekitError("--target all is not a timing target", "name the target(s): e.g. --target openvino")
        get_target(name)  # unknown: did-you-mean
        out.append((name, pair or "main"))
    if not out:
        raise EdgekitError(f"--target {spec!r} names no target", "e.g. --target openvino")
    return out


def noise_images(pre: Preprocess, n: int, seed: int = 0) -> ImageSet:
    """`n` uniform-noise images at the input size: what calibration and BatchNorm see when no real images are given."""
    rng = np.random.default_rng(seed)
    shape = (pre.height, pre.width) if pre.channels == 1 else (pre.height, pre.width, pre.channels)
    return ImageSet([rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)], None, None, "noise")


def student_as_model(module, name: str, shape: tuple[int, int, int], x: np.ndarray) -> LoadedModel:
    """An untrained student as a LoadedModel: BatchNorm statistics set from `x` (N, C, H, W), then eval mode."""
    import torch

    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the passes below
    module.train()
    with torch.no_grad():
        for chunk in np.array_split(x, min(BN_BATCHES, len(x) // 2 or 1)):
            module(torch.from_numpy(np.ascontiguousarray(chunk)))
    for m in bns:
        m.momentum = 0.1
    module.eval()
    return LoadedModel(module, None, "student", Path(name), "", (2, *shape), shape[0])


def _compile_candidate(tgt, loaded: LoadedModel, folder: Path, pre: Preprocess, images: ImageSet, x: np.ndarray,
                       num_classes: int, source: dict | None, arch: str | None, pair: str) -> tuple[Path, list[str]]:
    """Build `loaded` for `tgt` in a throw-away workspace `folder` (as quantize + compile would): (its target dir,
    the target's notes)."""
    from .calibration import calibrate
    from .qdq_build import quantize_qdq
    from .targets import CompileContext

    folder.mkdir(parents=True)
    fp32 = folder / "model.fp32.onnx"
    # Exporters and toolkits print, and calibration shows progress: one bar over all candidates says enough.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        n = example_batch(loaded, None)  # 2, or the batch a teacher's file fixes
        export_onnx(loaded, np.concatenate([x] * -(-n // len(x)))[:n], fp32)
        cal = calibrate(fp32, images, pre, "minmax")
        write_json_atomic(folder / "calibration.json", cal.to_dict())
        quantize_qdq(fp32, folder / "model.int8.onnx", cal)
        manifest = {"source": source or {}, "input": {"name": INPUT_NAME, "shape": [fixed_batch(fp32), *x.shape[1:]],
                                                     "num_classes": num_classes},
                    "outputs": None, "preprocess": pre.to_dict(), "float_layers": [],
                    "stages": {"quantize": {"options": {"arch": arch}}}}
        write_json_atomic(folder / "manifest.json", manifest)
        out_dir = folder / "targets" / tgt.name
        out_dir.mkdir(parents=True)
        # "tflite": whether a pair beyond the main one is wanted (the arm target's optional .tflite, slow to convert).
        options = {"device": "CPU", "batch": 1, "tflite": pair == "tflite"}
        result = tgt.compile(CompileContext(folder, out_dir, manifest, pre, images, options, lambda *_: None, []))
    return out_dir, result.notes


def _open_pair(tgt, target_dir: Path, pair: str, threads: int, what: str, notes: list[str]):
    pairs = {p.name: p for p in tgt.pairs(target_dir)}
    if pair not in pairs:
        why = "; ".join(notes) or "its compile wrote none"
        raise EdgekitError(f"the {tgt.name} target built no {pair!r} pair for {what} (it has: {', '.join(pairs)}): {why}",
                           f"time its main pair: --target {tgt.name}")
    p = pairs[pair]
    return tgt.runner(target_dir, p.int8, threads, {"device": "CPU"}), p


def time_candidates(candidates: dict[str, LoadedModel], targets: list[tuple[str, str]], pre: Preprocess,
                    num_classes: int, images: ImageSet | None = None, *, threads: int = 0, runs: int = RUNS,
                    warmup: int = WARMUP, warmup_seconds: float = WARMUP_SECONDS, arch: str | None = None,
                    log=print) -> dict:
    """Int8 latency of every candidate on each (target, pair), all candidates timed in one interleaved run per target.

    candidates: name -> model, the teacher under TEACHER (if any), students as `student_as_model` returns them.
    images: calibration images (default: noise). arch: the teacher's --arch, for a target that reloads its source.
    Returns {"targets": [{"target", "pair", "runtime", "threads", "runs", "load", "latency_ms": {name: summary},
    "p50_interval_ms": {name: [lo, hi]}, "speedup": {student: x}, "speedup_interval": {student: [lo, hi]}}]}.
    """
    from .targets import get_target

    for name, pair in targets:
        reason = get_target(name).available()
        if reason:
            raise EdgekitError(f"target {name} is not available here: {reason}", get_target(name).install)
    images = images if images is not None and len(images) else noise_images(pre, CALIB_IMAGES)
    images = images.sample(CALIB_IMAGES, 0)
    x = np.stack([images.load(i % len(images), pre) for i in range(max(2, len(images)))])
    one = x[:1]
    threads = threads or os.cpu_count() or 1
    results, sources = [], {}
    with tempfile.TemporaryDirectory(prefix="edgekit-students-") as tmp:
        for name, pair in targets:
            tgt = get_target(name)
            runners, runtime = {}, None
            for key, loaded in track(list(candidates.items()), f"building int8 for {name}", "model"):
                if key not in sources:  # what the manifest records as the source model: a target may convert it
                    sources[key] = (_save_student(loaded, Path(tmp) / f"{key}.pt2", x[:2])
                                    if loaded.format == "student" else loaded.describe())
                source = sources[key]
                folder = Path(tmp) / f"{name}-{pair}" / key
                target_dir, notes = _compile_candidate(tgt, loaded, folder, pre, images, x, num_classes, source,
                                                       arch if key == TEACHER else None, pair)
                runners[key], p = _open_pair(tgt, target_dir, pair, threads, key, notes)
                runtime = runners[key].runtime
            log(f"{name}: timing {len(runners)} int8 models, batch 1, {threads} thread(s), {runs} calls each, "
                f"interleaved ({runtime})")
            before = load_snapshot()
            times = interleaved_latency(runners, one, runs, warmup, warmup_seconds)
            load = load_between(before, load_snapshot())
            entry = {"target": name, "pair": pair, "runtime": runtime, "artifact": p.files["int8"], "batch": 1,
                     "threads": threads, "runs": runs, "method": "interleaved rounds in one run", "load": load,
                     "latency_ms": {k: summarize(v) for k, v in times.items()},
                     "p50_interval_ms": {k: median_interval(round_medians(v)) for k, v in times.items()},
                     "speedup": {}, "speedup_interval": {}}
            if TEACHER in times:
                t50 = entry["latency_ms"][TEACHER]["p50"]
                for k in (k for k in times if k != TEACHER):
                    entry["speedup"][k] = t50 / entry["latency_ms"][k]["p50"]
                    entry["speedup_interval"][k] = median_interval(
                        round_ratios({"int8": times[k], "reference": times[TEACHER]}))
            results.append(entry)
            del runners
            shutil.rmtree(Path(tmp) / f"{name}-{pair}", ignore_errors=True)
    return {"targets": results}


def _save_student(loaded: LoadedModel, path: Path, example: np.ndarray) -> dict:
    """The student as an ExportedProgram file, described as a manifest's "source" (what quantize records)."""
    import torch

    from .model import sha256_of

    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(loaded.module, (torch.from_numpy(example),), dynamic_shapes=({0: batch},))
    torch.export.save(program, path)
    return {"path": str(path), "sha256": sha256_of(path), "format": "exported_program"}


def meets(timing: dict, name: str, requirement: Requirement) -> bool | None:
    """Whether student `name` meets the requirement on every timed target (None: no requirement)."""
    if not requirement.given:
        return None
    for entry in timing["targets"]:
        if name not in entry["latency_ms"]:
            return False
        if requirement.speedup is not None and entry["speedup"].get(name, 0.0) < requirement.speedup:
            return False
        if requirement.budget_ms is not None and entry["latency_ms"][name]["p50"] > requirement.budget_ms:
            return False
    return True


def choose(rows: list[dict], timing: dict, requirement: Requirement) -> dict | None:
    """The largest student (most MACs, then parameters) that meets the requirement on every target, or None.

    rows: the students as student_registry.describe gives them (name, params, macs, fits)."""
    fitting = [r for r in rows if r["fits"] and meets(timing, r["name"], requirement)]
    return max(fitting, key=lambda r: (r["macs"], r["params"]), default=None)


def annotate(rows: list[dict], timing: dict, requirement: Requirement) -> list[dict]:
    """Each student row with its p50, speed-up (and interval) per target and whether it meets the requirement."""
    out = []
    for r in rows:
        r = dict(r)
        r["latency"] = {}
        for e in timing["targets"]:
            if r["name"] in e["latency_ms"]:
                r["latency"][spec(e)] = {"p50_ms": e["latency_ms"][r["name"]]["p50"],
                                         "speedup": e["speedup"].get(r["name"]),
                                         "speedup_interval": e["speedup_interval"].get(r["name"])}
        r["meets"] = meets(timing, r["name"], requirement) if r["fits"] else False if requirement.given else None
        out.append(r)
    return out


def rank_students(names: list[str], teacher: LoadedModel | None, pre: Preprocess, num_classes: int,
                  targets: list[tuple[str, str]], requirement: Requirement, images: ImageSet | None = None, *,
                  threads: int = 0, runs: int = RUNS, arch: str | None = None, log=print) -> dict:
    """The students `names` (and the teacher) built for each target and timed int8 in one interleaved run per
    target; which meet `requirement`, and the largest that does. Students that do not fit the input are listed,
    not timed. Returns {"requirement", "teacher": {target: p50 ms}, "students": rows (student_registry.describe +
    "latency" per target + "meets"), "chosen": name or None, "timing": time_candidates' result}."""
    import torch

    from .student_registry import create_student, describe

    if requirement.speedup is not None and teacher is None:
        raise EdgekitError("--speedup is a speed-up over the teacher, and no teacher was given",
                           "pass --teacher MODEL, or a latency budget with --budget-ms")
    shape = (pre.channels, pre.height, pre.width)
    rows = describe(names, pre.channels, num_classes, (pre.height, pre.width))
    fitting = [r["name"] for r in rows if r["fits"]]
    if not fitting:
        raise EdgekitError(f"no student fits {pre.height}x{pre.width} inputs", "see `edgekit students` for the list")
    images = images if images is not None and len(images) else noise_images(pre, CALIB_IMAGES)
    sample = images.sample(CALIB_IMAGES, 0)
    x = np.stack([sample.load(i % len(sample), pre) for i in range(max(2, len(sample)))])
    candidates: dict[str, LoadedModel] = {TEACHER: teacher} if teacher is not None else {}
    state = torch.random.get_rng_state()
    for name in fitting:
        torch.manual_seed(0)  # random weights: the same ones every run
        module = create_student(name, pre.channels, num_classes, (pre.height, pre.width))
        candidates[name] = student_as_model(module, name, shape, x)
    torch.random.set_rng_state(state)  # timing leaves the caller's random stream as it was
    timing = time_candidates(candidates, targets, pre, num_classes, sample, threads=threads, runs=runs, arch=arch,
                             log=log)
    rows = annotate(rows, timing, requirement)
    chosen = choose(rows, timing, requirement)
    return {"requirement": requirement.to_dict(),
            "teacher": {spec(e): e["latency_ms"][TEACHER]["p50"] for e in timing["targets"]} if teacher else None,
            "students": rows, "chosen": chosen["name"] if chosen else None, "timing": timing}


def spec(entry: dict) -> str:
    """"openvino" or "arm:tflite": how a timed (target, pair) is named on the command line and in tables."""
    return entry["target"] + ("" if entry["pair"] == "main" else f":{entry['pair']}")


def shortfall(ranking: dict) -> str:
    """Why no student met the requirement, in one line: the fastest one's figures on each target."""
    timed = [r for r in ranking["students"] if r["latency"]]
    best = min(timed, key=lambda r: max(v["p50_ms"] for v in r["latency"].values()))
    figures = ", ".join(f"{t} p50 {v['p50_ms']:.3f} ms" + (f" ({v['speedup']:.2f}x the teacher)" if v["speedup"] else "")
                        for t, v in best["latency"].items())
    return f"the fastest, {best['name']}, runs {figures}"
