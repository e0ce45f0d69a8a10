"""`edgekit run RECIPE`: every stage of a recipe into one workspace, then the report; a stage whose inputs did not
change is skipped.

The workspace's manifest is the only state: each stage records its inputs key there when it commits
(stage_keys.py), and `run` computes the same key from the recipe. A stage is skipped only when the manifest
records exactly that key, so whatever ran in the workspace since (a hand-run `edgekit quantize other.pt`, a
compile with other options) is noticed and redone. `force=True` redoes every stage.

This module calls the public API (edgekit.distill / quantize / compile / bench / report) and nothing lower.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from . import fallback, outputs, stage_keys
from .model import sha256_of
from .recipe import Recipe, load_recipe
from .workspace import Workspace

SKIP, RUN, AFTER = "skip (unchanged)", "run", "run (after distill)"


def run(recipe_path: str | Path, *, overrides: list[str] | None = None, force: bool = False, dry_run: bool = False,
        trust_pickle: bool = False, log=print) -> dict:
    """Run a recipe: distill (if it has a distill section), quantize, compile and bench every target, then write
    the report.

    overrides: "key=value" recipe overrides (e.g. "quantize.method=minmax"). force: redo every stage, and use a
    workdir that is not empty and not yet a workspace. dry_run: only say what would run and what would be skipped.
    trust_pickle: allow a pickled nn.Module model (a command-line decision; recipes cannot set it).

    Returns {"recipe", "workdir", "stages": [{"stage", "key", "status"}], "quantize": quantize.json,
    "bench": {target: bench.json}, "report": [report.md, report.html] or None}.
    """
    recipe = load_recipe(recipe_path, overrides)
    ws = Workspace(recipe.resolve(recipe.workdir))
    ws.read_manifest()  # a foreign or edited workspace is refused before anything runs
    if recipe.bench.remote and not dry_run:
        log(f"this recipe benches on {recipe.bench.remote}: the compiled models and the preprocessed eval images "
            "will be uploaded there over ssh (its host key must already be in known_hosts)")
    if dry_run:  # a reader: no lock, nothing written
        return _result(recipe, ws, _Run(recipe, ws, force, True, trust_pickle, log).stages(), None, dry=True)
    import edgekit

    with ws.writing(create=True, force=force):
        stages = _Run(recipe, ws, force, False, trust_pickle, log).stages()
        report = [str(p) for p in edgekit.report(ws.root)] if any(s["stage"].startswith("bench ") for s in stages) else None
    return _result(recipe, ws, stages, report)


class _Run:
    """Walks the recipe's stages in order, deciding (and, unless dry, doing) each one."""

    def __init__(self, recipe: Recipe, ws: Workspace, force: bool, dry: bool, trust_pickle: bool, log) -> None:
        self.recipe, self.ws, self.force, self.dry, self.log = recipe, ws, force, dry, log
        self.inputs = recipe.model_inputs(trust_pickle)
        self.done: list[dict] = []

    def decide(self, stage: str, key: str | None, recorded: str | None, action) -> None:
        """key None: not computable before an earlier stage runs (a dry run ahead of a distill)."""
        status = AFTER if key is None else SKIP if key == recorded and not self.force else RUN
        self.done.append({"stage": stage, "key": key, "status": status})
        if self.dry:
            return
        self.log(f"[{status}] {stage}" + (f"  (inputs {key})" if status == SKIP else ""))
        if status != SKIP:
            action()

    def stages(self) -> list[dict]:
        import edgekit

        r, ws = self.recipe, self.ws
        manifest = lambda: ws.read_manifest()  # noqa: E731 - re-read after each stage: the stage changed it
        model_path = r.resolve(r.model.path)
        calib, eval_ = r.resolve(r.data.calib), r.resolve(r.data.eval)
        if r.distill is not None:
            d = r.distill
            student = Path(d.out) if Path(d.out).is_absolute() else ws.root / d.out
            key = stage_keys.key_of("distill", sha256_of(Path(model_path)), stage_keys.fingerprint(r.resolve(d.data)),
                                    stage_keys.fingerprint(eval_), distill_key_options(d), self.inputs.identity(),
                                    r.data.seed)
            recorded = manifest().get("stages", {}).get("distill", {}).get("inputs_key") if student.is_file() else None

            def do_distill():
                edgekit.distill(model_path, r.resolve(d.data), student=d.student, epochs=d.epochs,
                                temperature=d.temperature, alpha=d.alpha, batch=d.batch, lr=d.lr,
                                augment=d.augment, bf16=d.bf16,
                                resume=d.resume, out=student, eval=eval_, inputs=self.inputs, seed=r.data.seed,
                                target=d.target, speedup=d.speedup, budget_ms=d.budget_ms, log=self.log)
                ws.record("stages", {"distill": {"inputs_key": key, "out": str(student)}})

            self.decide("distill", key, recorded, do_distill)
            distilled_now = self.done[-1]["status"] != SKIP
            model_path = str(student)
            if self.dry and distilled_now:
                model_path = None  # the student that quantize would read does not exist yet
        q = r.quantize
        qkey = None if model_path is None else stage_keys.quantize_key(
            sha256_of(Path(model_path)), calib, eval_, self.inputs.identity(), q.method, r.data.calib_size,
            r.data.seed, budget_key(q.max_drop, q.min_agreement), r.resolve(r.data.labels),
            r.resolve(r.data.classes), q.task, outputs.parse_overrides(q.outputs))
        self.decide("quantize", qkey, manifest().get("stages", {}).get("quantize", {}).get("inputs_key"),
                    lambda: edgekit.quantize(model_path, calib, eval=eval_, labels=r.resolve(r.data.labels),
                                             classes=r.resolve(r.data.classes), workdir=ws.root, inputs=self.inputs,
                                             method=q.method, calib_size=r.data.calib_size, seed=r.data.seed,
                                             batch=q.batch, threads=q.threads, max_drop=q.max_drop,
                                             min_agreement=q.min_agreement, strict=q.strict,
                                             task=q.task, output_roles=q.outputs,
                                             force=self.force,
                                             log=self.log))
        c, b = r.compile, r.bench
        gates = asdict(b.gates)
        if gates["min_agreement"] is None:  # as bench keys it: only when asked
            del gates["min_agreement"]
        for name in self._targets(c.targets):
            ckey = None if qkey is None else stage_keys.compile_key(qkey, name, c.device, c.batch, c.openvino_source,
                                                                    budget_key(c.max_drop, c.min_agreement),
                                                                    c.openvino_cpus)
            compiled = manifest().get("targets", {}).get(name, {})
            self.decide(f"compile {name}", ckey, compiled.get("inputs_key"),
                        lambda n=name: edgekit.compile(n, workdir=ws.root, device=c.device, threads=c.threads,
                                                       batch=c.batch, openvino_source=c.openvino_source,
                                                       openvino_cpus=c.openvino_cpus,
                                                       max_drop=c.max_drop, min_agreement=c.min_agreement,
                                                       log=self.log))
            bkey = None if ckey is None else stage_keys.bench_key(ckey, r.resolve(b.eval), b.batch, b.runs, b.warmup,
                                                                  b.warmup_seconds, gates,
                                                                  f"emulate:{b.emulate}:{b.emulate_images}"
                                                                  if b.emulate else b.remote, b.strict_timing,
                                                                  r.resolve(b.labels), r.resolve(b.classes))
            benched = manifest().get("targets", {}).get(name, {}).get("bench", {})
            self.decide(f"bench {name}", bkey, benched.get("inputs_key"),
                        lambda n=name: edgekit.bench(n, workdir=ws.root, eval=r.resolve(b.eval),
                                                     labels=r.resolve(b.labels), classes=r.resolve(b.classes),
                                                     batch=b.batch,
                                                     threads=b.threads, runs=b.runs, warmup=b.warmup,
                                                     warmup_seconds=b.warmup_seconds, max_drop=b.gates.max_drop,
                                                     max_latency_ms=b.gates.max_latency_ms,
                                                     min_speedup=b.gates.min_speedup, min_sqnr=b.gates.min_sqnr,
                                                     min_agreement=b.gates.min_agreement,
                                                     strict_timing=b.strict_timing, remote=b.remote,
                                                     emulate=b.emulate, emulate_images=b.emulate_images,
                                                     ssh_key=r.resolve(b.ssh_key), remote_python=b.remote_python,
                                                     log=self.log))
        return self.done

    @staticmethod
    def _targets(names: list[str]) -> list[str]:
        """The recipe's targets; under "all", those whose runtime is missing here are left out (compile names them)."""
        from .targets import get_target, resolve_targets

        chosen = resolve_targets(",".join(names))
        return [n for n in chosen if names != ["all"] or get_target(n).available() is None]


