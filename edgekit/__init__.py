"""edgekit: a trained PyTorch CNN to calibrated, validated int8 artifacts for edge targets.

The public API mirrors the CLI, one function a command; `help(edgekit.quantize)` shows its arguments:

    edgekit.quantize(model, calib, *, eval=None, workdir="edgekit-out", inputs=ModelInputs(...), ...)
    edgekit.distill(teacher, data, *, student=..., epochs=..., out="student.pt2", ...)
    edgekit.compile(target="all", *, workdir="edgekit-out", device="CPU", ...)
    edgekit.bench(target="all", *, workdir="edgekit-out", max_drop=None, max_latency_ms=None, ...)
    edgekit.report(workdir="edgekit-out")
    edgekit.run(recipe, *, overrides=None, force=False, dry_run=False, trust_pickle=False)
    edgekit.students(pattern="*", *, teacher=None, inputs=None, classes=None)
    edgekit.setup("arm-emulator")      # qemu + aarch64 runtimes for edgekit.bench("arm", emulate="cortex-a76")

Each name is the stage's own function, imported on first use (PEP 562), so `import edgekit` stays cheap and
never needs torch, onnxruntime or openvino. Errors meant for the user are edgekit.EdgekitError.
"""

from importlib import import_module

from .errors import EdgekitError

__version__ = "0.1.0"

# public name -> "module:function"
_API = {
    "quantize": "edgekit.quantization:quantize",
    "distill": "edgekit.distillation:distill",
    "compile": "edgekit.compiling:compile_targets",
    "bench": "edgekit.benchmarking:bench",
    "report": "edgekit.reporting:write_report",
    "run": "edgekit.pipeline:run",
    "students": "edgekit.distillation:student_overview",
    "ModelInputs": "edgekit.inputspec:ModelInputs",
    "setup": "edgekit.emulator:setup",
}


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
    module, attr = _API[name].split(":")
    value = getattr(import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = ["quantize", "distill", "compile", "bench", "report", "run", "students", "setup", "ModelInputs", "EdgekitError", "__version__"]
