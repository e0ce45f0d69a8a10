"""edgekit: a trained PyTorch CNN to calibrated, validated int8 artifacts for edge targets.

The public API mirrors the CLI, one function a command. Heavy imports (torch, onnxruntime) happen
inside the functions, so `import edgekit` is cheap.
"""

__version__ = "0.1.0"


def quantize(*args, **kwargs):
    """Post-training int8 quantization; see `edgekit.quantization.quantize` for the arguments."""
    from .quantization import quantize as _quantize

    return _quantize(*args, **kwargs)


__all__ = ["quantize", "__version__"]