def _result(recipe: Recipe, ws: Workspace, stages: list[dict], report: list[str] | None, dry: bool = False) -> dict:
    """The run's summary; after a real run also the workspace's quantize.json and each benched target's bench.json."""
    out = {"recipe": str(recipe.source), "workdir": str(ws.root), "stages": stages, "quantize": None, "bench": {},
           "report": report}
    if dry:
        return out
    if ws.path("quantize.json").is_file():
        out["quantize"] = json.loads(ws.path("quantize.json").read_text())
    for entry in stages:
        kind, _, name = entry["stage"].partition(" ")
        path = ws.root / "targets" / name / "bench.json"
        if kind == "bench" and path.is_file():
            out["bench"][name] = json.loads(path.read_text())
    return out


def distill_key_options(d) -> dict:
    """The distill section as it joins the stage's inputs key. bf16 and the latency-choice keys join only when set
    and an unset student counts as the default one, so a workspace distilled before they existed keeps its key."""
    from .distill_defaults import STUDENT

    options = {**asdict(d), "resume": None}
    if not options["bf16"]:  # joins only when set, as the latency keys do
        del options["bf16"]
    latency = {k: options.pop(k) for k in ("target", "speedup", "budget_ms")}
    if any(v is not None for v in latency.values()):
        return {**options, **latency}
    return {**options, "student": options["student"] or STUDENT}


def budget_key(max_drop, min_agreement):
    """The accuracy budget as quantize and compile key it (fallback.Budget); None without one."""
    budget = fallback.Budget.from_options(max_drop, min_agreement)
    return budget and budget.key()
