"""The `edgekit` command: parse options, call the Python API (edgekit.quantize, ...), print. No pipeline logic
lives here; the one decision it makes is the exit code: 0 done, 1 a gate failed, 2 bad input, 130 interrupted."""

from __future__ import annotations

import functools
import json
import traceback

import click

import edgekit

from . import __version__, distill_defaults, interrupt
from .emulator import CPUS as EMULATED_CPUS, NAME as ARM_EMULATOR
from .errors import EdgekitError


class EdgekitGroup(click.Group):
    """Turns EdgekitError into one line on stderr and its exit code; --debug shows the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return self._invoke(ctx)
        finally:
            # After Ctrl-C the watcher removes the staging folder while this thread runs on; the stage may then fail
            # on a vanished file. Its error (or its end) must not win the race to exit: the watcher exits 130.
            interrupt.stop_if_exiting()

    def _invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgekitError as e:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"edgekit: error: {e.one_line()}", err=True)
            ctx.exit(e.exit_code)
        except click.exceptions.Exit:
            raise
        except (click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:  # a library caller's default handler, or an interrupt before ours was installed
            click.echo(interrupt.MESSAGE, err=True)
            ctx.exit(interrupt.EXIT_CODE)
        except Exception as e:  # noqa: BLE001 - a bug in edgekit or a library: say so in one line
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"edgekit: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                       " (rerun with --debug for the traceback, and please report it)", err=True)
            ctx.exit(3)


@click.group(cls=EdgekitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Trained PyTorch CNN -> calibrated, validated int8 artifacts for edge targets."""
    ctx.obj = {"debug": debug}
    _quiet_library_logs()


def _quiet_library_logs() -> None:
    """The ONNX exporter warns about torchvision ops on every run; edgekit never uses them."""
    import logging

    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)


def _stderr(msg: str) -> None:
    click.echo(msg, err=True)


INPUT_OPTIONS = ("arch", "trust_pickle", "input_shape", "size", "channels", "mean", "std", "resize", "pixel_range")


def model_inputs(command):
    """The options that say how to load the model and read its input (quantize and distill share them); the
    command receives them as one `inputs` (edgekit.ModelInputs)."""
    options = [
        click.option("--arch", default=None, help="package.module:factory that builds the model, for a state_dict file."),
        click.option("--trust-pickle", is_flag=True, help="Allow a pickled nn.Module (unpickling runs code from the file)."),
        click.option("--input-shape", default=None, help="N,C,H,W when the model file does not say (TorchScript, state_dict)."),
        click.option("--size", default=None, help="Input size: 224 or H,W. Default: the model's, else the first image's."),
        click.option("--channels", type=click.Choice(["1", "3"]), default=None, help="1 (grey) or 3 (RGB). Default: from the model."),
        click.option("--mean", default=None, help="Per-channel mean on the 0..1 scale, as the model was trained with: 0.5 or 0.485,0.456,0.406. Default 0."),
        click.option("--std", default=None, help="Per-channel std on the 0..1 scale. Default 1."),
        click.option("--resize", type=int, default=None, help="Resize the short side to this before the centre crop (e.g. 256 for 224)."),
        click.option("--pixel-range", type=click.Choice(["1", "255"]), default="1", show_default=True,
                     help="The scale --mean/--std are on: 1, or 255 for values copied from a 0..255 config (123.7, 58.4)."),
    ]

    @functools.wraps(command)
    def with_inputs(*args, **kwargs):
        values = {name: kwargs.pop(name) for name in INPUT_OPTIONS}
        values["channels"] = None if values["channels"] is None else int(values["channels"])
        values["pixel_range"] = int(values["pixel_range"])
        return command(*args, inputs=edgekit.ModelInputs(**values), **kwargs)

    for option in reversed(options):  # decorators apply bottom-up; keep --help in this order
        with_inputs = option(with_inputs)
    return with_inputs


def exit_on_failed_gates(ctx: click.Context, results: dict) -> None:
    """Exit 1 when a gate failed on any target (a gate that could not be checked is not a failure)."""
    failed = [name for name, r in results.items() if not r["passed"]]
    if failed:
        _stderr(f"edgekit: gates failed for {', '.join(failed)}")
        ctx.exit(1)


