"""What each stage's result depends on, as one short hash: its inputs key.

A stage records its key in manifest.json when it commits (quantize under stages.quantize, compile and bench under
targets.<name>); `edgekit run` computes the same keys from its recipe and skips a stage only when the manifest
records that key, so a hand-run `edgekit quantize other.pt` in the same workspace is noticed. Keys chain: the
compile key contains the quantize key, the bench key the compile key, so a changed input re-runs what follows.
Options that change only speed of the work itself (threads, evaluation batch) are left out.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .board.timing import TIMED_CALL


def fingerprint(spec: str | Path | None) -> str | None:
    """Cheap identity of a data source: a changed, added or removed file changes it (names, sizes, mtimes)."""
    from .datasets import NAMED

    if spec is None:
        return None
    spec = str(spec)
    if spec in NAMED:
        try:
            return f"{spec}@{NAMED[spec]().source}"  # the Debian package's full set, or the bundled subset
        except FileNotFoundError:
            return f"{spec}@unavailable"  # the stage that reads it says so, with what to install
    path = Path(spec)
    if not path.exists():
        return f"missing:{spec}"
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(path) if path.is_dir() else p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def key_of(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def quantize_key(model_sha256: str, calib, eval, inputs_identity: dict, method: str, calib_size, seed: int,  # noqa: A002
                 max_drop, labels=None, classes=None, task=None, output_roles=None) -> str:
    # The output roles join the key only when given: a workspace quantized before they existed keeps its key.
    roles = (task, sorted((output_roles or {}).items())) if task or output_roles else ()
    return key_of("quantize", model_sha256, fingerprint(calib), fingerprint(eval), inputs_identity, method,
                  calib_size, seed, max_drop, fingerprint(labels), fingerprint(classes), *roles)


def compile_key(quantize: str, target: str, device: str, batch: int, openvino_source, max_drop,
                openvino_cpus=None) -> str:
    # openvino_cpus only joins the key when given, so workspaces compiled before it existed keep their keys
    extra = () if openvino_cpus is None else (openvino_cpus,)
    return key_of("compile", quantize, target, device, batch, openvino_source, max_drop, *extra)


def bench_key(compile: str, eval, batch: int, runs: int, warmup: int, warmup_seconds: float,  # noqa: A002
              gates: dict, remote, strict_timing: bool = False, labels=None, classes=None) -> str:
    # strict_timing turns an inconclusive gate into a failure, so it changes the result
    # TIMED_CALL: a bench timed the older way (conversions inside the timed call) is not reused
    return key_of("bench", TIMED_CALL, compile, fingerprint(eval), fingerprint(labels), fingerprint(classes), batch,
                  runs, warmup, warmup_seconds, gates, remote, strict_timing)


def workspace_eval_key(manifest: dict) -> str:
    """Identity of the eval images a quantized workspace evaluates on (its eval set, or, without one, the held-out
    part of its calibration images): outputs computed on them stay valid while this key does."""
    return key_of(fingerprint(manifest["eval_data"]["path"]), fingerprint(manifest["calibration_data"]["path"]),
                  manifest["calibration_data"].get("seed"), manifest["preprocess"])
