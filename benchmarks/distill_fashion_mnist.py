"""Does distillation beat plain training? The bundled teacher into a MobileNet student on Fashion-MNIST.

Trains the same student twice on the full 60k training set, with the same epochs, seed and augmentation:
once with `edgekit distill` (KD from models/fashion_resnet.pt2, 94.69 % top-1) and once on the labels
alone (`--alpha 0`); both are measured on the full 10k test set. Needs Debian's `dataset-fashion-mnist`.

    python benchmarks/distill_fashion_mnist.py                 # mobilenetv3_small_100, 10 epochs each
    python benchmarks/distill_fashion_mnist.py --threads 1     # on a machine other jobs share

Each run is one `edgekit distill` command (printed); their distill.json files land in --outdir.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import time
from pathlib import Path

import torch

from edgekit.distillation import distill
from edgekit.inputspec import ModelInputs
from edgekit.table import format_table, pct

TEACHER, MEAN, STD = "models/fashion_resnet.pt2", "0.286", "0.353"
DATA, EVAL = "fashion-mnist:train", "fashion-mnist:test"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default="mobilenetv3_small_100")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (0: torch's default). On a busy machine 1 is faster than 2: "
                         "OpenMP threads spin-wait on a core another job holds.")
    ap.add_argument("--outdir", type=Path, default=Path("/tmp/edgekit-distill-bench"))
    args = ap.parse_args()
    # The ONNX exporter warns about torchvision ops on every export; edgekit never uses them (as in the CLI).
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)

    runs = {"distilled": args.alpha, "labels only": 0.0}
    results = {}
    for name, alpha in runs.items():
        folder = args.outdir / name.replace(" ", "_")
        options = {"student": args.student, "epochs": args.epochs, "temperature": args.temperature, "alpha": alpha,
                   "seed": args.seed, "out": folder / "student.pt2", "eval": EVAL, "mean": MEAN, "std": STD}
        command = "edgekit distill --teacher {} --data {} ".format(TEACHER, DATA) + " ".join(
            f"--{k} {shlex.quote(str(v))}" for k, v in options.items())
        print(f"== {name}: {command}", flush=True)
        t0 = time.perf_counter()
        inputs = ModelInputs(mean=options.pop("mean"), std=options.pop("std"))
        results[name] = distill(TEACHER, DATA, inputs=inputs, **options)
        results[name]["command"] = command
        print(f"   {name}: student top-1 {pct(results[name]['student']['top1'])}"
              f" ({(time.perf_counter() - t0) / 60:.1f} min)", flush=True)

    kd, plain = results["distilled"], results["labels only"]
    teacher = kd["teacher"]
    rows = [["teacher (fashion_resnet)", pct(teacher["top1"]), "", f"{teacher['macs'] / 1e6:.1f} M", "", ""]]
    for name, r in results.items():
        s = r["student"]
        rows.append([f"{args.student}, {name}", pct(s["top1"]), f"{100 * (s['top1'] - teacher['top1']):+.2f}",
                     f"{s['macs'] / 1e6:.1f} M", f"{r['speedup']:.2f}x", f"{r['training']['seconds'] / 60:.1f}"])
    print(format_table(["model", "top-1", "vs teacher (pts)", "MACs", "ORT speedup", "train min"], rows))
    gain = 100 * (kd["student"]["top1"] - plain["student"]["top1"])
    print(f"KD gain over labels only: {gain:+.2f} pts ({args.epochs} epochs, seed {args.seed}, torch threads"
          f" {torch.get_num_threads()}); eval: {kd['eval']['source']}")
    args.outdir.mkdir(parents=True, exist_ok=True)
    (args.outdir / "summary.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
