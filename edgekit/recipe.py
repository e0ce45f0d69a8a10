"""Recipes: a declarative YAML pipeline validated into dataclasses before anything runs.

No code in YAML: a recipe only names files and values. Unknown keys are rejected with a did-you-mean and
wrong types with the key's path (`bench.gates.max_drop: expected a number, got 'high'`), and every path
is resolved relative to the recipe file and checked to exist, so a typo fails in the first second, not
after calibration.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import distill_defaults
from .errors import EdgekitError


@dataclass
class ModelSpec:
    path: str = ""  # required: the trained model file (or the teacher when distill is on)
    arch: str | None = None
    input_shape: str | None = None
    # No trust_pickle: unpickling runs code from the file, so allowing it is the user's decision on the command line
    # (`edgekit run RECIPE --trust-pickle`), never a value a shared recipe file can carry.


@dataclass
class PreprocessSpec:
    size: str | None = None
    channels: int | None = None
    mean: str | None = None
    std: str | None = None
    resize: int | None = None
    pixel_range: int = 1  # the scale mean/std are written on: 1 (default) or 255


@dataclass
class DataSpec:
    calib: str = ""  # required
    eval: str | None = None
    labels: str | None = None  # labels of the eval images: JSON/CSV, file name -> class index or name
    classes: str | None = None  # the model's class names in output order (text, one per line, or JSON)
    calib_size: int | None = 512
    seed: int = 0


@dataclass
class DistillSpec:
    """The defaults are the stage's own (edgekit/distill_defaults.py)."""

    data: str = ""  # required when distill is given: training images (labelled or not)
    # None: distill_defaults.STUDENT, or with speedup/budget_ms the largest student meeting it (a pattern narrows it)
    student: str | None = None
    epochs: int = distill_defaults.EPOCHS
    temperature: float = distill_defaults.TEMPERATURE
    alpha: float = distill_defaults.ALPHA
    batch: int = distill_defaults.BATCH
    lr: float = distill_defaults.LR
    augment: bool = True
    bf16: bool = False  # train under CPU bf16 autocast (AMX / AVX512-BF16: about 2x faster); the student stays fp32
    resume: bool = False  # continue an interrupted distill from its checkpoint next to `out`
    out: str = "student.pt2"  # inside the workspace unless absolute
    target: str | None = None  # choose the student by int8 latency on this target ("openvino", "arm:tflite", a list)
    speedup: float | None = None  # ... the largest at least this many times faster than the teacher
    budget_ms: float | None = None  # ... and/or with an int8 p50 (batch 1) within this many milliseconds


@dataclass
class QuantizeSpec:
    method: str = "percentile"
    batch: int = 64
    threads: int = 0
    max_drop: float | None = None  # accuracy budget: sensitive layers stay in float until the drop fits
    min_agreement: float | None = None  # and/or this one: % of eval images where int8's top-1 is fp32's
    strict: bool = False  # an fp32 top-1 about chance on labelled eval images is an error, not a warning
    task: str | None = None  # classify | segment | detect | features: what the outputs are (default: their shapes)
    outputs: list[str] | None = None  # ["NAME=ROLE", ...]: one output's role, winning over task


@dataclass
class CompileSpec:
    targets: list[str] = field(default_factory=lambda: ["all"])
    device: str = "CPU"
    batch: int = 1
    threads: int = 0
    openvino_source: str | None = None
    openvino_cpus: str | None = None  # vnni | all: see `edgekit compile --openvino-cpus`
    max_drop: float | None = None  # the same budget, met per target in its own mechanism
    min_agreement: float | None = None


@dataclass
class GatesSpec:
    max_drop: float | None = None
    max_latency_ms: float | None = None
    min_speedup: float | None = None
    min_sqnr: float | None = None  # dB: every output's SQNR against the fp32 reference's
    min_agreement: float | None = None  # %: int8's top-1 is fp32's on at least this share of the eval images


@dataclass
class BenchSpec:
    batch: int = 1
    threads: int | None = None
    runs: int = 200
    warmup: int = 20
    warmup_seconds: float = 1.0
    eval: str | None = None
    labels: str | None = None  # labels of bench.eval's images, as data.labels
    classes: str | None = None  # the model's class names, as data.classes
    remote: str | None = None  # user@host[:port]: bench on the board over ssh
    ssh_key: str | None = None
    remote_python: str | None = None
    strict_timing: bool = False  # an inconclusive latency/speed-up gate (noisy timing) fails instead
    emulate: str | None = None  # arm only: run its int8 artifacts on this emulated aarch64 CPU (e.g. cortex-a76)
    emulate_images: int | None = None  # eval images to run emulated
    gates: GatesSpec = field(default_factory=GatesSpec)


