"""Bounded memory: calibrating 4x the images must not take 4x the memory. ORT's calibrators hold every activation
of every image they are given until they reduce them, so edgekit feeds them in chunks (calibration.CALIB_CHUNK)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

# Calibrate a mid-size net (32 channels at 112x112: ~10 MB of activations an image) in a fresh process and print
# its peak resident memory. Fed all at once, 48 more images would add about 500 MB.
SCRIPT = """
import resource, sys, torch
from pathlib import Path
from edgekit.calibration import calibrate
from edgekit.data import Preprocess, open_images
from tests.models import TinyCNN

torch.onnx.export(TinyCNN(1, 10, width=32).eval(), (torch.zeros(1, 1, 112, 112),), sys.argv[2],
                  input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "n"}}, dynamo=False)
images = open_images(sys.argv[3], "calibration").sample(int(sys.argv[1]), 0)
calibrate(Path(sys.argv[2]), images, Preprocess(112, 112, 1, (0.286,), (0.353,), 112), "percentile")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def peak_mb(n: int, tmp_path) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(n), str(tmp_path / f"m{n}.onnx"), str(REPO / "calibration")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kilobytes on Linux only")
def test_calibration_memory_does_not_grow_with_the_number_of_images(tmp_path):
    small, large = peak_mb(16, tmp_path), peak_mb(64, tmp_path)
    assert large - small < 100, f"16 images: {small} MB, 64 images: {large} MB"


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_dropped_model_is_freed_at_once(tmp_path, runtime):
    """Sensitivity opens one session per layer, compile's fallback one model per try: each must go (with its
    arena or compiled model) when dropped, not wait for Python's cyclic garbage collector, or several 224-px
    sessions are resident at once (2.23 GB peak for Lite0's quantize before)."""
    import gc
    import weakref

    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "relu.onnx")
    if runtime == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra is not installed")
        from edgekit.board.openvino_board import OpenVINOModel

        model = OpenVINOModel(tmp_path / "relu.onnx", "CPU", threads=1)
    else:
        from edgekit.ort_runner import OrtModel

        model = OrtModel(tmp_path / "relu.onnx", threads=1)
    assert np.array_equal(model(np.array([[-1.0, 0.0, 2.0, -3.0]], np.float32)), [[0.0, 0.0, 2.0, 0.0]])
    alive = weakref.ref(model)
    gc.disable()  # only reference counting may free it
    try:
        del model
        assert alive() is None
    finally:
        gc.enable()
