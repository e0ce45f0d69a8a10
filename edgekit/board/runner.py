"""The on-device half of `edgekit bench --remote`: `python3 -m edgekit_board.runner job.json` on the board.

It does only what has to happen on the device: open the int8 artifact and its reference with the target's own
board module (named by the job), compute both outputs on the preprocessed eval inputs, and time both in the
interleaved loop every bench uses. Metrics are computed back on the host by the same code as a local bench.
Nothing here knows about any target: what a target's artifacts need is in its board module. `bench --emulate` runs
it the same way on an emulated aarch64 CPU (edgekit/emulator.py).

job.json: {"board_module", "files": {"int8", "fp32"} (names beside job.json), "inputs" (.npy, float32 N,C,H,W),
"batch", "threads" (0: all cores there), "runs", "warmup", "warmup_seconds", "options" (the target's, e.g.
{"device": "CPU"}), optionally "roles" (default ["int8", "fp32"]: the artifacts to open and run) and "time" (default
true; false: outputs only, as on an emulated CPU, whose time is not the device's)}. It writes result.json and
<role>.npy for each role beside job.json (fixed names: the host reads nothing else back). Progress goes to stderr;
a failure exits 1 with "error: ..." as its last line.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from . import BoardError
from .timing import ACCURACY_BATCH, environment, interleaved_latency, load_between, load_snapshot

RESULT_FILES = ("result.json", "int8.npy", "fp32.npy")


def main(job_path: str) -> None:
    job_file = Path(job_path)
    here = job_file.parent
    job = json.loads(job_file.read_text())
    board = importlib.import_module(f"{__package__}.{job['board_module']}")
    threads = job["threads"] or os.cpu_count() or 1
    inputs = np.load(here / job["inputs"], mmap_mode="r")  # a board's memory may be smaller than the eval set
    models = {}
    for which in job.get("roles", ("int8", "fp32")):
        models[which] = board.open_model(here / job["files"][which], which, threads, job.get("options", {}))
        log(f"loaded {job['files'][which]} on {models[which].runtime}")

    log(f"outputs of {' and '.join(models)} on {len(inputs)} images")
    for which, model in models.items():
        starts = range(0, len(inputs), ACCURACY_BATCH)
        outs = []
        for n, i in enumerate(starts, 1):
            outs.append(model(np.asarray(inputs[i : i + ACCURACY_BATCH])))
            if len(starts) > 1 and (n % max(1, len(starts) // 4) == 0 or n == len(starts)):  # a slow board: progress
                log(f"{which}: {min(i + ACCURACY_BATCH, len(inputs))}/{len(inputs)} images")
        np.save(here / f"{which}.npy", np.concatenate(outs))

    timings = load = None
    # An emulated runtime's or CPU's latency says nothing about the device: not measured.
    if job.get("time", True) and "fp32" in models and not models["int8"].emulated:
        x = np.asarray(inputs[np.arange(job["batch"]) % len(inputs)])
        total, done = 2 * job["runs"], 0

        def tick():
            nonlocal done
            done += 1
            if done % max(1, total // 4) == 0 or done == total:
                log(f"latency {done}/{total} calls")

        before = load_snapshot()
        timings = interleaved_latency({"int8": models["int8"], "reference": models["fp32"]}, x, job["runs"],
                                      job["warmup"], job["warmup_seconds"], tick)
        load = load_between(before, load_snapshot())

    env = environment()
    runtime = sys.modules.get(board.RUNTIME_MODULE)
    # A runtime from JetPack or a vendor image may have no pip metadata; the loaded module knows its version.
    env["versions"].setdefault(board.RUNTIME_MODULE, getattr(runtime, "__version__", "unknown"))
    int8 = models["int8"]
    result = {"timings_ms": timings, "load": load, "providers": {k: list(m.providers) for k, m in models.items()},
              "runtime": int8.runtime, "emulated": bool(int8.emulated), "threads": threads,
              "precision": int8.precision_hint, "environment": env,
              # LiteRT: how much of each graph its delegate (XNNPACK) took, read from the interpreter
              "delegation": {k: {"delegated_ops": m.delegated_ops, "builtin_ops": list(m.builtin_ops)}
                             for k, m in models.items() if hasattr(m, "delegated_ops")}}
    (here / "result.json").write_text(json.dumps(result))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 -m edgekit_board.runner job.json")
    try:
        main(sys.argv[1])
    except BoardError as e:
        sys.exit(f"error: {e}")
