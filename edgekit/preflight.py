"""Warnings that point to a fix, printed as `  warning: ...` by quantize and compile and recorded in their JSON.

They flag what costs accuracy or speed without failing anything: per-tensor depthwise weights, a CPU without
int8 dot-product instructions, and layer kinds a target runs outside int8.
"""

from __future__ import annotations

import onnx

from .qdq_rules import QdqGraph

def depthwise_per_tensor(model: onnx.ModelProto) -> list[str]:
    """Depthwise convs (group == channels > 1) whose weights share one scale: one channel's range sets the grid
    for all of them, the classic MobileNet int8 accuracy loss."""
    g = QdqGraph(model)
    found = []
    for n in g.nodes:
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        dq = g.dq_input(n, 1) if n.op_type == "Conv" else None
        if dq is None or group <= 1:
            continue
        scale = g.qparams(dq)[0]
        if scale is not None and scale.size == 1:
            found.append(f"depthwise conv {n.name or n.output[0]!r} ({group} channels) has per-tensor weight scales: "
                         "quantize its weights per channel, or keep it in float with --max-drop")
    return found


def cpu_without_dot_product() -> list[str]:
    from .environment import environment

    if environment().get("int8_dot_product"):
        return []
    return ["this CPU has no int8 dot-product instructions (AVX-512 VNNI / AVX-VNNI / AMX / NEON dot product): int8 "
            "may run no faster, or slower, than fp32 here, and on x86 ONNX Runtime's int8 kernels saturate 16-bit sums "
            "(edgekit measures ONNX models as written here, with exact sums, as devices compute them; ORT's own "
            "kernels on this CPU would lose more); bench on the target device (--remote)"]


# The layer kinds that carry a CNN's compute (ONNX names, and OpenVINO's runtime names for them). Cheap ops
# (activations, pooling, reshapes) outside int8 are by design on every target and not worth a warning.
COMPUTE_KINDS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Convolution", "GroupConvolution", "FullyConnected"}


def not_int8(target: str, precision: dict[str, str], hint: str) -> list[str]:
    """Compute layer kinds a target runs outside int8, with the target's own `hint` (Target.not_int8_hint)."""
    outside = [f"{kind} ({p})" for kind, p in precision.items() if p != "int8" and kind in COMPUTE_KINDS]
    if not outside:
        return []
    return [f"{target}: not int8 there: {', '.join(outside)}; {hint}".rstrip("; ")]


# A labelled eval whose fp32 top-1 is below this many times chance (1 / classes) means the model is not seeing
# what it was trained on; 1.5x keeps a weak-but-working 10-class model (20 %+) clear of it.
CHANCE_FACTOR = 1.5


def near_chance(top1: float | None, num_classes: int) -> str | None:
    """A warning when the fp32 model's own top-1 on labelled images is about chance: then every int8-vs-fp32 figure
    (agreement, drop) compares two broken pipelines and a --max-drop gate passes for nothing."""
    if top1 is None or num_classes < 2 or top1 > CHANCE_FACTOR / num_classes:
        return None
    return (f"the fp32 model's own top-1 is {100 * top1:.1f} %, about chance for {num_classes} classes "
            f"({100 / num_classes:.1f} %): its inputs are probably not prepared as in training. Check the label order "
            "(class sub-folders sort alphabetically), --mean/--std (0..1 scale), the channel order (RGB) and the "
            "size; int8-vs-fp32 figures mean nothing until this is fixed")
