"""The `edgekit` command: parse options, call the Python API, print. No pipeline logic lives here."""

from __future__ import annotations

import json
import sys
import traceback

import click

from . import __version__
from .errors import EdgekitError


class EdgekitGroup(click.Group):
    """Turns EdgekitError into one line on stderr and its exit code; --debug shows the traceback."""

    def invoke(self, ctx: click.Context):
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
        except Exception as e:  # noqa: BLE001 - a bug in edgekit or a library: say so in one line
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"edgekit: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                       " (rerun with --debug for the traceback, and please report it)", err=True)
            ctx.exit(3)
        except KeyboardInterrupt:
            click.echo("edgekit: interrupted; the workspace was left as it was", err=True)
            ctx.exit(130)


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


@main.command()
@click.argument("model", type=click.Path(path_type=str))
@click.option("--calib", required=True, help="Calibration images: a folder (flat or class sub-folders), .npy/.npz, or a named set.")
@click.option("--eval", "eval_", default=None, help="Eval images (class sub-folders give labels); default: held-out calibration images.")
@click.option("--workdir", default="edgekit-out", show_default=True, help="Workspace folder.")
@click.option("--arch", default=None, help="package.module:factory that builds the model, for a state_dict file.")
@click.option("--trust-pickle", is_flag=True, help="Allow a pickled nn.Module (unpickling runs code from the file).")
@click.option("--input-shape", default=None, help="N,C,H,W when the model file does not say (TorchScript, state_dict).")
@click.option("--size", default=None, help="Input size: 224 or H,W. Default: the model's, else the first image's.")
@click.option("--channels", type=click.IntRange(1, 3), default=None, help="1 (grey) or 3 (RGB). Default: from the model.")
@click.option("--mean", default=None, help="Per-channel mean on the 0..1 scale: 0.5 or 0.485,0.456,0.406. Default 0.")
@click.option("--std", default=None, help="Per-channel std on the 0..1 scale. Default 1.")
@click.option("--resize", type=int, default=None, help="Resize the short side to this before the centre crop (e.g. 256 for 224).")
@click.option("--method", type=click.Choice(["minmax", "percentile", "entropy"]), default="percentile", show_default=True,
              help="Activation range calibration.")
@click.option("--calib-size", type=int, default=512, show_default=True, help="Calibration images to use (sampled with --seed).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch", type=int, default=64, show_default=True, help="Batch size for evaluation.")
@click.option("--threads", type=int, default=0, help="ONNX Runtime threads (0: all cores).")
@click.option("--json", "as_json", is_flag=True, help="Print quantize.json instead of the table.")
def quantize(model, calib, eval_, workdir, arch, trust_pickle, input_shape, size, channels, mean, std, resize,
             method, calib_size, seed, batch, threads, as_json) -> None:
    """Post-training int8 quantization of MODEL, calibrated on real images; accuracy cost measured."""
    from .quantization import quantize as run
    from .table import quantize_table

    report = run(model, calib, eval=eval_, workdir=workdir, arch=arch, trust_pickle=trust_pickle,
                 input_shape=input_shape, size=size, channels=channels, mean=mean, std=std, resize=resize,
                 method=method, calib_size=calib_size, seed=seed, batch=batch, threads=threads,
                 log=_stderr)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(quantize_table(report))
        click.echo(f"wrote {workdir}/model.int8.onnx, quantize.json, calibration.json")


if __name__ == "__main__":
    sys.exit(main())