@dataclass
class Recipe:
    model: ModelSpec = field(default_factory=ModelSpec)  # model.path and data.calib are checked after loading,
    data: DataSpec = field(default_factory=DataSpec)  # so a missing one is named, not a TypeError
    workdir: str = "edgekit-out"
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    distill: DistillSpec | None = None
    quantize: QuantizeSpec = field(default_factory=QuantizeSpec)
    compile: CompileSpec = field(default_factory=CompileSpec)
    bench: BenchSpec = field(default_factory=BenchSpec)
    source: Path = Path(".")  # the recipe file; not a YAML key

    def model_inputs(self, trust_pickle: bool = False):
        """The recipe's model and preprocess keys as the stages take them; trust_pickle comes from the CLI."""
        from .inputspec import ModelInputs

        m, p = self.model, self.preprocess
        return ModelInputs(arch=m.arch, trust_pickle=trust_pickle, input_shape=m.input_shape, size=p.size,
                           channels=p.channels, mean=p.mean, std=p.std, resize=p.resize, pixel_range=p.pixel_range)

    def resolve(self, text: str | None) -> str | None:
        """A path from the recipe, relative to the recipe's folder; named datasets pass through."""
        from .datasets import NAMED

        if text is None or text in NAMED or Path(text).is_absolute():
            return text
        return str((self.source.parent / text).resolve())


# Paths a recipe may name, and whether they must already exist when the run starts.
PATH_KEYS = {("model", "path"): True, ("data", "calib"): True, ("data", "eval"): True, ("data", "labels"): True,
             ("data", "classes"): True,
             ("distill", "data"): True, ("bench", "eval"): True, ("bench", "labels"): True, ("bench", "classes"): True, ("workdir",): False}


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise EdgekitError(f"recipe {path} does not exist", "pass a YAML file, e.g. recipes/fashion_mnist.yaml")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise EdgekitError(f"{path} is not valid YAML{where}: {e.problem}", "fix the YAML syntax there") from None
    except yaml.YAMLError as e:
        raise EdgekitError(f"{path} is not valid YAML: {e}", "fix the YAML syntax") from None
    if not isinstance(raw, dict):
        raise EdgekitError(f"{path} must be a mapping of keys, not a {type(raw).__name__}", "see recipes/template.yaml")
    for item in overrides or []:
        _apply_override(raw, item)
    recipe = _build(Recipe, raw, "")
    recipe.source = path.resolve()
    for keys in ("model.path", "data.calib"):
        if not _get(recipe, keys.split(".")):
            raise EdgekitError(f"{path}: {keys} is required", "see recipes/template.yaml")
    if recipe.distill is not None and not recipe.distill.data:
        raise EdgekitError(f"{path}: distill.data is required when distill is given", "name the training images")
    for keys, must_exist in PATH_KEYS.items():
        value = _get(recipe, list(keys))
        if must_exist and value is not None and value != "":
            resolved = recipe.resolve(value)
            from .datasets import NAMED

            if resolved not in NAMED and not Path(resolved).exists():
                raise EdgekitError(f"{path}: {'.'.join(keys)} = {value!r} does not exist (looked for {resolved})",
                                   "paths in a recipe are relative to the recipe file")
    return recipe


def _get(obj: Any, keys: list[str]) -> Any:
    for k in keys:
        if obj is None:
            return None
        obj = getattr(obj, k)
    return obj


def _apply_override(raw: dict, item: str) -> None:
    """`--set quantize.method=minmax`: a CLI value wins over the recipe's; YAML syntax for the value."""
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key:
        raise EdgekitError(f"--set {item!r} is not KEY=VALUE", "e.g. --set quantize.method=minmax")
    *parents, last = key.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else {}
    node[last] = yaml.safe_load(value)


def _build(cls, raw: Any, path: str):
    """raw YAML -> dataclass `cls`, rejecting unknown keys and wrong types with the key's path."""
    if not isinstance(raw, dict):
        raise EdgekitError(f"{path or 'recipe'}: expected a mapping, got {raw!r}", "see recipes/template.yaml")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if cls is ModelSpec and key == "trust_pickle":
            raise EdgekitError(f"{path}.trust_pickle is not a recipe key: unpickling runs code from the model file, "
                               "so only the command line may allow it",
                               "remove it from the recipe and run `edgekit run RECIPE --trust-pickle` if you trust "
                               "the file")
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"did you mean {'.'.join(filter(None, [path, close[0]]))!r}?" if close else \
                f"keys here: {', '.join(fields)}"
            raise EdgekitError(f"unknown recipe key {'.'.join(filter(None, [path, str(key)]))!r}", hint)
    values = {k: _convert(hints[k], v, ".".join(filter(None, [path, k]))) for k, v in raw.items()}
    return cls(**values)


def _convert(hint, value: Any, path: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if origin is list:
        items = value if isinstance(value, list) else [value]
        return [_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(items)]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, (int, float, list)) and not isinstance(value, bool):
        # mean/std/size may be written as numbers or lists: keep the CLI's comma form.
        return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, hint.__name__)
    raise EdgekitError(f"recipe key {path}: expected {kind}, got {value!r}", "fix the value in the recipe")
