"""The workspace's model.fp32.onnx rebuilt as a torch module, so litert-torch can convert a model edgekit cannot
load and trace again (TorchScript, which torch.export does not trace; a pickled nn.Module, which compile never
unpickles; a source file moved or changed since quantize). The graph is the one every other target compiles.

Why not the onnx2torch package (measured, 2026-11): its conversions were as exact as this (max |diff| 4e-6 on
the test model, 2e-6 on models/fashion_resnet.pt2), but it imports torchvision at import time, whose PyPI wheel
only loads beside a CUDA build of torch ("operator torchvision::nms does not exist" beside torch 2.13+cpu), and
`pip install onnx2torch` resolved the newest torchvision and replaced torch 2.13+cpu with torch 2.14.1 and its
CUDA wheels. An image classifier exported by edgekit uses a couple of dozen ONNX ops; those are mapped here one
to one onto the torch functions litert-torch lowers, and any other op stops the rebuild by name.

Ops whose inputs are all known before the image arrives (shape arithmetic: Shape, Gather, Concat of sizes, ...)
are folded with ONNX's reference evaluator at trace time, so the traced graph holds only the image's ops.
"""

from __future__ import annotations

import operator

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

# Shape arithmetic (and constants): rebuilt only by folding, when every input is known at trace time.
FOLDED = ("Constant", "Shape", "Gather", "Slice", "Cast", "ConstantOfShape", "Range", "Equal", "Where", "Expand",
          "Size")


class UnsupportedOp(Exception):
    """An ONNX op with no mapping here; the message names it and its node."""

    def __init__(self, node, why: str = "no torch mapping in edgekit's ONNX rebuild") -> None:
        self.op_type = node.op_type
        self.node = node.name or f"writing {node.output[0]}"  # exporters leave some node names empty
        super().__init__(f"ONNX op {node.op_type} (node {self.node}): {why}")


def rebuild(onnx_path) -> OnnxModule:
    """model.fp32.onnx as an nn.Module in eval mode (raises UnsupportedOp before any tracing)."""
    return OnnxModule(onnx.load(str(onnx_path)))


class OnnxModule(torch.nn.Module):
    """Runs the ONNX graph node by node with torch functions. Float initializers are buffers: constants to
    litert-torch, which puts them into the .tflite ops as their weights."""

    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__()
        graph = model.graph
        self.nodes = list(graph.node)
        self.input_name, self.output_names = graph.input[0].name, [o.name for o in graph.output]
        self.static = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.buffer_of = {}
        for k, (name, value) in enumerate(self.static.items()):
            # Scalars stay numbers: ops read them at trace time (Clip's min/max, Pad's value), and a buffer is a
            # fake tensor with no value while torch.export traces.
            if value.dtype == np.float32 and value.ndim > 0:
                self.register_buffer(f"w{k}", torch.from_numpy(value.copy()))
                self.buffer_of[name] = f"w{k}"
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
        self.hardswish, self.skip = _hardswish_muls(self.nodes)
        for node in self.nodes:  # fail before tracing, naming the op
            if node.op_type not in OPS and node.op_type not in FOLDED:
                raise UnsupportedOp(node)
        self.eval()

    def forward(self, x: torch.Tensor):
        env = {self.input_name: x}
        for k, node in enumerate(self.nodes):  # by position: exporters leave some node names empty
            if k in self.skip:
                continue
            if k in self.hardswish:
                env[node.output[0]] = F.hardswish(self.value(env, node.input[self.hardswish[k]]))
                continue
            args = [self.value(env, n) if n else None for n in node.input]
            if all(a is None or isinstance(a, np.ndarray) for a in args):
                outs = fold(node, args, self.opset)  # shape arithmetic: numbers known at trace time
            elif node.op_type in FOLDED:
                raise UnsupportedOp(node, "computed from the image; edgekit's rebuild only folds it on constants")
            else:
                out = OPS[node.op_type](node, helper_attrs(node), args)
                outs = out if isinstance(out, (list, tuple)) else [out]
            env.update(zip(node.output, outs))
        outs = tuple(env[n] for n in self.output_names)  # the graph's order: the .tflite's signature keeps it
        return outs[0] if len(outs) == 1 else outs

    def value(self, env: dict, name: str):
        if name in env:
            return env[name]
        if name in self.buffer_of:
            return getattr(self, self.buffer_of[name])
        return self.static[name]


