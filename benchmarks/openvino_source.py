"""Which int8 IR should the openvino target build by default: NNCF on the OpenVINO model, or the portable QDQ model?

Compiles a quantized workspace both ways and reports, for each int8 IR and the fp32 reference IR, top-1 agreement
with the fp32 IR on the workspace's eval images (and top-1 where they are labelled) and the latency at batch 1
on the CPU: rounds interleave the models so a busy machine slows them all alike.

    edgekit quantize models/fashion_resnet.pt2 --calib calibration --eval data/fashion_mnist_eval.npz \\
        --mean 0.286 --std 0.353 --workdir /tmp/ws
    python benchmarks/openvino_source.py /tmp/ws

Measured 2026-11-25 (openvino 2026.4.1, nncf 3.4.0, AMD EPYC with AVX512-VNNI, 2 threads; 320 calibration
images, percentile ranges, the full 10k Fashion-MNIST test set; workspaces from benchmarks/compare_runtimes.py).
Both sources start from the same fp32 IR (activations rewritten for the plugin, targets/openvino_graph.py):

    bundled teacher     agreement   cosine    top-1  p50 ms (batch 1)  build s
    int8 (nncf)           99.21 %  0.99874  94.63 %             0.367      3.7
    int8 (qdq)            99.93 %  0.99997  94.68 %             0.375      1.3
    fp32                 100.00 %  1.00000  94.69 %             0.892        -

    distilled student   agreement   cosine    top-1  p50 ms (batch 1)  build s
    int8 (nncf)           99.64 %  0.99951  93.50 %             0.680     10.1
    int8 (qdq)            99.56 %  0.99966  93.52 %             0.681      2.7
    fp32                 100.00 %  1.00000  93.50 %             0.876        -

Latency is a tie on both; qdq agrees far better on the teacher and about as well on the student (higher logit
cosine, 8 images less agreement of 10,000), keeps the top-1, and builds in a third of the time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgekit import metrics
from edgekit.workspace import require_quantized
from edgekit.data import Preprocess
from edgekit.workspace import workspace_images
from edgekit.table import format_table, pct
from edgekit.targets import CompileContext
from edgekit.targets.openvino import SOURCES, OpenVINOTarget
from edgekit.workspace import Workspace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace", type=Path, help="a workspace after `edgekit quantize`")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=50, help="timed calls per model per round")
    args = ap.parse_args()

    manifest = require_quantized(Workspace(args.workspace))
    pre = Preprocess.from_dict(manifest["preprocess"])
    calib_set, eval_set, eval_label = workspace_images(manifest)  # exactly what `edgekit compile` uses
    target = OpenVINOTarget()
    reason = target.available()  # imports openvino and nncf, so build times below leave the imports out
    if reason:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory() as tmp:
        runners, build_s = {}, {}
        for source in SOURCES:
            out = Path(tmp) / source
            out.mkdir()
            ctx = CompileContext(args.workspace, out, manifest, pre, calib_set, {"openvino_source": source},
                                 log=lambda *_: None)
            t0 = time.perf_counter()
            target.compile(ctx)
            build_s[source] = time.perf_counter() - t0
            runners[f"int8 ({source})"] = target.runner(out, "int8", args.threads)
        runners["fp32"] = target.runner(Path(tmp) / SOURCES[0], "fp32", args.threads)

        batches = list(eval_set.batches(pre, 64))
        logits = {name: np.concatenate([run(x) for x in batches]) for name, run in runners.items()}
        latency = interleaved_latency(runners, batches[0][:1], args.rounds, args.runs)

    rows = []
    for name, y in logits.items():
        top1 = pct(metrics.topk(y, np.asarray(eval_set.labels))) if eval_set.labels is not None else "-"
        source = name[len("int8 ("):-1] if name.startswith("int8") else None
        rows.append([name, pct(metrics.agreement(y, logits["fp32"])), f"{metrics.cosine(y, logits['fp32']):.5f}",
                     top1, f"{latency[name]:.3f}", f"{build_s[source]:.1f}" if source else "-"])
    print(format_table(["model", "agreement", "cosine", "top-1", "p50 ms (batch 1)", "build s"], rows))
    print(f"eval: {eval_label}; calibration: {len(calib_set)} images; CPU, {args.threads} threads, "
          f"{args.rounds} rounds x {args.runs} runs")


def interleaved_latency(runners: dict, x: np.ndarray, rounds: int, runs: int) -> dict[str, float]:
    """p50 milliseconds per call; each round times every model in turn, so load changes hit all of them."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():  # warm-up: first calls allocate and pick kernels
        for _ in range(10):
            run(x)
    for _ in range(rounds):
        for name, run in runners.items():
            for _ in range(runs):
                t0 = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - t0)
    return {name: 1000 * float(np.median(t)) for name, t in times.items()}


if __name__ == "__main__":
    main()