@main.command()
@click.argument("model", type=click.Path(path_type=str))
@click.option("--calib", required=True, help="Calibration images: a folder (flat or class sub-folders), .npy/.npz, or a named set.")
@click.option("--eval", "eval_", default=None, help="Eval images (class sub-folders give labels); default: held-out calibration images.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Labels of the --eval images: JSON or CSV, file name -> class index or name.")
@click.option("--classes", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The model's class names (or wnids) in output order, for class folders or labels given by name.")
@click.option("--workdir", default="edgekit-out", show_default=True, help="Workspace folder.")
@click.option("--force", is_flag=True, help="Use --workdir even if it is a non-empty folder that is not an edgekit workspace.")
@model_inputs
@click.option("--method", type=click.Choice(["minmax", "percentile", "entropy", "cle", "cle+adaround", "auto"]),
              default="percentile", show_default=True,
              help="Activation range calibration; cle / cle+adaround: accuracy recovery (cross-layer equalization, "
                   "AdaRound via edgekit[aimet]) with percentile ranges; auto: try each, keep the best on held-out "
                   "calibration images.")
@click.option("--calib-size", type=int, default=512, show_default=True, help="Calibration images to use (sampled with --seed).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch", type=int, default=64, show_default=True, help="Batch size for evaluation.")
@click.option("--threads", type=int, default=0, help="ONNX Runtime threads (0: all cores).")
@click.option("--max-drop", type=float, default=None, metavar="PTS",
              help="Accuracy budget: keep the most sensitive layers in float until the drop fits.")
@click.option("--min-agreement", type=float, default=None, metavar="PCT",
              help="Fidelity budget: int8's top-1 must be fp32's on at least PCT % of the eval images "
                   "(met like --max-drop; with --max-drop too, both must hold).")
@click.option("--task", type=click.Choice(["classify", "segment", "detect", "features"]), default=None,
              help="What the model's outputs are, where their shapes do not say (default: from the shapes).")
@click.option("--output", "outputs", multiple=True, metavar="NAME=ROLE",
              help="One output's role: logits, dense, detect, features or tensor (repeatable; wins over --task).")
@click.option("--strict", is_flag=True,
              help="Fail (exit 2) when the fp32 top-1 on labelled eval images is about chance (preprocessing or labels wrong).")
@click.option("--json", "as_json", is_flag=True, help="Print quantize.json instead of the table.")
def quantize(model, calib, eval_, labels, classes, workdir, force, inputs, method, calib_size, seed, batch, threads, max_drop,
             min_agreement, task, outputs, strict, as_json) -> None:
    """Post-training int8 quantization of MODEL, calibrated on real images; accuracy cost measured."""
    from .table import quantize_table

    report = edgekit.quantize(model, calib, eval=eval_, labels=labels, classes=classes, workdir=workdir,
                              inputs=inputs, method=method,
                              calib_size=calib_size, seed=seed, batch=batch, threads=threads, max_drop=max_drop,
                              min_agreement=min_agreement, task=task, output_roles=list(outputs), strict=strict, force=force, log=_stderr)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(quantize_table(report))
        click.echo(f"wrote {workdir}/model.int8.onnx, quantize.json, calibration.json")


@main.command("compile")
@click.option("--target", "target", default="all", show_default=True, help="openvino, arm, jetson, a comma list, or all.")
@click.option("--workdir", default="edgekit-out", show_default=True, help="Workspace that `edgekit quantize` filled.")
@click.option("--device", default="CPU", show_default=True, help="OpenVINO device to record for bench: CPU, GPU, NPU, AUTO.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Batch size the engine is tuned for (jetson).")
@click.option("--threads", type=int, default=0, help="Runtime threads for the validation run (0: all cores).")
@click.option("--openvino-source", type=click.Choice(["nncf", "qdq"]), default=None,
              help="openvino int8 from the portable QDQ model (default) or NNCF on the fp32 IR.")
@click.option("--openvino-cpus", type=click.Choice(["vnni", "all"]), default=None,
              help="CPUs the openvino int8 IR must compute exactly on: vnni (an int8 dot product: Intel Ice Lake / "
                   "Alder Lake+, AMD Zen 4+; GPUs, NPUs) or all (older x86 too: weight ranges widened where their "
                   "16-bit sums clip, at some accuracy). Default: what this machine needs.")
@click.option("--max-drop", type=float, default=None, metavar="PTS",
              help="Accuracy budget per target: keep its most sensitive layers in float until its drop fits.")
@click.option("--min-agreement", type=float, default=None, metavar="PCT",
              help="Fidelity budget per target: its int8 top-1 must be its fp32 reference's on at least PCT % "
                   "of the eval images (with --max-drop too, both must hold).")
@click.option("--json", "as_json", is_flag=True, help="Print the compile.json of each target.")
def compile_cmd(target, workdir, device, batch, threads, openvino_source, openvino_cpus, max_drop, min_agreement,
                as_json) -> None:
    """Compile the quantized workspace for edge targets (no model argument: it reads the workspace)."""
    from .table import compile_table

    results = edgekit.compile(target, workdir=workdir, device=device.upper(), threads=threads, batch=batch,
                              openvino_source=openvino_source, openvino_cpus=openvino_cpus, max_drop=max_drop,
                              min_agreement=min_agreement, log=_stderr)
    click.echo(json.dumps(results, indent=2) if as_json else compile_table(results))


@main.command("bench")
@click.option("--target", "target", default="all", show_default=True, help="openvino, arm, jetson, a comma list, or all compiled.")
@click.option("--workdir", default="edgekit-out", show_default=True)
@click.option("--eval", "eval_", default=None, help="Eval images (default: the ones quantize used).")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Labels of the --eval images (JSON or CSV), as quantize takes them.")
@click.option("--classes", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The model's class names in output order, as quantize takes them.")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size for latency.")
@click.option("--threads", type=int, default=None,
              help="Runtime threads, fixed and recorded (default: all cores; the board's with --remote).")
@click.option("--runs", type=int, default=200, show_default=True, help="Timed calls per runtime.")
@click.option("--warmup", type=int, default=20, show_default=True, help="Warm-up calls per runtime.")
@click.option("--warmup-seconds", type=float, default=1.0, show_default=True, help="...and at least this long.")
@click.option("--max-drop", type=float, default=None, help="Gate: top-1 points lost vs fp32 (disagreement without labels).")
@click.option("--max-latency-ms", type=float, default=None, help="Gate: int8 p50 latency in ms.")
@click.option("--min-speedup", type=float, default=None, help="Gate: int8 speedup over the target's fp32 reference.")
@click.option("--min-sqnr", type=float, default=None, metavar="DB",
              help="Gate: every output's SQNR against the fp32 reference, in dB (any model; e.g. 20).")
@click.option("--min-agreement", type=float, default=None, metavar="PCT",
              help="Gate: int8's top-1 equals the fp32 reference's on at least PCT % of the eval images (e.g. 99).")
@click.option("--strict-timing", is_flag=True,
              help="A latency/speed-up gate inside a noisy timing's 95 % interval fails (default: inconclusive).")
@click.option("--remote", default=None, metavar="USER@HOST[:PORT]",
              help="Run on this board over ssh (it needs python3, numpy and the target's runtime, not edgekit).")
@click.option("--ssh-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Private key for --remote (extra ssh options: the EDGEKIT_SSH_OPTS variable).")
@click.option("--remote-python", default=None, help="The board's python for --remote.  [default: python3]")
@click.option("--emulate", default=None, metavar="CPU",
              help=f"arm only: run its int8 artifacts on this emulated aarch64 CPU ({', '.join(EMULATED_CPUS)} or any "
                   "model qemu knows): accuracy and the difference from this host, no latency. Needs `edgekit setup "
                   "arm-emulator`.")
@click.option("--emulate-images", type=int, default=None, metavar="N",
              help="Eval images to run emulated (evenly spread).  [default: 100 at 224x224, more for smaller inputs, at most 500]")
@click.option("--json", "as_json", is_flag=True, help="Print the bench.json of each target.")
@click.pass_context
def bench_cmd(ctx, target, workdir, eval_, labels, classes, batch, threads, runs, warmup, warmup_seconds, max_drop, max_latency_ms, min_speedup,
              min_sqnr, min_agreement, strict_timing, remote, ssh_key, remote_python, emulate, emulate_images, as_json):
    """Latency and accuracy per compiled target, with pass/fail gates (exit 1 if any fails)."""
    from .table import bench_table

    results = edgekit.bench(target, workdir=workdir, eval=eval_, labels=labels, classes=classes, batch=batch, threads=threads, runs=runs, warmup=warmup,
                    warmup_seconds=warmup_seconds, max_drop=max_drop, max_latency_ms=max_latency_ms, min_speedup=min_speedup,
                    min_sqnr=min_sqnr, min_agreement=min_agreement, strict_timing=strict_timing, remote=remote, ssh_key=ssh_key, remote_python=remote_python,
                    emulate=emulate, emulate_images=emulate_images, log=_stderr)
    click.echo(json.dumps(results, indent=2) if as_json else bench_table(results))
    exit_on_failed_gates(ctx, results)


@main.command("report")
@click.option("--workdir", default="edgekit-out", show_default=True)
def report_cmd(workdir) -> None:
    """Write report.md and a self-contained report.html (table + latency/accuracy plot) for all benched targets."""
    md, page = edgekit.report(workdir)
    click.echo(md.read_text())
    click.echo(f"wrote {md} and {page}")


@main.command("run")
@click.argument("recipe", type=click.Path(path_type=str))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set quantize.method=minmax --set bench.gates.max_drop=0.3.")
@click.option("--workdir", default=None, help="Workspace (overrides the recipe's workdir).")
@click.option("--force", is_flag=True,
              help="Redo every stage, even those whose inputs did not change (and use a non-empty folder as workdir).")
@click.option("--trust-pickle", is_flag=True, help="Allow a pickled nn.Module model (unpickling runs code from the file).")
@click.option("--dry-run", is_flag=True, help="Print the plan (what would run, what would be skipped) and stop.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary, quantize and bench results as JSON.")
@click.pass_context
def run_cmd(ctx, recipe, overrides, workdir, force, trust_pickle, dry_run, as_json) -> None:
    """Run a recipe: distill (optional), quantize, compile and bench every target, report; exit 1 if a gate fails."""
    from .table import bench_table, quantize_table

    overrides = list(overrides) + ([f"workdir={workdir}"] if workdir else [])
    result = edgekit.run(recipe, overrides=overrides, force=force, dry_run=dry_run, trust_pickle=trust_pickle,
                         log=_stderr)
    if dry_run:
        click.echo("\n".join(f"{s['status']:>19}  {s['stage']}" for s in result["stages"]))
        return
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        if result["quantize"]:
            click.echo(quantize_table(result["quantize"]) + "\n")
        click.echo(bench_table(result["bench"]))
        if result["report"]:
            click.echo(f"report: {result['report'][1]}")
    exit_on_failed_gates(ctx, result["bench"])


@main.command("setup")
@click.argument("environment", type=click.Choice([ARM_EMULATOR]))
def setup_cmd(environment) -> None:
    """Build a helper environment in your cache folder. arm-emulator: qemu, an aarch64 Python and the ARM builds of
    the runtimes, for `edgekit bench --target arm --emulate CPU`. Run again to check it; done steps are skipped."""
    edgekit.setup(environment, log=_stderr)


@main.command("targets")
def targets_cmd() -> None:
    """List the compile targets, what they need, and whether they are available here."""
    from .table import format_table
    from .targets import REGISTRY, get_target

    rows = []
    for name in REGISTRY:
        t = get_target(name)
        rows.append([name, t.hardware, t.runtime, t.artifact, t.runtime_status()])
    click.echo(format_table(["target", "hardware", "runtime", "artifact", "available here"], rows, align="lllll"))


@main.command("distill")
@click.option("--teacher", required=True, type=click.Path(path_type=str), help="The trained model (any format quantize takes).")
@click.option("--data", required=True, help="Training images: a folder (class sub-folders give labels), .npy/.npz, or a named set.")
@click.option("--student", default=None,
              help=f"A name from `edgekit students`; with --speedup/--budget-ms also a pattern to choose from.  "
                   f"[default: {distill_defaults.STUDENT}; with --speedup/--budget-ms: chosen by latency]")
@click.option("--epochs", type=int, default=distill_defaults.EPOCHS, show_default=True)
@click.option("--temperature", type=float, default=distill_defaults.TEMPERATURE, show_default=True, help="Softmax temperature T of the soft targets.")
@click.option("--alpha", type=float, default=distill_defaults.ALPHA, show_default=True,
              help="Weight of the soft targets; 1 - alpha goes to the labels (0: labels only).")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint (distill.ckpt) of the same run.")
@click.option("--out", default="student.pt2", show_default=True, help="The student, an ExportedProgram `edgekit quantize` loads.")
@click.option("--eval", "eval_", default=None, help="Eval images for teacher vs student; default: a held-out 10 % of --data.")
@click.option("--workdir", default=None, help="Folder for distill.json and the checkpoint.  [default: --out's folder]")
@model_inputs
@click.option("--batch", type=int, default=distill_defaults.BATCH, show_default=True, help="Training batch size (per process under torchrun).")
@click.option("--lr", type=float, default=distill_defaults.LR, show_default=True, help="Peak learning rate (SGD, warm-up + cosine schedule).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-augment", is_flag=True, help="No random crop/flip; the teacher's logits are then computed once.")
@click.option("--bf16", is_flag=True, help="Train under CPU bf16 autocast (about 2x faster with AMX/AVX512-BF16); "
              "the student is still exported fp32.")
@click.option("--target", default=None, metavar="TARGET[,...]",
              help="Choose the student by its int8 latency on this target (openvino, arm, arm:tflite; a comma list: "
                   "on each), timed against the teacher; needs --speedup or --budget-ms.")
@click.option("--speedup", type=float, default=None, metavar="X",
              help="With --target: the largest student at least X times faster than the teacher (int8 p50).")
@click.option("--budget-ms", type=float, default=None, metavar="MS",
              help="With --target: the largest student whose int8 p50 (batch 1) is within MS milliseconds.")
@click.option("--json", "as_json", is_flag=True, help="Print distill.json instead of the table.")
def distill_cmd(teacher, data, student, epochs, temperature, alpha, resume, out, eval_, workdir, inputs,
                batch, lr, seed, no_augment, bf16, target, speedup, budget_ms, as_json) -> None:
    """Train a small student (MobileNet-style) to mimic a trained teacher; writes a .pt2 quantize takes."""
    from .distill_report import distill_table

    report = edgekit.distill(teacher, data, student=student, epochs=epochs, temperature=temperature, alpha=alpha,
                             resume=resume, out=out, eval=eval_, workdir=workdir, inputs=inputs, batch=batch, lr=lr,
                             seed=seed, augment=not no_augment, target=target, speedup=speedup, budget_ms=budget_ms,
                             bf16=bf16, log=_stderr)
    if report is None:  # a torchrun worker other than rank 0: rank 0 prints
        return
    click.echo(json.dumps(report, indent=2) if as_json else distill_table(report))


@main.command("students")
@click.argument("pattern", default="*")
@click.option("--teacher", default=None, type=click.Path(path_type=str), help="Show sizes at this model's input and classes.")
@click.option("--arch", default=None, help="package.module:factory for a state_dict teacher.")
@click.option("--trust-pickle", is_flag=True, help="Allow a pickled nn.Module teacher.")
@click.option("--size", default=None, help="Input size (224 or H,W).  [default: the teacher's, else 224]")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None, help="Input channels without a teacher.  [default: 3]")
@click.option("--classes", type=click.IntRange(min=2), default=None, help="Classes without a teacher.  [default: 1000]")
@click.option("--target", default=None, metavar="TARGET[,...]",
              help="Also build each student (random weights) and the teacher int8 for this target and time them in one "
                   "interleaved run: openvino, arm (its ONNX int8, ONNX Runtime), arm:tflite (its .tflite, LiteRT + "
                   "XNNPACK; slower to build), or a comma list.")
@click.option("--speedup", type=float, default=None, metavar="X", help="With --target: mark the students at least X "
              "times faster than the teacher (int8 p50) and name the largest.")
@click.option("--budget-ms", type=float, default=None, metavar="MS",
              help="With --target: mark the students whose int8 p50 is within MS milliseconds.")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="Runtime threads for the timing (0: all cores).")
@click.option("--runs", type=click.IntRange(min=10), default=100, show_default=True, help="Timed calls per model.")
@click.option("--json", "as_json", is_flag=True)
def students_cmd(pattern, teacher, arch, trust_pickle, size, channels, classes, target, speedup, budget_ms, threads,
                 runs, as_json) -> None:
    """List the distill students matching PATTERN (e.g. 'mobilenetv2*') with parameters and MACs; with --target,
    their measured int8 latency and speed-up over the teacher on that target."""
    from .distill_report import students_table

    inputs = edgekit.ModelInputs(arch=arch, trust_pickle=trust_pickle, size=size,
                                 channels=None if channels is None else int(channels))
    overview = edgekit.students(pattern, teacher=teacher, inputs=inputs, classes=classes, target=target,
                                speedup=speedup, budget_ms=budget_ms, threads=threads, runs=runs, log=_stderr)
    click.echo(json.dumps(overview, indent=2) if as_json else students_table(overview))


if __name__ == "__main__":  # `python -m edgekit.cli`, as older docs said. numpy's thread pool predates the watcher
    # here, and interrupt.install() passes Ctrl-C on from it; `python -m edgekit` installs before any thread starts.
    interrupt.install()
    main()
