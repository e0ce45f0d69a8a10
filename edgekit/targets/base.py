"""The Target interface: what every compile target provides. Kept tiny on purpose.

A target turns the workspace's portable models (model.fp32.onnx, model.int8.onnx, calibration.json,
the calibration images + preprocessing) into artifacts for one runtime, and can load those artifacts
back as a `Runner` (batch in, logits out) so compile and bench check them on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from ..data import ImageSet, Preprocess

# batch (N, C, H, W) float32 -> logits (N, classes)
Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class CompileContext:
    """Everything a target may read (the finished quantize stage) and where it must write."""

    workspace: Path  # read only: model.fp32.onnx, model.int8.onnx, calibration.json, manifest.json
    out_dir: Path  # the target's own folder, staged: files written here land in targets/<name>/
    manifest: dict[str, Any]
    preprocess: Preprocess
    calib_images: ImageSet  # the same images (and sample) quantize calibrated on
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {"device": "CPU"}
    log: Callable[[str], None] = print
    # Layers (fp32 ONNX node names) to leave out of int8: quantize's fallback, plus any compile's own adds.
    float_layers: list[str] = field(default_factory=list)

    @property
    def fp32_onnx(self) -> Path:
        return self.workspace / "model.fp32.onnx"

    @property
    def int8_onnx(self) -> Path:
        return self.workspace / "model.int8.onnx"

    @property
    def calibration_json(self) -> Path:
        return self.workspace / "calibration.json"


@dataclass
class CompileResult:
    """What a target reports; compile.json is built from it (plus timing, versions, validation)."""

    files: dict[str, str]  # role -> file name inside the target folder, e.g. {"int8": "model.int8.xml"}
    precision: dict[str, str]  # layer kind -> precision, e.g. {"Conv": "int8", "Softmax": "fp32"}
    versions: dict[str, str]  # tool -> version used to build
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # target-specific, goes into compile.json as is


class Target(Protocol):
    name: str  # registry key, e.g. "openvino"
    hardware: str  # "Intel CPU / GPU / NPU"
    runtime: str  # "OpenVINO"
    artifact: str  # "OpenVINO IR int8 (.xml/.bin) + fp32 reference IR"
    install: str  # what to install when unavailable, e.g. "pip install 'edgekit[openvino]'"

    def available(self) -> str | None:
        """None if this target can compile here, else why not (one line)."""

    def compile(self, ctx: CompileContext) -> CompileResult:
        """Write the artifacts into ctx.out_dir."""

    def runner(self, target_dir: Path, which: str, threads: int = 0, options: dict | None = None) -> Runner:
        """Load an artifact from a compiled target folder: which = "int8" (the artifact) or "fp32" (its reference)."""
