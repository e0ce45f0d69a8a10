"""edgekit: a trained PyTorch CNN to calibrated, validated int8 artifacts for edge targets.

The public API mirrors the CLI, one function a command. Heavy imports (torch, onnxruntime, openvino)
happen inside the functions, so `import edgekit` is cheap.
"""

__version__ = "0.1.0"


def quantize(*args, **kwargs) -> dict:
    """Post-training int8 quantization; see `edgekit.quantization.quantize` for the arguments."""
    from .quantization import quantize as _quantize

    return _quantize(*args, **kwargs)


def distill(*args, **kwargs) -> dict | None:
    """Train a small student to mimic a trained teacher; see `edgekit.distillation.distill`."""
    from .distillation import distill as _distill

    return _distill(*args, **kwargs)


def compile(*args, **kwargs) -> dict:  # noqa: A001 - mirrors `edgekit compile`
    """Compile the workspace for targets; see `edgekit.compiling.compile_targets`."""
    from .compiling import compile_targets

    return compile_targets(*args, **kwargs)


def bench(*args, **kwargs) -> dict:
    """Latency/accuracy per compiled target with gates; see `edgekit.bench.bench`."""
    from .bench import bench as _bench

    return _bench(*args, **kwargs)


__all__ = ["quantize", "distill", "compile", "bench", "__version__"]
