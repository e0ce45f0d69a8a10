"""The registry of compile targets: the single source of truth for what targets exist.

Each target lives in its own module and is imported only when used, so `import edgekit` never needs
openvino or tensorrt installed.
"""

from __future__ import annotations

import difflib
import importlib

from ..errors import EdgekitError
from .base import ArtifactPair, CompileContext, CompileResult, Runner, Target

# name -> "module:Class"; order is the order `edgekit targets` and `--target all` use.
REGISTRY: dict[str, str] = {
    "openvino": "edgekit.targets.openvino:OpenVINOTarget",
    "arm": "edgekit.targets.arm:ArmTarget",
    "jetson": "edgekit.targets.jetson:JetsonTarget",
}


def get_target(name: str) -> Target:
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"choose one of: {', '.join(REGISTRY)}, all"
        raise EdgekitError(f"unknown target {name!r}", hint)
    module_name, cls_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)()


def resolve_targets(spec: str) -> list[str]:
    """'all', one name, or a comma-separated list -> registry names (validated)."""
    names = list(REGISTRY) if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    for n in names:
        get_target(n)  # raises with did-you-mean
    return names


__all__ = ["REGISTRY", "ArtifactPair", "CompileContext", "CompileResult", "Runner", "Target", "get_target", "resolve_targets"]
