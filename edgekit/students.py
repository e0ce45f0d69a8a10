"""Student architectures for `edgekit distill`: a decorator registry with a filterable list (as timm's).

A student is registered by decorating its factory, `(in_channels, num_classes, input_size) -> nn.Module`;
the function's name is the student's name. Channels and classes come from the teacher, the input size
from the teacher's input, so the student is a drop-in replacement for it.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Callable

from .errors import EdgekitError
from .zoo.mobilenet import MobileNetV2, MobileNetV3Small

# The designs are meant for 16 px and up (Fashion-MNIST's 28 px to ImageNet's 224 px and beyond): below
# that, even with every stride-2 stage dropped, the 5x5 depthwise kernels see mostly padding.
MIN_INPUT = 16


@dataclass(frozen=True)
class StudentSpec:
    name: str
    family: str
    width: float
    description: str
    factory: Callable
    min_input: int = MIN_INPUT


_REGISTRY: dict[str, StudentSpec] = {}


def register_student(family: str, width: float, description: str):
    def decorate(factory: Callable) -> Callable:
        _REGISTRY[factory.__name__] = StudentSpec(factory.__name__, family, width, description, factory)
        return factory

    return decorate


def list_students(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern (`mobilenetv2*`, `*_050`), in registration order."""
    return [name for name in _REGISTRY if fnmatch.fnmatch(name, pattern)]


def get_student(name: str) -> StudentSpec:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else "see `edgekit students` for the list"
        raise EdgekitError(f"unknown student {name!r}", hint)
    return _REGISTRY[name]


def create_student(name: str, in_channels: int, num_classes: int, input_hw: tuple[int, int]):
    """The untrained student for a teacher taking (in_channels, *input_hw) and giving num_classes logits."""
    spec = get_student(name)
    if min(input_hw) < spec.min_input:
        raise EdgekitError(
            f"student {name} needs inputs of at least {spec.min_input}x{spec.min_input} px,"
            f" the teacher takes {input_hw[0]}x{input_hw[1]}",
            "distil a teacher with larger inputs, or resize with --size (the teacher must accept that size too)",
        )
    # The stride schedule follows the smaller side, so a wide or tall input is never reduced below ~4 px.
    return spec.factory(in_channels, num_classes, min(input_hw))


V2 = "inverted residuals, depthwise 3x3, ReLU6"
V3 = "inverted residuals, depthwise 3x3/5x5, squeeze-excitation, hard-swish"


@register_student("mobilenetv2", 0.35, V2)
def mobilenetv2_035(in_channels: int, num_classes: int, input_size: int) -> MobileNetV2:
    return MobileNetV2(in_channels, num_classes, 0.35, input_size)


@register_student("mobilenetv2", 0.5, V2)
def mobilenetv2_050(in_channels: int, num_classes: int, input_size: int) -> MobileNetV2:
    return MobileNetV2(in_channels, num_classes, 0.5, input_size)


@register_student("mobilenetv2", 0.75, V2)
def mobilenetv2_075(in_channels: int, num_classes: int, input_size: int) -> MobileNetV2:
    return MobileNetV2(in_channels, num_classes, 0.75, input_size)


@register_student("mobilenetv2", 1.0, V2)
def mobilenetv2_100(in_channels: int, num_classes: int, input_size: int) -> MobileNetV2:
    return MobileNetV2(in_channels, num_classes, 1.0, input_size)


@register_student("mobilenetv3_small", 0.5, V3)
def mobilenetv3_small_050(in_channels: int, num_classes: int, input_size: int) -> MobileNetV3Small:
    return MobileNetV3Small(in_channels, num_classes, 0.5, input_size)


@register_student("mobilenetv3_small", 0.75, V3)
def mobilenetv3_small_075(in_channels: int, num_classes: int, input_size: int) -> MobileNetV3Small:
    return MobileNetV3Small(in_channels, num_classes, 0.75, input_size)


@register_student("mobilenetv3_small", 1.0, V3)
def mobilenetv3_small_100(in_channels: int, num_classes: int, input_size: int) -> MobileNetV3Small:
    return MobileNetV3Small(in_channels, num_classes, 1.0, input_size)


def describe(names: list[str], in_channels: int, num_classes: int, input_hw: tuple[int, int]) -> list[dict]:
    """Name, family, width, parameters and MACs of each student, built for this input and class count."""
    from .macs import count_macs
    from .model import count_params

    rows = []
    for name in names:
        spec = get_student(name)
        row = {"name": name, "family": spec.family, "width": spec.width, "description": spec.description}
        if min(input_hw) < spec.min_input:
            rows.append({**row, "params": None, "macs": None, "fits": False})
            continue
        model = create_student(name, in_channels, num_classes, input_hw).eval()
        rows.append({**row, "params": count_params(model), "macs": count_macs(model, (in_channels, *input_hw)),
                     "fits": True})
    return rows