def tensor(v) -> torch.Tensor:
    return v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))


def helper_attrs(node) -> dict:
    return {a.name: _text(helper.get_attribute_value(a)) for a in node.attribute}


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def fold(node, args: list, opset: int) -> list[np.ndarray]:
    """One node on constant inputs, by ONNX's reference evaluator (the spec's own semantics)."""
    from onnx.reference import ReferenceEvaluator

    names = [f"i{k}" if a is not None else "" for k, a in enumerate(args)]
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for n, a in zip(names, args) if n]
    outputs = [f"o{k}" for k in range(len(node.output))]
    one = helper.make_node(node.op_type, names, outputs)
    one.attribute.extend(node.attribute)
    graph = helper.make_graph([one], "fold", inputs,
                              [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return [np.asarray(v) for v in ReferenceEvaluator(model).run(None, {n: a for n, a in zip(names, args) if n})]


def _hardswish_muls(nodes) -> tuple[dict[int, int], set[int]]:
    """Mul(x, HardSigmoid(x)) with torch's hard-sigmoid constants is hard-swish, which the ONNX exporter splits in
    two. Rebuilt as F.hardswish it becomes one HARD_SWISH op in the .tflite, as the torch module's own conversion
    gives (kept float there: FLOAT_OPS in tflite_export.py). Returns {Mul node's position: input position of x}
    and the positions of the HardSigmoid nodes only those Muls read (not rebuilt)."""
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    readers: dict[str, set[int]] = {}
    for k, n in enumerate(nodes):
        for i in n.input:
            readers.setdefault(i, set()).add(k)
    fused, sigmoids = {}, {}
    for k, node in enumerate(nodes):
        for pos in (0, 1) if node.op_type == "Mul" else ():
            j = producer.get(node.input[1 - pos])
            hs = nodes[j] if j is not None else None
            if hs is not None and hs.op_type == "HardSigmoid" and hs.input[0] == node.input[pos]:
                a = helper_attrs(hs)
                if abs(a.get("alpha", 0.2) - 1 / 6) < 1e-6 and abs(a.get("beta", 0.5) - 0.5) < 1e-6:
                    fused[k], sigmoids[j] = pos, hs.output[0]
                    break
    skip = {j for j, out in sigmoids.items() if readers.get(out, set()) <= set(fused)}
    return fused, skip


def _pads(attrs: dict, x: torch.Tensor, kernel: list[int], strides: list[int], dilations: list[int]) -> list[int]:
    """ONNX pads [begin..., end...] for this input, auto_pad resolved (shapes are static when traced)."""
    auto, n = attrs.get("auto_pad", "NOTSET"), len(kernel)
    if auto in ("NOTSET", ""):
        return list(attrs.get("pads", [0] * 2 * n))
    if auto == "VALID":
        return [0] * 2 * n
    begin, end = [], []
    for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return begin + end


def _pad_spec(pads: list[int]) -> list[int]:
    """ONNX [begin..., end...] -> F.pad's (last dimension first, trailing zero pairs dropped)."""
    n = len(pads) // 2
    spec = []
    for b, e in zip(reversed(pads[:n]), reversed(pads[n:])):
        spec += [b, e]
    while len(spec) > 2 and spec[-2:] == [0, 0]:
        spec = spec[:-2]
    return spec


def _split_padding(pads: list[int]) -> tuple[list[int], list[int] | None]:
    """Symmetric pads go to the conv/pool itself; others become an explicit F.pad before it."""
    n = len(pads) // 2
    return (list(pads[:n]), None) if pads[:n] == pads[n:] else ([0] * n, _pad_spec(pads))


def _conv(node, attrs, args):
    x, w = tensor(args[0]), tensor(args[1])
    b = tensor(args[2]) if len(args) > 2 and args[2] is not None else None
    n = w.dim() - 2
    if n not in (1, 2):
        raise UnsupportedOp(node, f"{n}-D convolution")
    strides, dilations = attrs.get("strides", [1] * n), attrs.get("dilations", [1] * n)
    padding, explicit = _split_padding(_pads(attrs, x, list(w.shape[2:]), strides, dilations))
    if explicit:
        x = F.pad(x, explicit)
    return (F.conv2d if n == 2 else F.conv1d)(x, w, b, strides, padding, dilations, attrs.get("group", 1))


def _pool(kind: str):
    def run(node, attrs, args):
        x, kernel = tensor(args[0]), list(attrs["kernel_shape"])
        if len(kernel) != 2:
            raise UnsupportedOp(node, f"{len(kernel)}-D pooling")
        strides, dilations = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1])
        padding, explicit = _split_padding(_pads(attrs, x, kernel, strides, dilations))
        ceil = bool(attrs.get("ceil_mode", 0))
        if kind == "max":
            if explicit:
                x = F.pad(x, explicit, value=float("-inf"))
            return F.max_pool2d(x, kernel, strides, padding, dilations, ceil_mode=ceil)
        if explicit or list(dilations) != [1, 1]:
            raise UnsupportedOp(node, "AveragePool with asymmetric padding or dilation")
        return F.avg_pool2d(x, kernel, strides, padding, ceil_mode=ceil,
                            count_include_pad=bool(attrs.get("count_include_pad", 0)))
    return run


