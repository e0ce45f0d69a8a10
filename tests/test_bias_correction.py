"""Bias correction (edgekit/bias_correction.py) and the float logits of the portable int8 model."""

from __future__ import annotations

import json

import numpy as np
import onnx
import torch

from edgekit.bias_correction import output_shift


def test_output_shift_is_the_mean_output_error():
    # On an input that is constant per channel (no border effects: no padding), the output error of rounded
    # weights is exactly the per-channel constant the bias must absorb, for grouped and ordinary convs alike.
    rng = np.random.default_rng(0)
    for cin, cout, group in ((8, 8, 8), (6, 4, 1), (8, 12, 4)):
        w = rng.normal(size=(cout, cin // group, 3, 3))
        dw = rng.normal(scale=0.01, size=w.shape)
        mean = rng.normal(size=cin)
        x = torch.tensor(np.broadcast_to(mean[None, :, None, None], (1, cin, 7, 7)).copy())
        err = torch.nn.functional.conv2d(x, torch.tensor(w + dw), groups=group) - \
            torch.nn.functional.conv2d(x, torch.tensor(w), groups=group)
        expected = err.mean(dim=(0, 2, 3)).numpy()
        assert np.allclose(output_shift(dw, mean, group), expected, atol=1e-9)


def test_workspace_int8_has_bias_correction_and_float_logits(quantized_workspace):
    cal = json.loads((quantized_workspace / "calibration.json").read_text())
    assert cal["channel_means"], "calibration.json carries the statistics bias correction needs"
    report = json.loads((quantized_workspace / "quantize.json").read_text())
    assert report["quantization"]["bias_corrected_convs"] > 0
    graph = onnx.load(str(quantized_workspace / "model.int8.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    # The logits leave the last layer in float: no Q/DQ pair rounds them to 8 bits.
    assert producer[graph.output[0].name].op_type != "DequantizeLinear"
