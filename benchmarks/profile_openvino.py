"""Where two OpenVINO IRs spend their time: the CPU plugin's per-node profile (PERF_COUNT), summed by kernel, with
the two IRs' inferences interleaved one by one so that a busy machine slows both alike.

A p50 ratio over a whole inference says *that* one IR is slower; this says *where*: e.g. edgekit's EfficientNet
IR with two layers kept in float against plain NNCF's all-int8 IR shows the float island's f32 kernels and layout
reorders beside kernels that are otherwise the same. Batch 1, each IR at its own precision hint.

    python benchmarks/profile_openvino.py A.xml B.xml [--hint-a f32] [--hint-b default] [--size 260] [--runs 300]
    python benchmarks/profile_openvino.py A.xml B.xml --wall [--size 260]

--wall: no profile, the wall-clock p50 of each IR's bare inference (PERF_COUNT off, which adds per-node cost),
each IR compiled both at f32 and at the plugin's default precision (bf16 for what is not int8 on CPUs with
AVX512-BF16/AMX), all four interleaved; ratios to B at its default, as compare_runtimes times plain NNCF.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np


def open_request(path: str, hint: str, size: int, threads: int, profile: bool = True):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(path)
    model.reshape([1, 3, size, size])
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "PERF_COUNT": profile}
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
    ap.add_argument("--wall", action="store_true", help="wall-clock p50s at both precisions instead of the profile")
    args = ap.parse_args()
    if args.wall:
        wall(args)
        return

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


def wall(args) -> None:
    import time

    runs = {f"{label} {hint}": open_request(path, hint, args.size, args.threads, profile=False)
            for label, path in (("A", args.a), ("B", args.b)) for hint in ("f32", "default")}
    names = list(runs)
    for request in runs.values():
        for _ in range(20):
            request.infer()
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for i in range(args.runs):
        for name in names[i % len(names):] + names[: i % len(names)]:  # rotate who goes first
            t0 = time.perf_counter()
            runs[name].infer()
            seconds[name].append(time.perf_counter() - t0)
    base = float(np.median(seconds["B default"]))
    print(f"A = {args.a}, B = {args.b}; batch 1, {args.runs} interleaved calls each")
    for name in names:
        p50 = float(np.median(seconds[name]))
        print(f"{name:10s} p50 {1000 * p50:7.3f} ms   / B default {p50 / base:.3f}")


if __name__ == "__main__":
    main()