def _gemm(node, attrs, args):
    a, b = tensor(args[0]), tensor(args[1])
    c = tensor(args[2]) if len(args) > 2 and args[2] is not None else None
    a = a.t() if attrs.get("transA", 0) else a
    weight = b if attrs.get("transB", 0) else b.t()  # F.linear's (out, in): FULLY_CONNECTED in the .tflite
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    return F.linear(a, weight if alpha == 1.0 else alpha * weight, c if c is None or beta == 1.0 else beta * c)


def _axes(attrs: dict, args: list, position: int = 1) -> list[int] | None:
    """Axes from the input (opset 13 / 18 forms) or the attribute (older opsets); None when absent."""
    if len(args) > position and args[position] is not None:
        return [int(a) for a in np.asarray(args[position]).ravel()]
    return list(attrs["axes"]) if "axes" in attrs else None


def _reduce(reduction):
    """ReduceMean / ReduceMax: axes from the attribute (opset < 18) or the second input."""
    def run(node, attrs, args):
        x, axes = tensor(args[0]), _axes(attrs, args)
        if axes is None:
            if attrs.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        return reduction(x, dim=axes, keepdim=bool(attrs.get("keepdims", 1)))
    return run


def _reshape(node, attrs, args):
    x, shape = tensor(args[0]), [int(s) for s in np.asarray(args[1]).ravel()]
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _flatten(node, attrs, args):
    x = tensor(args[0])
    axis = attrs.get("axis", 1) % max(x.dim(), 1)
    return x.reshape(int(np.prod(x.shape[:axis])) if axis else 1, -1)


def _clip(node, attrs, args):
    lo = float(np.asarray(args[1])) if len(args) > 1 and args[1] is not None else attrs.get("min")
    hi = float(np.asarray(args[2])) if len(args) > 2 and args[2] is not None else attrs.get("max")
    if lo == 0.0 and hi == 6.0:
        return F.relu6(tensor(args[0]))  # RELU6, fused into the conv before it in the .tflite
    return torch.clamp(tensor(args[0]), lo, hi)


