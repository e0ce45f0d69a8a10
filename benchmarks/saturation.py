"""How much of int8's error on this machine is the machine's: a workspace's model quantized with every layer int8
(the workspace's ranges, no layer kept in float), run in ONNX Runtime with its fused int8 kernels and with the
graph as written (ORT_DISABLE_ALL: each Q/DQ node around a float op, exact sums), both against fp32 on the
workspace's eval images.

On an x86 CPU without VNNI the fused u8 x s8 kernels add pairs of products into 16 bits (VPMADDUBSW) and saturate
where a layer reads large values with large weights; ARM CPUs, VNNI and TensorRT sum exactly. The gap between the two
columns is what such a CPU adds (edgekit's arm and jetson checks use the exact sums there: docs/compile.md).

    python benchmarks/saturation.py WORKSPACE     # e.g. /tmp/edgekit-bench/ws-lite2 (benchmarks/compare_runtimes.py)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run(path: Path, images, pre, optimize: bool) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": x})[0] for x in images.batches(pre, 25)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspace", type=Path)
    args = parser.parse_args()

    from edgekit.board.ort_session import int8_sums_saturate_here
    from edgekit.board.timing import environment
    from edgekit.calibration import Calibration
    from edgekit.data import Preprocess
    from edgekit.qdq_build import quantize_qdq
    from edgekit.workspace import workspace_images

    ws = args.workspace
    manifest = json.loads((ws / "manifest.json").read_text())
    pre = Preprocess.from_dict(manifest["preprocess"])
    _, eval_set, _ = workspace_images(manifest)
    env = environment()
    print(f"CPU: {env['cpu']}; int8 ISA: {', '.join(env['isa']) or 'none'}; "
          f"fused int8 sums saturate here: {'yes' if int8_sums_saturate_here() else 'no'}")
    source = ws / manifest.get("int8_source", "model.fp32.onnx")
    reference = run(ws / "model.fp32.onnx", eval_set, pre, True).argmax(1)
    with tempfile.TemporaryDirectory() as tmp:
        int8 = Path(tmp) / "model.int8.onnx"
        quantize_qdq(source, int8, Calibration.load(ws / "calibration.json"))
        for optimize, name in ((True, "ORT fused int8 kernels"), (False, "graph as written (exact sums)")):
            agreement = (run(int8, eval_set, pre, optimize).argmax(1) == reference).mean()
            print(f"{name:32s} agreement with fp32 {100 * agreement:.1f} % ({len(eval_set)} eval images)")


if __name__ == "__main__":
    main()
