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
    pixel_range: the scale mean/std are given on: 1 (edgekit's, torchvision's) or 255 (Caffe/mmcv configs, e.g.
        mean 123.675,116.28,103.53 std 58.395,57.12,57.375); 255 divides them by 255.
    """

    arch: str | None = None
    trust_pickle: bool = False
    input_shape: str | None = None
    size: str | int | None = None
    channels: int | None = None
    mean: str | float | None = None
    std: str | float | None = None
    resize: int | None = None
    pixel_range: int = 1

    def __post_init__(self) -> None:
        if self.pixel_range not in (1, 255):
            raise EdgekitError(f"--pixel-range must be 1 or 255, got {self.pixel_range}",
                               "1: mean/std on the 0..1 scale (default); 255: on the 0..255 scale")
        if self.channels is not None and self.channels not in (1, 3):
            raise EdgekitError(f"--channels must be 1 (grey) or 3 (RGB), got {self.channels}",
                               "drop it to use the model's own")

    def identity(self) -> dict:
        """What the result depends on, normalized (0.5 and "0.5" are the same mean), for stage keys."""
        return {"arch": self.arch, "input_shape": parse_shape(self.input_shape), "size": parse_size(self.size),
                "channels": self.channels, "mean": parse_floats(_text(self.mean), "mean"),
                "std": parse_floats(_text(self.std), "std"), "resize": self.resize, "pixel_range": self.pixel_range}


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

    mean_v, std_v = scaled(parse_floats(mean, "mean"), inputs.pixel_range), scaled(parse_floats(std, "std"), inputs.pixel_range)
    check_scale(mean_v, std_v, mean, std)
    if mean_v is None or std_v is None:
        notes.append(
            f"normalization: mean {_fmt(mean_v or DEFAULT_MEAN)}, std {_fmt(std_v or DEFAULT_STD)}"
            " (default, pixels on 0..1): pass --mean/--std exactly as used in training"
        )
    pre = Preprocess(int(hw[0]), int(hw[1]), int(c), mean_v or DEFAULT_MEAN, std_v or DEFAULT_STD, resize)
    return pre, notes


def scaled(values: tuple[float, ...] | None, pixel_range: int) -> tuple[float, ...] | None:
    return None if values is None else tuple(v / pixel_range for v in values)


def check_scale(mean: tuple[float, ...] | None, std: tuple[float, ...] | None, mean_text, std_text) -> None:
    """mean/std belong on the 0..1 pixel scale. Values copied from a 0..255 config (Caffe, mmcv: mean 123.7,
    std 58.4) would normalize every pixel to about -2 and give a model that sees nothing; fp32 and int8 then agree
    on garbage and an accuracy-drop gate passes. Above 1 is refused, with the values divided for the user."""
    too_big = [(name, v, t) for name, v, t in (("mean", mean, mean_text), ("std", std, std_text)) if v and max(v) > 1]
    if not too_big:
        return
    fixed = " ".join(f"--{name} {','.join(f'{x / 255:.4g}' for x in v)}" for name, v, _ in too_big)
    given = " ".join(f"--{name} {t}" for name, _, t in too_big)
    raise EdgekitError(f"{given}: that is the 0..255 pixel scale, but edgekit's mean/std are on the 0..1 scale",
                       f"divide by 255 ({fixed}), or keep the values and add --pixel-range 255")


def _fmt(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)