def _hard_sigmoid(node, attrs, args):
    # Not clamp(alpha * x + beta, 0, 1): litert-torch writes that as RELU_0_TO_1, which XNNPACK does not take, and
    # each one split the graph out of the delegate (MobileNetV3's SE gates: 10 partitions). torch's own constants
    # give F.hardsigmoid, the ops the torch module's conversion has; others go through RELU6, which XNNPACK takes.
    x, alpha, beta = tensor(args[0]), attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    if abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-6:
        return F.hardsigmoid(x)
    return F.relu6(x * (6 * alpha) + 6 * beta) / 6


def _pad(node, attrs, args):
    if len(args) > 3 and args[3] is not None:
        raise UnsupportedOp(node, "Pad with axes")
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}.get(attrs.get("mode", "constant"))
    if mode is None:
        raise UnsupportedOp(node, f"Pad mode {attrs['mode']}")
    spec = _pad_spec([int(p) for p in np.asarray(args[1] if len(args) > 1 else attrs["pads"]).ravel()])
    if mode != "constant":
        return F.pad(tensor(args[0]), spec, mode=mode)
    value = float(np.asarray(args[2])) if len(args) > 2 and args[2] is not None else 0.0
    return F.pad(tensor(args[0]), spec, value=value)


def _unsqueeze(x: torch.Tensor, axes: list[int]) -> torch.Tensor:
    for a in sorted(a % (x.dim() + len(axes)) for a in axes):
        x = x.unsqueeze(a)
    return x


def _binary(fn):
    return lambda node, attrs, args: fn(tensor(args[0]), tensor(args[1]))


def _unary(fn):
    return lambda node, attrs, args: fn(tensor(args[0]))


OPS = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _binary(torch.matmul),
    "Add": _binary(operator.add), "Sub": _binary(operator.sub), "Mul": _binary(operator.mul),
    "Div": _binary(operator.truediv),
    "Relu": _unary(F.relu), "Sigmoid": _unary(torch.sigmoid), "Tanh": _unary(torch.tanh), "Erf": _unary(torch.erf),
    "HardSwish": _unary(F.hardswish), "Clip": _clip,
    "HardSigmoid": _hard_sigmoid,
    "LeakyRelu": lambda node, attrs, args: F.leaky_relu(tensor(args[0]), attrs.get("alpha", 0.01)),
    "PRelu": lambda node, attrs, args: F.prelu(tensor(args[0]), tensor(args[1]).reshape(-1)),
    "Softmax": lambda node, attrs, args: torch.softmax(tensor(args[0]), attrs.get("axis", -1)),
    "GlobalAveragePool": _unary(lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)),
    "GlobalMaxPool": _unary(lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True)),
    "MaxPool": _pool("max"), "AveragePool": _pool("avg"), "ReduceMean": _reduce(torch.mean), "ReduceMax": _reduce(torch.amax),
    "Flatten": _flatten, "Reshape": _reshape, "Pad": _pad,
    "Transpose": lambda node, attrs, args: tensor(args[0]).permute(
        list(attrs.get("perm", reversed(range(tensor(args[0]).dim()))))),
    "Concat": lambda node, attrs, args: torch.cat([tensor(a) for a in args], attrs["axis"]),
    "Squeeze": lambda node, attrs, args: (lambda x, axes: x.squeeze(tuple(a % x.dim() for a in axes)) if axes
                                          else x.squeeze())(tensor(args[0]), _axes(attrs, args)),
    "Unsqueeze": lambda node, attrs, args: _unsqueeze(tensor(args[0]), _axes(attrs, args)),
    "Identity": lambda node, attrs, args: args[0], "Dropout": lambda node, attrs, args: args[0],
    "BatchNormalization": lambda node, attrs, args: F.batch_norm(
        tensor(args[0]), tensor(args[3]), tensor(args[4]), tensor(args[1]), tensor(args[2]), False, 0.0,
        attrs.get("epsilon", 1e-5)),
}
