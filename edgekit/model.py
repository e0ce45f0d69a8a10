"""Load a trained PyTorch model from disk, settle its input shape, export it to ONNX.

Formats, detected from the file's contents (not its name):
- TorchScript (`torch.jit.save`): a zip with a `code/` folder.
- ExportedProgram (`torch.export.save`, usually `.pt2`): a zip with `models/*.json`.
- a state_dict (`torch.save(model.state_dict())`): loaded with `weights_only=True`, rebuilt with `--arch`.
- a whole pickled `nn.Module` (`torch.save(model)`): only with `trust_pickle=True`, because unpickling
  runs whatever code the file names: a model file from the internet could do anything to this machine.
"""

from __future__ import annotations

import hashlib
import importlib
import pickle
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EdgekitError

FORMATS = ("torchscript", "exported_program", "state_dict", "pickled_module")


@dataclass
class LoadedModel:
    module: Any  # torch.nn.Module (eval mode) or a TorchScript module; callable on (N, C, H, W)
    program: Any  # the ExportedProgram when the file was one, else None
    format: str
    path: Path
    sha256: str
    input_shape: tuple[int, ...] | None  # (N, C, H, W) when the file says; N is the example batch
    channels: int | None  # from the first conv's weights when the shape itself is not known

    def describe(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256, "format": self.format}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def detect_format(path: Path) -> str:
    """The model file's format from its contents; an EdgekitError for anything that is not a torch file."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":  # a legacy (pre-1.6, non-zip) torch.save pickle
            return "legacy_pickle"
        raise EdgekitError(
            f"{path} is not a PyTorch model file (not a zip archive: truncated, corrupt, or another format)",
            "save it with torch.jit.save, torch.export.save or torch.save(model.state_dict())",
        ) from None
    if any("/code/" in n for n in names):
        return "torchscript"
    if any(re.search(r"(^|/)models/[^/]+\.json$", n) for n in names):
        return "exported_program"
    if any(n.endswith("data.pkl") for n in names):
        return "torch_save"
    raise EdgekitError(f"{path} is a zip archive but not one PyTorch wrote", "check that the path points at the model file")


def load_model(path: str | Path, arch: str | None = None, trust_pickle: bool = False) -> LoadedModel:
    import torch

    path = Path(path)
    if not path.exists():
        raise EdgekitError(f"model file {path} does not exist", "check the path")
    if not path.is_file():
        raise EdgekitError(f"model path {path} is not a file", "pass the .pt/.pt2 file itself")
    fmt = detect_format(path)
    digest = sha256_of(path)
    try:
        if fmt == "torchscript":
            module = torch.jit.load(str(path), map_location="cpu").eval()
            return LoadedModel(module, None, fmt, path, digest, None, _first_conv_channels(module))
        if fmt == "exported_program":
            program = torch.export.load(str(path))
            return LoadedModel(program.module(), program, fmt, path, digest, _program_input_shape(program), None)
    except (RuntimeError, zipfile.BadZipFile, KeyError, EOFError, ValueError) as e:
        raise EdgekitError(f"cannot load {path} as {fmt}: {_first_line(e)}",
                           "the file may be truncated or from an incompatible torch version; re-save it") from None
    # Safety is decided by what torch's restricted unpickler accepts (tensors, numbers, containers), not by the
    # container format: a legacy (pre-zip) checkpoint of plain weights is as safe to read as a new one.
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refused: the file pickles more than tensors, i.e. a whole nn.Module (or worse).
        if not trust_pickle:
            raise _pickle_refused(path) from None
        obj = _load_trusted_pickle(path)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise EdgekitError(f"cannot read {path}: {_first_line(e)}", "the file looks truncated or corrupt; re-save it") from None
    if isinstance(obj, torch.nn.Module):
        obj.eval()
        return LoadedModel(obj, None, "pickled_module", path, digest, None, _first_conv_channels(obj))
    state = _find_state_dict(obj, path)
    module = build_from_arch(arch, state, path)
    return LoadedModel(module, None, "state_dict", path, digest, None, _first_conv_channels(module))


def _pickle_refused(path: Path) -> EdgekitError:
    return EdgekitError(
        f"{path} is a pickled Python object, not plain weights; loading it would run arbitrary code from the file",
        "if you trust its source pass --trust-pickle, or save a state_dict and pass --arch module:factory",
    )


def _load_trusted_pickle(path: Path) -> Any:
    import torch

    # The user vouched for the file; its classes must still be importable, as with any pickle.
    sys.path.insert(0, str(Path.cwd()))
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except (AttributeError, ModuleNotFoundError) as e:
        raise EdgekitError(f"cannot unpickle {path}: {_first_line(e)}",
                           "the model's class must be importable: run from its project folder or install it") from None
    finally:
        sys.path.remove(str(Path.cwd()))


def _find_state_dict(obj: Any, path: Path) -> dict:
    import torch

    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            # DataParallel/DDP checkpoints prefix every key with "module."
            if all(k.startswith("module.") for k in obj):
                obj = {k[len("module."):]: v for k, v in obj.items()}
            return obj
    raise EdgekitError(f"{path} holds a {type(obj).__name__}, not a model or a state_dict",
                       "save the model with torch.save(model.state_dict()) or torch.jit.save")


def build_from_arch(arch: str | None, state: dict, path: Path):
    import torch

    if not arch:
        raise EdgekitError(f"{path} is a state_dict (weights without the architecture)",
                           "pass --arch package.module:factory, a function that builds the untrained model")
    module_name, _, attr = arch.partition(":")
    if not module_name or not attr:
        raise EdgekitError(f"--arch {arch!r} is not of the form package.module:factory", "e.g. --arch mypkg.models:resnet18")
    sys.path.insert(0, str(Path.cwd()))  # like `python -m`: the user's own project is importable
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except ModuleNotFoundError as e:
        raise EdgekitError(f"--arch {arch}: module {e.name!r} not found",
                           "install the package that defines it, or run from its folder") from None
    except AttributeError:
        raise EdgekitError(f"--arch {arch}: {module_name} has no attribute {attr!r}", "check the factory's name") from None
    finally:
        sys.path.remove(str(Path.cwd()))
    try:
        module = factory()
    except Exception as e:  # noqa: BLE001 - the user's code; whatever it raises is their bad input
        raise EdgekitError(f"--arch {arch}: calling {attr}() failed: {_first_line(e)}",
                           "the factory must build the model with no arguments") from None
    if not isinstance(module, torch.nn.Module):
        raise EdgekitError(f"--arch {arch} returned {type(module).__name__}, not an nn.Module", "return the model")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise EdgekitError(f"the weights in {path} do not fit --arch {arch}: {_state_dict_mismatch(module, state, e)}",
                           "pass the factory (and width/classes) the weights were trained with") from None
    return module.eval()


def _state_dict_mismatch(module, state: dict, error: RuntimeError) -> str:
    """The first concrete reason a state_dict does not fit: missing/unexpected keys, or a size mismatch."""
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    parts = []
    if missing:
        parts.append(f"{len(missing)} keys missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    if not parts:
        parts = [next((ln.strip() for ln in str(error).splitlines() if "size mismatch" in ln), _first_line(error))]
    return "; ".join(parts)


def _program_input_shape(program) -> tuple[int, ...] | None:
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder"]
    user_inputs = set(program.graph_signature.user_inputs)
    shapes = [tuple(n.meta["val"].shape) for n in placeholders if n.name in user_inputs and "val" in n.meta]
    if len(shapes) != 1:
        return None
    # A dynamic dim is a SymInt; int() on it would specialize the program to the example size, so
    # such dims are reported as -1 and never touched.
    return tuple(d if isinstance(d, int) else -1 for d in shapes[0])


def _first_conv_channels(module) -> int | None:
    """Input channels from the first 4-D weight: what a state_dict or TorchScript file does tell us."""
    for _, p in module.named_parameters():
        if p.dim() == 4:
            return int(p.shape[1])
    return None


def count_params(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]
