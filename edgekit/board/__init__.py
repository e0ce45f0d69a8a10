"""Modules that run where the artifact runs: on this host for a local bench, on the board for `bench --remote`.

A board has the target's runtime (onnxruntime, openvino, ai_edge_litert, tensorrt) but not edgekit, so nothing in
this package imports edgekit, torch or any third-party module but numpy and the one runtime a module is for, and
everything keeps to Python 3.8 (JetPack 5). `edgekit bench --remote` copies the whole package to the board as
`edgekit_board/` and runs `python3 -m edgekit_board.runner job.json`; the targets (edgekit/targets/*.py) import
the same modules to open their artifacts here, so each runtime is set up by exactly one piece of code.

Each per-target module (openvino_board, arm_board, jetson_board, tflite_board) has:
  RUNTIME_MODULE                         the module the board must be able to import
  open_model(path, which, threads, options) -> a model: batch (N, C, H, W) float32 -> output (N, ...), with
      .emulated (bool: the numerics are right but the speed is not the device's), .runtime (what actually
      ran, in words), .providers (list of str) and .precision_hint (str or None)
"""


class BoardError(RuntimeError):
    """An artifact cannot be opened or run here: the message says why in one line. edgekit turns it into an
    EdgekitError (exit 2); the board runner prints it as its last line."""
