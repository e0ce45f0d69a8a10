"""Multiply-accumulates of one forward pass: the size measure that predicts cost on an edge CPU/NPU.

Counted at the dispatcher (torch's FlopCounterMode), not with forward hooks on nn.Conv2d/nn.Linear: a model
loaded from an ExportedProgram or TorchScript file has no such submodules (its convolutions are graph
calls), and the teacher usually comes as one. Convolutions and matrix products are counted, each FLOP
pair being one MAC; BatchNorm, activations and pooling are not (the usual convention, as in the MobileNet papers).
"""

from __future__ import annotations


def count_macs(model, input_shape: tuple[int, ...]) -> int:
    """MACs of `model` on one image of `input_shape` (C, H, W), batch 1."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    return counter.get_total_flops() // 2
