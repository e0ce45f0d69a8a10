"""Where two OpenVINO IRs spend their time: the CPU plugin's per-node profile (PERF_COUNT), summed by kernel, with
the two IRs' inferences interleaved one by one so that a busy machine slows both alike.

A p50 ratio over a whole inference says *that* one IR is slower; this says *where*: e.g. edgekit's EfficientNet
IR with two layers kept in float against plain NNCF's all-int8 IR shows the float island's f32 kernels and layout
reorders beside kernels that are otherwise the same. Batch 1, each IR at its own precision hint.

    python benchmarks/profile_openvino.py A.xml B.xml [--hint-a f32] [--hint-b default] [--size 260] [--runs 300]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np


def open_request(path: str, hint: str, size: int, threads: int):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(path)
    model.reshape([1, 3, size, size])
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True}
    if hint != "default":
        config["INFERENCE_PRECISION_HINT"] = hint
    request = core.compile_model(model, "CPU", config).create_infer_request()
    request.set_input_tensor(ov.Tensor(np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)))
    return request


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--hint-a", default="f32", help="INFERENCE_PRECISION_HINT of A (default f32, edgekit's runner)")
    ap.add_argument("--hint-b", default="default", help="of B (default: the plugin's own, as plain NNCF runs)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    requests = [open_request(args.a, args.hint_a, args.size, args.threads),
                open_request(args.b, args.hint_b, args.size, args.threads)]
    for _ in range(20):
        for r in requests:
            r.infer()
    totals = [defaultdict(float), defaultdict(float)]
    for i in range(args.runs):
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):  # alternate which goes first
            requests[k].infer()
            for p in requests[k].profiling_info:
                # The plugin spells the same kernel with I8 or i8 depending on the signedness of its input.
                totals[k][p.exec_type.replace("I8", "i8")] += p.real_time.total_seconds() * 1e6 / args.runs
    print(f"{'kernel (exec type)':36s} {'A us':>8s} {'B us':>8s}   A = {args.a} ({args.hint_a}), B = {args.b} ({args.hint_b})")
    for kernel in sorted(set(totals[0]) | set(totals[1]), key=lambda k: -max(totals[0][k], totals[1][k])):
        if max(totals[0][kernel], totals[1][kernel]) >= 10:
            print(f"{kernel:36s} {totals[0][kernel]:8.0f} {totals[1][kernel]:8.0f}")
    a, b = sum(totals[0].values()), sum(totals[1].values())
    print(f"{'sum over nodes':36s} {a:8.0f} {b:8.0f}   A/B {a / b:.3f}")


if __name__ == "__main__":
    main()
