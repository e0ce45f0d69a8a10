"""Student architectures for `edgekit distill`: a registry with a filterable list (as timm's).

A student is registered with a factory `(in_channels, num_classes, input_size) -> nn.Module` under its
name; the built-in ones come from a table of families and width multipliers. Channels and classes come
from the teacher, the input size from the teacher's input, so the student is a drop-in replacement for it.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Callable

from .errors import EdgekitError
from .zoo.fast_students import MobileNetV2S, ResNetS
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


def register_student(name: str, family: str, width: float, description: str, factory: Callable) -> None:
    """Add a student: `factory(in_channels, num_classes, input_size) -> nn.Module` builds it untrained."""
    _REGISTRY[name] = StudentSpec(name, family, width, description, factory)


def list_students(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern (`mobilenetv2*`, `*_050`) or a comma list of them
    (`resnet_s*,mbv2_s*`), in registration order."""
    patterns = [p.strip() for p in pattern.split(",") if p.strip()]
    return [name for name in _REGISTRY if any(fnmatch.fnmatch(name, p) for p in patterns)]


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
RS = "fast at small inputs: stride-2 stem, 3 stages of 3x3 convs + basic blocks, ReLU, no SE"
V2S = "fast at small inputs: stride-2 stem, 3 stages of 5 inverted residuals, ReLU6, no SE"
# family -> (architecture, description, width multipliers); names follow timm: mobilenetv2_035 is width 0.35.
# resnet_s / mbv2_s (zoo/fast_students.py): few, wide stages for 16-64 px inputs, where MobileNets' many small ops
# cost int8 runtimes more time than their MACs save; `edgekit students --target T --teacher M` measures them.
FAMILIES = {"mobilenetv2": (MobileNetV2, V2, (0.35, 0.5, 0.75, 1.0)),
            "mobilenetv3_small": (MobileNetV3Small, V3, (0.5, 0.75, 1.0)),
            "resnet_s": (ResNetS, RS, (0.5, 0.75, 1.0, 1.25)),
            "mbv2_s": (MobileNetV2S, V2S, (0.5, 0.75, 1.0))}
for _family, (_arch, _description, _widths) in FAMILIES.items():
    for _width in _widths:
        register_student(f"{_family}_{round(_width * 100):03d}", _family, _width, _description,
                         lambda c, k, size, arch=_arch, width=_width: arch(c, k, width, size))


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
