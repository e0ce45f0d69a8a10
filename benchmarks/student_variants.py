"""Where a small student's int8 time goes at batch 1: resnet_s_100 against variants that cut MACs or cut ops, each
timed with the CIFAR-10 teacher in one interleaved run per target (edgekit.student_timing.time_candidates: built and
timed as `edgekit students` does, random weights, the bound call bench times).

    python benchmarks/student_variants.py [--threads 2] [--runs 400] [--target openvino,arm:tflite]

Variants (32x32x3 in, 10 classes; resnet_s_100 is stem 3->32 s2, conv 32->64, block(64), conv 64->128 s2,
block(128), conv 128->128 s2, pool, linear; a block is two 3x3 convs and the residual add):

    resnet_s_100        as registered (edgekit/zoo/fast_students.py)
    inner_0.75 / 0.5    both blocks' inner width at 0.75x / 0.5x (48/96, 32/64 channels): fewer MACs, the same ops
    no_stage1_conv      the stem goes straight to 64 channels: one conv fewer
    no_last_stage       no conv 128->128 s2: the pool reads the 8x8 map; one conv fewer
    both_cuts           the last two together

Prints MACs, p50 and the student/teacher ratio per target. Writes nothing. Answers whether a faster student at the
same depth should cut arithmetic or ops (docs/distill.md quotes a run).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgekit.data import Preprocess  # noqa: E402
from edgekit.macs import count_macs  # noqa: E402
from edgekit.model import load_model  # noqa: E402
from edgekit.student_timing import TEACHER, parse_targets, student_as_model, time_candidates  # noqa: E402
from edgekit.table import format_table  # noqa: E402
from edgekit.zoo.fast_students import ResNetS  # noqa: E402
from edgekit.zoo.mobilenet import ConvBNAct  # noqa: E402

CIFAR10 = Preprocess(height=32, width=32, channels=3, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))


class Block(nn.Module):
    """The basic block with an inner width of its own: ReLU(x + conv(ReLU(conv(x))))."""

    def __init__(self, ch: int, inner: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = ConvBNAct(ch, inner, 3, act=nn.ReLU), ConvBNAct(inner, ch, 3, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(self.conv1(x)))


class Variant(nn.Module):
    """resnet_s_100's layout at 32 px with the cuts above as switches."""

    def __init__(self, inner: float = 1.0, stage1_conv: bool = True, last_stage: bool = True) -> None:
        super().__init__()
        layers = [ConvBNAct(3, 32 if stage1_conv else 64, 3, 2, act=nn.ReLU)]
        if stage1_conv:
            layers.append(ConvBNAct(32, 64, 3, 1, act=nn.ReLU))
        layers += [Block(64, int(64 * inner)), ConvBNAct(64, 128, 3, 2, act=nn.ReLU), Block(128, int(128 * inner))]
        if last_stage:
            layers.append(ConvBNAct(128, 128, 3, 2, act=nn.ReLU))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--target", default="openvino,arm:tflite")
    args = ap.parse_args()
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    variants = {"resnet_s_100": ResNetS(3, 10, 1.0, 32), "inner_0.75": Variant(inner=0.75),
                "inner_0.5": Variant(inner=0.5), "no_stage1_conv": Variant(stage1_conv=False),
                "no_last_stage": Variant(last_stage=False),
                "both_cuts": Variant(stage1_conv=False, last_stage=False)}
    macs = {k: count_macs(m.eval(), (3, 32, 32)) for k, m in variants.items()}
    candidates = {TEACHER: load_model(REPO / "models/cifar10_net.pt2")}
    candidates.update({k: student_as_model(m, k, (3, 32, 32), x) for k, m in variants.items()})
    result = time_candidates(candidates, parse_targets(args.target), CIFAR10, 10, threads=args.threads,
                             runs=args.runs)
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, batch 1, {args.threads} thread(s), "
          f"{args.runs} calls each, one interleaved run per target; ratio = p50 / the teacher's p50")
    rows = []
    for key in variants:
        cells = [key, f"{macs[key] / 1e6:.1f} M"]
        for entry in result["targets"]:
            cells.append(f"{entry['latency_ms'][key]['p50']:.4f} ms ({1 / entry['speedup'][key]:.2f}x)")
        rows.append(cells)
    rows.append([TEACHER, "-"] + [f"{e['latency_ms'][TEACHER]['p50']:.4f} ms" for e in result["targets"]])
    print(format_table(["student", "MACs"] + [f"{e['target']}:{e['pair']}" for e in result["targets"]], rows))


if __name__ == "__main__":
    main()
