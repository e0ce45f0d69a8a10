"""How much of int8's error on this machine is the machine's: a workspace's model quantized with every layer int8
(the workspace's ranges, no layer kept in float), run in ONNX Runtime with its fused int8 kernels and with the
graph as written (ORT_DISABLE_ALL: each Q/DQ node around a float op, exact sums), both against fp32 on the
workspace's eval images.

On an x86 CPU without VNNI the fused u8 x s8 kernels add pairs of products into 16 bits (VPMADDUBSW) and saturate
where a layer reads large values with large weights; ARM CPUs, VNNI and TensorRT sum exactly. The gap between the two
columns is what such a CPU adds (edgekit's arm and jetson checks use the exact sums there: docs/compile.md).

    python benchmarks/saturation.py WORKSPACE     # e.g. /tmp/edgekit-bench/ws-lite2 (benchmarks/compare_runtimes.py)

With --openvino, the openvino target's QDQ model (the workspace's float layers kept) is analysed as the target's
float search does on such a CPU (edgekit/targets/openvino_overflow.py: the layers whose 16-bit pair sums clip, worst
first), and OpenVINO's agreement on this CPU is measured for three cures: the weight headroom the openvino target
builds with (each clipping output channel's weight range widened just enough that its pair sums fit), 7-bit weights
on every layer that clips (NNCF's OverflowFix, applied where it is needed), and the K worst of them kept in float.

    python benchmarks/saturation.py WORKSPACE --openvino --float-worst 2,4,6
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
    parser.add_argument("--openvino", action="store_true", help="the openvino target's clipping layers and cures")
    parser.add_argument("--float-worst", default="2,4,6", help="K values: the K worst clipping layers in float")
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
    if args.openvino:
        openvino_cures(ws, manifest, pre, eval_set, reference, [int(k) for k in args.float_worst.split(",")])


def openvino_cures(ws: Path, manifest: dict, pre, eval_set, reference: np.ndarray, float_worst: list[int]) -> None:
    import onnx
    import openvino as ov

    import edgekit.targets.openvino_qdq as openvino_qdq
    from edgekit.calibration import Calibration
    from edgekit.targets.openvino import _convert_tuned
    from edgekit.targets.openvino_overflow import clipping_layers, int8_layers, spread_sample, weight_headroom
    from edgekit.workspace import workspace_images

    source = ws / manifest.get("int8_source", "model.fp32.onnx")
    cal = Calibration.load(ws / "calibration.json")
    kept = list(manifest.get("float_layers", []))
    calib, _, _ = workspace_images(manifest)
    core = ov.Core()

    def agreement(path: Path, exact: bool = False) -> float:
        if exact:
            out = run(path, eval_set, pre, False)
        else:
            compiled = core.compile_model(_convert_tuned(path, [], {}), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            out = np.concatenate([compiled(x)[compiled.outputs[0]] for x in eval_set.batches(pre, 25)])
        return 100 * (out.argmax(1) == reference).mean()

    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.onnx"
        openvino_qdq.build_openvino_qdq(source, plain, cal, kept)
        clipping = sorted(clipping_layers(plain, spread_sample(calib, pre)).items(),
                          key=lambda item: item[1])
        print(f"openvino QDQ model, {len(kept)} float layer(s) kept from quantize: {len(clipping)} layer(s) clip "
              f"(worst: {', '.join(f'{n} {db:.1f} dB' for n, db in clipping[:6])})")
        print(f"  without headroom: OpenVINO {agreement(plain):.1f} %, exact sums {agreement(plain, True):.1f} %")
        widen = weight_headroom(plain, spread_sample(calib, pre))
        widened = Path(tmp) / "headroom.onnx"
        openvino_qdq.build_openvino_qdq(source, widened, cal, kept, widen)
        print(f"  weight headroom (the target's build; {sum(int((f > 1).sum()) for f in widen.values())} channels "
              f"of {len(widen)} layers widened): OpenVINO {agreement(widened):.1f} %, "
              f"exact sums {agreement(widened, True):.1f} %")
        # 7-bit weights on the clipping layers (NNCF's OverflowFix): every channel's range widened 127/64x.
        seven = Path(tmp) / "seven.onnx"
        layers = {layer["name"]: layer["weight"].shape[0] for layer in int8_layers(onnx.load(str(plain)))}
        openvino_qdq.build_openvino_qdq(source, seven, cal, kept,
                                        {name: np.full(layers[name], 127 / 64) for name, _ in clipping})
        print(f"  7-bit weights on all {len(clipping)}: OpenVINO {agreement(seven):.1f} %, "
              f"exact sums {agreement(seven, True):.1f} %")
        for k in float_worst:
            if 0 < k <= len(clipping):
                path = Path(tmp) / f"float{k}.onnx"
                openvino_qdq.build_openvino_qdq(source, path, cal, kept + [name for name, _ in clipping[:k]])
                print(f"  the {k} worst in float too: OpenVINO {agreement(path):.1f} %")


if __name__ == "__main__":
    main()
