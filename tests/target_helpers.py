"""Helpers shared by the ARM and Jetson target tests: compile into a folder, measure agreement, break a graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgekit import metrics
from edgekit.data import Preprocess, open_images
from edgekit.targets import CompileContext, CompileResult, get_target


def compile_target(name: str, workspace: Path, out_dir: Path, **options) -> CompileResult:
    """Run one target's compile on a quantized workspace, the way the compile stage does."""
    manifest = json.loads((workspace / "manifest.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = CompileContext(workspace, out_dir, manifest, Preprocess.from_dict(manifest["preprocess"]),
                         open_images(manifest["calibration_data"]["path"], "calibration"), options,
                         log=lambda *_: None)
    return get_target(name).compile(ctx)


def eval_agreement(name: str, workspace: Path, target_dir: Path) -> tuple[float, object]:
    """Top-1 agreement of the target's int8 runner with its fp32 runner on the workspace's eval images."""
    manifest = json.loads((workspace / "manifest.json").read_text())
    pre = Preprocess.from_dict(manifest["preprocess"])
    images = open_images(manifest["eval_data"]["path"], "eval")
    target = get_target(name)
    int8, fp32 = target.runner(target_dir, "int8", 1), target.runner(target_dir, "fp32", 1)
    batches = list(images.batches(pre, 64))
    a = np.concatenate([int8(x) for x in batches])
    b = np.concatenate([fp32(x) for x in batches])
    assert len(a) == len(images) == manifest["eval_data"]["images"]
    return metrics.agreement(a, b), int8


def set_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    """Replace initializer `name` in place (its dtype and shape may change)."""
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.asarray(value), name))
            return
    raise KeyError(name)


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def nodes(model: onnx.ModelProto, op_type: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == op_type]


def producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto | None:
    return next((n for n in model.graph.node if tensor in n.output), None)
