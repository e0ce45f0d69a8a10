"""`edgekit run RECIPE`: every stage of a recipe into one workspace, skipping stages whose inputs did not change.

A stage's key is a hash of everything it depends on: the model file's sha256, a fingerprint of each data
source (file names, sizes and mtimes; a named dataset by where it resolved), its options, and the key of
the stage before it. Keys live in the workspace's run.json; a stage whose key matches and whose outputs
exist is skipped and says so. `force=True` redoes everything.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from .errors import EdgekitError
from .recipe import Recipe, load_recipe
from .workspace import Workspace, write_json_atomic

RUN_FILE = "run.json"


def fingerprint(spec: str | None) -> str | None:
    """Cheap identity of a data source: a changed, added or removed file changes it."""
    from .datasets import NAMED

    if spec is None:
        return None
    if spec in NAMED:
        return f"{spec}@{NAMED[spec]().source}"
    path = Path(spec)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(path) if path.is_dir() else p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def key_of(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan(recipe: Recipe) -> list[tuple[str, str, Callable, Callable[[], bool]]]:
    """[(stage name, key, action, outputs exist)] in order. Keys chain: a changed input re-runs what follows."""
    from dataclasses import asdict

    from .model import sha256_of

    ws = Workspace(recipe.resolve(recipe.workdir))
    pre = asdict(recipe.preprocess)
    data = {"calib": fingerprint(recipe.resolve(recipe.data.calib)), "eval": fingerprint(recipe.resolve(recipe.data.eval)),
            "calib_size": recipe.data.calib_size, "seed": recipe.data.seed}
    model_path = recipe.resolve(recipe.model.path)
    model_key = key_of(sha256_of(Path(model_path)), asdict(recipe.model) | {"path": None})
    steps = []
    if recipe.distill is not None:
        d = recipe.distill
        student = Path(d.out) if Path(d.out).is_absolute() else ws.root / d.out
        distill_key = key_of("distill", model_key, fingerprint(recipe.resolve(d.data)), asdict(d), pre)
        teacher = model_path
        steps.append(("distill", distill_key, lambda log: _distill(recipe, teacher, student, log), student.is_file))
        model_path, model_key = str(student), distill_key
    q = recipe.quantize
    quantize_key = key_of("quantize", model_key, data, pre, asdict(q))
    steps.append(("quantize", quantize_key, lambda log: _quantize(recipe, model_path, ws, log),
                  lambda: "quantize" in ws.read_manifest().get("stages", {})))
    c, b = recipe.compile, recipe.bench
    for name in _targets(c.targets):
        compile_key = key_of("compile", quantize_key, name, asdict(c) | {"targets": None})
        steps.append((f"compile {name}", compile_key, lambda log, n=name: _compile(recipe, n, ws, log),
                      lambda n=name: n in ws.read_manifest().get("targets", {})))
        bench_key = key_of("bench", compile_key, asdict(b), fingerprint(recipe.resolve(b.eval)))
        steps.append((f"bench {name}", bench_key, lambda log, n=name: _bench(recipe, n, ws, log),
                      lambda n=name: (ws.root / "targets" / n / "bench.json").is_file()))
    return steps


def _targets(names: list[str]) -> list[str]:
    """The recipe's targets; under "all", those whose runtime is missing here are left out (compile names them)."""
    from .targets import get_target, resolve_targets

    chosen = resolve_targets(",".join(names))
    return [n for n in chosen if names != ["all"] or get_target(n).available() is None]


def run(recipe_path: str | Path, *, overrides: list[str] | None = None, force: bool = False, dry_run: bool = False,
        log=print) -> dict:
    """Run (or with dry_run, only print) the recipe; returns {"stages": [...], "bench": {target: bench.json}}."""
    recipe = load_recipe(recipe_path, overrides)
    ws = Workspace(recipe.resolve(recipe.workdir))
    ws.read_manifest()  # a foreign workspace is refused before anything runs
    keys_path = ws.path(RUN_FILE)
    done = json.loads(keys_path.read_text()) if keys_path.is_file() else {}
    stages, bench = [], {}
    for name, key, action, outputs_exist in plan(recipe):
        unchanged = done.get(name) == key and outputs_exist()
        status = "skip (unchanged)" if unchanged and not force else "run"
        stages.append({"stage": name, "key": key, "status": status})
        if dry_run:
            continue
        log(f"[{status}] {name}" + (f"  (inputs {key})" if unchanged and not force else ""))
        if unchanged and not force:
            continue
        action(log)
        done[name] = key
        write_json_atomic(keys_path, done)
    if not dry_run:
        for entry in stages:
            if entry["stage"].startswith("bench "):
                target = entry["stage"].split(" ", 1)[1]
                bench[target] = json.loads((ws.root / "targets" / target / "bench.json").read_text())
    return {"recipe": str(recipe.source), "workdir": str(ws.root), "stages": stages, "bench": bench}


def _distill(recipe: Recipe, teacher: str, student: Path, log) -> None:
    try:
        from .distillation import distill
    except ImportError:
        raise EdgekitError("this edgekit has no distill stage", "remove the recipe's distill section") from None
    d, p = recipe.distill, recipe.preprocess
    distill(teacher, recipe.resolve(d.data), student=d.student, epochs=d.epochs, temperature=d.temperature,
            alpha=d.alpha, batch=d.batch, lr=d.lr, augment=d.augment, resume=d.resume, out=student,
            eval=recipe.resolve(recipe.data.eval), arch=recipe.model.arch, trust_pickle=recipe.model.trust_pickle,
            size=p.size, channels=p.channels, mean=p.mean, std=p.std, resize=p.resize, seed=recipe.data.seed, log=log)


def _quantize(recipe: Recipe, model_path: str, ws: Workspace, log) -> None:
    from .quantization import quantize

    m, p, d, q = recipe.model, recipe.preprocess, recipe.data, recipe.quantize
    quantize(model_path, recipe.resolve(d.calib), eval=recipe.resolve(d.eval), workdir=ws.root, arch=m.arch,
             trust_pickle=m.trust_pickle, input_shape=m.input_shape, size=p.size, channels=p.channels, mean=p.mean,
             std=p.std, resize=p.resize, method=q.method, calib_size=d.calib_size, seed=d.seed, batch=q.batch,
             threads=q.threads, max_drop=q.max_drop, log=log)


def _compile(recipe: Recipe, name: str, ws: Workspace, log) -> None:
    from .compiling import compile_targets

    c = recipe.compile
    compile_targets(name, workdir=ws.root, device=c.device, threads=c.threads, batch=c.batch,
                    openvino_source=c.openvino_source, max_drop=c.max_drop, log=log)


def _bench(recipe: Recipe, name: str, ws: Workspace, log) -> None:
    from .bench import bench

    b = recipe.bench
    bench(name, workdir=ws.root, eval=recipe.resolve(b.eval), batch=b.batch, threads=b.threads, runs=b.runs,
          warmup=b.warmup, warmup_seconds=b.warmup_seconds, max_drop=b.gates.max_drop,
          max_latency_ms=b.gates.max_latency_ms, min_speedup=b.gates.min_speedup, remote=b.remote,
          ssh_key=recipe.resolve(b.ssh_key), remote_python=b.remote_python, log=log)
