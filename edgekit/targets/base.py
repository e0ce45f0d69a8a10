"""The Target interface: everything other modules may know about a compile target, and nothing more.

A target turns the workspace's portable models (model.fp32.onnx, model.int8.onnx, calibration.json,
the calibration images + preprocessing) into artifacts for one runtime, says which of them bench times in
int8/reference pairs, and opens them back as `Runner`s (batch in, outputs out) through its board module
(edgekit/board/<name>_board.py), the same code that opens them on a device for `bench --remote`.
Compile, bench, preflight and remote read targets through this Protocol only; a fact about a target that is
not declared here belongs inside the target's own file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from ..data import ImageSet, Preprocess



class Runner(Protocol):
    """An opened artifact: batch (N, C, H, W) float32 -> output (N, ...). The attributes say what really ran."""

    emulated: bool  # right numerics, not the device's speed: bench reports accuracy and no latency
    runtime: str  # what actually ran, in words ("ONNX Runtime (CPU EP): TensorRT numerics emulated, ...")
    providers: list  # execution providers / devices / delegates in use
    precision_hint: str | None  # the inference precision asked of the runtime, where it has such a setting

    def __call__(self, x: np.ndarray) -> np.ndarray: ...

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        """A no-argument call that runs only the runtime's inference on x, x handed to the runtime beforehand: what
        bench times (board/timing.py, bound_call)."""


@dataclass(frozen=True)
class ArtifactPair:
    """An int8 artifact and the fp32 reference bench times it against, in the same runtime. The first pair a
    target lists is its main one (bench.json's top level); further ones (arm's .tflite pair) are variants."""

    name: str  # "main", or the variant's name ("tflite")
    int8: str  # runner role of the int8 artifact, e.g. "int8" or "tflite_int8"
    reference: str  # runner role of its fp32 reference
    files: dict[str, str]  # {"int8": file name, "fp32": file name} inside the target folder
    board_module: str  # edgekit.board.<module> that opens both, here and on a device
    runtime: str  # for tables: "LiteRT Interpreter + XNNPACK (ai-edge-litert)"
    kernels: str = ""  # which kernels time it, for the latency note
    fixed_batch: int | None = None  # the artifact takes exactly this many images per call


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
    # compile --max-drop's own accuracy recovery (when quantize ran none): an adjusted graph and its ranges.
    source_override: Path | None = None
    calibration_override: Path | None = None

    @property
    def fp32_onnx(self) -> Path:
        return self.workspace / "model.fp32.onnx"

    @property
    def int8_source(self) -> Path:
        """The fp32 graph to build int8 artifacts from: model.fp32.onnx, or the graph accuracy recovery adjusted
        (manifest "int8_source", recovery.py), whose ranges calibration.json holds. The fp32 reference artifacts
        are always built from fp32_onnx."""
        if self.source_override is not None:
            return self.source_override
        return self.workspace / self.manifest.get("int8_source", "model.fp32.onnx")

    @property
    def int8_onnx(self) -> Path:
        return self.workspace / "model.int8.onnx"

    @property
    def calibration_json(self) -> Path:
        return self.calibration_override or self.workspace / "calibration.json"


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
    # Its int8 speed depends on the CPU's int8 dot-product instructions (compile warns on a CPU without them).
    cpu_bound: bool
    # platform.machine() values whose timings are the device's own; empty: wherever its runtime runs natively.
    native_machines: tuple[str, ...]
    # Why compute layers end up outside int8 on this target, and what to do about it (compile's warning).
    not_int8_hint: str

    def available(self) -> str | None:
        """None if this target can compile here, else why not (one line)."""

    def runtime_status(self) -> str:
        """What runs its artifacts here, for `edgekit targets`: "yes", or e.g. "artifacts only: TensorRT not
        installed (numerics emulated on ONNX Runtime)"."""

    def compile(self, ctx: CompileContext) -> CompileResult:
        """Write the artifacts into ctx.out_dir."""

    def pairs(self, target_dir: Path, local: bool = True) -> list[ArtifactPair]:
        """The int8/reference pairs bench times in a compiled folder, main pair first. local: to run here, so a
        pair whose runtime is not installed here is left out (a remote bench needs it on the board instead)."""

    def runner(self, target_dir: Path, which: str, threads: int = 0, options: dict | None = None) -> Runner:
        """Open an artifact of a compiled target folder by role: "int8" (the artifact), "fp32" (its reference), or
        another role a pair names."""


def open_on_board_module(module: str, path: Path, which: str, threads: int = 0, options: dict | None = None,
                         hint: str = "check the artifact and its runtime") -> Runner:
    """Open an artifact with edgekit.board.<module>.open_model, as a board does; its BoardError becomes an
    EdgekitError (exit 2) with `hint`."""
    import importlib

    from ..board import BoardError
    from ..errors import EdgekitError

    board = importlib.import_module(f"edgekit.board.{module}")
    try:
        return board.open_model(Path(path), which, threads, options or {})
    except BoardError as e:
        raise EdgekitError(str(e), hint) from None
