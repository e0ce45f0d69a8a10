"""Settle the model's input (channels, height, width) and preprocessing from what the model file says,
what the user passed, and, last, the images themselves. A contradiction is an error, never a guess."""

from __future__ import annotations

from dataclasses import dataclass

from .data import ImageSet, Preprocess, parse_floats
from .errors import EdgekitError
from .model import LoadedModel

DEFAULT_MEAN, DEFAULT_STD = (0.0,), (1.0,)


@dataclass(frozen=True)
class ModelInputs:
    """How to load a model file and read its input, as it was trained: the one set of options that quantize,
    distill, students and recipes share (the CLI's --arch ... --resize).

    arch: "package.module:factory" that builds the model, for a state_dict file.
    trust_pickle: allow a pickled nn.Module (unpickling runs code from the file): a command-line decision only.
    input_shape: "N,C,H,W" when the model file does not say (TorchScript, state_dict).
    size: "224" or "H,W"; channels: 1 or 3; mean/std: per channel on the 0..1 scale ("0.5" or "0.485,0.456,0.406");
    resize: the short side before the centre crop. None everywhere: what the model says, else the defaults.
    """

    arch: str | None = None
    trust_pickle: bool = False
    input_shape: str | None = None
    size: str | int | None = None
    channels: int | None = None
    mean: str | float | None = None
    std: str | float | None = None
    resize: int | None = None

    def __post_init__(self) -> None:
        if self.channels is not None and self.channels not in (1, 3):
            raise EdgekitError(f"--channels must be 1 (grey) or 3 (RGB), got {self.channels}",
                               "drop it to use the model's own")

    def identity(self) -> dict:
        """What the result depends on, normalized (0.5 and "0.5" are the same mean), for stage keys."""
        return {"arch": self.arch, "input_shape": parse_shape(self.input_shape), "size": parse_size(self.size),
                "channels": self.channels, "mean": parse_floats(_text(self.mean), "mean"),
                "std": parse_floats(_text(self.std), "std"), "resize": self.resize}


def _text(value) -> str | None:
    return None if value is None else str(value)


def parse_shape(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if len(dims) != 4 or any(d <= 0 for d in dims):
        raise EdgekitError(f"--input-shape {text!r} is not N,C,H,W", "e.g. --input-shape 1,3,224,224")
    return dims  # type: ignore[return-value]


def parse_size(text: str | int | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(v) for v in str(text).replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if len(dims) not in (1, 2) or any(d <= 0 for d in dims):
        raise EdgekitError(f"--size {text!r} is not a size", "e.g. --size 224 or --size 32,64 (height,width)")
    return (dims[0], dims[-1])


def resolve_preprocess(model: LoadedModel, images: ImageSet, inputs: ModelInputs) -> tuple[Preprocess, list[str]]:
    """The Preprocess to use, and notes on which values were defaults (printed, so nothing is silent)."""
    input_shape, size, channels, resize = inputs.input_shape, inputs.size, inputs.channels, inputs.resize
    mean, std = _text(inputs.mean), _text(inputs.std)
    notes: list[str] = []
    shape = parse_shape(input_shape)
    user_hw = parse_size(size)
    model_shape = model.input_shape

    # Channels: the model's own word wins; the user's must agree with it.
    model_c = model_shape[1] if model_shape and model_shape[1] > 0 else model.channels
    c = shape[1] if shape else channels if channels is not None else model_c
    if c is None:
        c = 3
        notes.append("channels: 3 (default; the model does not say, pass --channels)")
    for given, flag in ((shape[1] if shape else None, "--input-shape"), (channels, "--channels")):
        if given is not None and model_c is not None and given != model_c:
            raise EdgekitError(f"{flag} says {given} channel(s) but the model's first layer takes {model_c}",
                               f"pass {model_c} channel(s), the ones it was trained on")

    hw = shape[2:] if shape else user_hw
    if model_shape is not None and min(model_shape[2:]) > 0:
        model_hw = tuple(model_shape[2:])
        if hw is not None and tuple(hw) != model_hw:
            raise EdgekitError(f"the model was exported for {model_hw[0]}x{model_hw[1]} inputs, not {hw[0]}x{hw[1]}",
                               "drop --size/--input-shape, or re-export the model with the size you want")
        hw = model_hw
    if hw is None:
        hw = images.first_image_size()
        notes.append(f"size: {hw[0]}x{hw[1]} (from the first calibration image; pass --size to change)")

    mean_v, std_v = parse_floats(mean, "mean"), parse_floats(std, "std")
    if mean_v is None or std_v is None:
        notes.append(
            f"normalization: mean {_fmt(mean_v or DEFAULT_MEAN)}, std {_fmt(std_v or DEFAULT_STD)}"
            " (default, pixels on 0..1): pass --mean/--std exactly as used in training"
        )
    pre = Preprocess(int(hw[0]), int(hw[1]), int(c), mean_v or DEFAULT_MEAN, std_v or DEFAULT_STD, resize)
    return pre, notes


def _fmt(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)
