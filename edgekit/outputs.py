"""A model's outputs: what each one is (its role), and how an int8 artifact's are compared with fp32's, output by
output.

Every runner (ONNX Runtime, OpenVINO, LiteRT, TensorRT, here or on a board) returns one float array per batch:
each output reshaped to (N, -1) and concatenated in the ONNX graph's output order (board/timing.flat_outputs).
For the common single (N, classes) output that is the logits themselves; for anything else the OutputLayout
stored in the manifest splits it back. So transport, padding and batching stay one array, and only the metrics
need to know the heads.

Roles, detected from each output's per-image shape and overridable (--task, --output NAME=ROLE):
  logits    (K,)        class scores: top-1 against labels, top-1 agreement with fp32
  dense     (C, H, W)   per-pixel class scores (segmentation): pixel agreement (argmax over C) and the mean IoU
                        of int8's argmax map against fp32's
  detect    (A, K)      per-anchor boxes / scores of a detector head: fidelity only
  features  (D,)        an embedding: fidelity only
  tensor    anything else: fidelity only
Every output gets the fidelity figures: cosine (per image, averaged), SQNR in dB, and the max abs error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import EdgekitError
from .metrics import cosine

ROLES = ("logits", "dense", "detect", "features", "tensor")
TASKS = ("classify", "segment", "detect", "features")
# What an output of each per-image rank is under each task; None: no task given (detect from the shape alone).
_BY_RANK = {
    None: {1: "logits", 2: "detect", 3: "dense"},
    "classify": {1: "logits", 2: "tensor", 3: "tensor"},
    "segment": {1: "features", 2: "tensor", 3: "dense"},
    "detect": {1: "detect", 2: "detect", 3: "detect"},
    "features": {1: "features", 2: "features", 3: "features"},
}


@dataclass(frozen=True)
class OutputSpec:
    name: str
    role: str
    shape: tuple[int, ...]  # per image, without the batch dimension

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def to_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "shape": list(self.shape)}


@dataclass(frozen=True)
class OutputLayout:
    outputs: tuple[OutputSpec, ...]

    @classmethod
    def from_list(cls, items: list[dict] | None, num_classes: int | None = None) -> "OutputLayout":
        """From the manifest's "outputs"; a workspace written before outputs were recorded had one logits output."""
        if not items:
            return cls((OutputSpec("logits", "logits", (int(num_classes or 0),)),))
        return cls(tuple(OutputSpec(d["name"], d["role"], tuple(d["shape"])) for d in items))

    def to_list(self) -> list[dict]:
        return [o.to_dict() for o in self.outputs]

    @property
    def logits(self) -> OutputSpec | None:
        """The output top-1 and agreement are measured on: the first with the logits role."""
        return next((o for o in self.outputs if o.role == "logits"), None)

    @property
    def num_classes(self) -> int | None:
        return self.logits.size if self.logits else None

    @property
    def width(self) -> int:
        return sum(o.size for o in self.outputs)

    def split(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """{name: (N, *shape)} from the runners' (N, width) array."""
        if flat.ndim != 2 or flat.shape[1] != self.width:
            raise EdgekitError(f"an artifact returned outputs of shape {tuple(flat.shape)}, expected (N, {self.width})"
                               f" for {', '.join(f'{o.name} {o.shape}' for o in self.outputs)}",
                               "rebuild the workspace: edgekit quantize, then compile")
        out, start = {}, 0
        for o in self.outputs:
            out[o.name] = flat[:, start : start + o.size].reshape(len(flat), *o.shape)
            start += o.size
        return out

    def primary(self, flat: np.ndarray) -> np.ndarray | None:
        """The logits output's (N, K) slice, or None when the model has none."""
        return self.split(flat)[self.logits.name] if self.logits else None

    def describe(self) -> list[str]:
        return [f"{o.name} {tuple(o.shape)}: {o.role}" for o in self.outputs]


def parse_overrides(items) -> dict[str, str]:
    """--output NAME=ROLE (repeatable, or a {name: role} mapping from a recipe) -> {name: role}."""
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items or ():
            name, sep, role = str(item).partition("=")
            if not sep or not name:
                raise EdgekitError(f"--output {item!r} is not NAME=ROLE", f"e.g. --output boxes=detect (roles: {', '.join(ROLES)})")
            pairs.append((name.strip(), role.strip()))
    for name, role in pairs:
        if role not in ROLES:
            raise EdgekitError(f"--output {name}={role}: unknown role {role!r}", f"use one of: {', '.join(ROLES)}")
    return dict(pairs)


def detect_layout(names: list[str], shapes: list[tuple[int, ...]], task: str | None = None,
                  overrides: dict[str, str] | None = None, num_labels: int | None = None) -> OutputLayout:
    """Roles from per-image shapes. Without a task: rank 1 is logits, (A, K) a detector head, (C, H, W) a dense map.
    When several rank-1 outputs could be the logits, the one whose size matches the eval labels' class count (else
    the first) is; the others are features. Overrides win, and must name real outputs."""
    if task is not None and task not in TASKS:
        raise EdgekitError(f"unknown --task {task!r}", f"use one of: {', '.join(TASKS)}")
    overrides = dict(overrides or {})
    unknown = [n for n in overrides if n not in names]
    if unknown:
        raise EdgekitError(f"--output names {', '.join(unknown)}, which the model does not return",
                           f"its outputs are: {', '.join(names)}")
    roles = [_BY_RANK[task].get(len(s), "tensor") for s in shapes]
    candidates = [i for i, r in enumerate(roles) if r == "logits" and names[i] not in overrides]
    if len(candidates) > 1 or any(r == "logits" for r in overrides.values()):
        matching = [i for i in candidates if num_labels and shapes[i][0] == num_labels]
        keep = None if any(r == "logits" for r in overrides.values()) else (matching or candidates)[0]
        for i in candidates:
            if i != keep:
                roles[i] = "features"
    roles = [overrides.get(n, r) for n, r in zip(names, roles)]
    for n, s, r in zip(names, shapes, roles):
        if r == "logits" and len(s) != 1:
            raise EdgekitError(f"output {n} has per-image shape {s}: class logits are one vector per image",
                               f"give it another role: --output {n}=tensor")
        if r == "dense" and len(s) != 3:
            raise EdgekitError(f"output {n} has per-image shape {s}: a dense map is (C, H, W)",
                               f"give it another role: --output {n}=tensor")
    return OutputLayout(tuple(OutputSpec(n, r, tuple(int(d) for d in s)) for n, s, r in zip(names, shapes, roles)))


def sqnr_db(y: np.ndarray, ref: np.ndarray) -> float | None:
    """Signal-to-quantization-noise ratio of `y` against `ref`, in dB; None when they are identical."""
    noise = float(np.sum((y.astype(np.float64) - ref) ** 2))
    signal = max(float(np.sum(ref.astype(np.float64) ** 2)), 1e-30)
    return None if noise == 0 else round(10 * math.log10(signal / noise), 3)


def mean_iou(pred: np.ndarray, truth: np.ndarray, classes: int) -> float | None:
    """Mean over classes present in either map of |pred & truth| / |pred | truth|."""
    ious = []
    for c in range(classes):
        p, t = pred == c, truth == c
        union = np.count_nonzero(p | t)
        if union:
            ious.append(np.count_nonzero(p & t) / union)
    return float(np.mean(ious)) if ious else None


def fidelity(layout: OutputLayout, flat: np.ndarray, reference: np.ndarray) -> dict[str, dict]:
    """Per output: role, shape, cosine, SQNR (dB), max abs error against the reference's, and what its role adds."""
    got, ref = layout.split(flat), layout.split(reference)
    report = {}
    for o in layout.outputs:
        y, r = got[o.name], ref[o.name]
        row = {"role": o.role, "shape": list(o.shape), "cosine": round(cosine(y, r), 6), "sqnr_db": sqnr_db(y, r),
               "max_abs_err": float(np.max(np.abs(y.astype(np.float64) - r))) if y.size else 0.0}
        if o.role == "logits":
            row["agreement"] = float(np.mean(y.argmax(1) == r.argmax(1)))
        elif o.role == "dense":
            a, b = y.argmax(1), r.argmax(1)
            row["pixel_agreement"] = float(np.mean(a == b))
            row["miou_vs_reference"] = mean_iou(a, b, o.shape[0])
        report[o.name] = row
    return report


def min_sqnr(per_output: dict[str, dict]) -> float | None:
    """The lowest SQNR over the outputs (an identical output counts as infinitely good); None if all are identical."""
    values = [r["sqnr_db"] for r in per_output.values() if r.get("sqnr_db") is not None]
    return min(values) if values else None


def summary(per_output: dict[str, dict]) -> str:
    """One log line: each output's SQNR and its role's agreement figure."""
    parts = []
    for name, r in per_output.items():
        text = f"{name}: " + ("exact" if r["sqnr_db"] is None else f"SQNR {r['sqnr_db']:.1f} dB")
        if "agreement" in r:
            text += f", agreement {100 * r['agreement']:.2f} %"
        if "pixel_agreement" in r:
            text += f", pixel agreement {100 * r['pixel_agreement']:.2f} %"
        parts.append(text)
    return "; ".join(parts)
