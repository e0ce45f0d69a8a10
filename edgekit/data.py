"""Images in, model-ready float arrays out.

An `ImageSource` is where images come from (a folder, a .npy/.npz array file, a named dataset); a
`Preprocess` is how pixels become the model's input. Preprocess is stored in the manifest so every
stage (calibration, evaluation, compile, bench) feeds the model identical pixels.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import EdgekitError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
ARRAY_SUFFIXES = {".npy", ".npz"}


@dataclass(frozen=True)
class Preprocess:
    """Pixels (0..255) -> model input. mean/std are on the 0..1 scale (torchvision's convention).

    Geometry: resize the short side to `resize` (bilinear), then centre-crop `height` x `width`.
    `resize` defaults to the crop size, i.e. a plain short-side resize and centre crop.
    """

    height: int
    width: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int | None = None

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise EdgekitError(f"channels must be 1 or 3, got {self.channels}", "pass --channels 1 or --channels 3")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels):
                raise EdgekitError(
                    f"--{name} has {len(values)} values but the model takes {self.channels} channel(s)",
                    "give one value, or one per channel",
                )
        if any(s <= 0 for s in self.std):
            raise EdgekitError("--std values must be positive", "pass e.g. --std 0.5")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})

    def describe(self) -> str:
        fmt = lambda v: ",".join(f"{x:g}" for x in v)  # noqa: E731
        return (
            f"{self.channels}x{self.height}x{self.width}, resize {self.resize or min(self.height, self.width)}"
            f" + centre crop, mean {fmt(self.mean)}, std {fmt(self.std)} (0..1 scale)"
        )

    def apply_pil(self, img: Image.Image) -> np.ndarray:
        img = img.convert("L" if self.channels == 1 else "RGB")
        short = self.resize or max(self.height, self.width)
        w, h = img.size
        scale = short / min(w, h)
        new = (max(self.width, round(w * scale)), max(self.height, round(h * scale)))
        if new != (w, h):
            img = img.resize(new, Image.BILINEAR)
        left, top = (new[0] - self.width) // 2, (new[1] - self.height) // 2
        img = img.crop((left, top, left + self.width, top + self.height))
        arr = np.asarray(img, dtype=np.float32)
        arr = arr[:, :, None] if arr.ndim == 2 else arr  # (H, W, C)
        return self._normalize(arr.transpose(2, 0, 1))

    def apply_array(self, arr: np.ndarray) -> np.ndarray:
        """One image from an array file, (H, W), (H, W, C) or (C, H, W); uint8 0..255 or float 0..1."""
        if arr.dtype != np.uint8:
            arr = np.clip(np.asarray(arr, dtype=np.float32) * 255.0, 0, 255).round().astype(np.uint8)
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[2] not in (1, 3):
            arr = arr.transpose(1, 2, 0)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        # Going through PIL keeps array inputs on exactly the same resize/crop path as image files.
        return self.apply_pil(Image.fromarray(arr))

    def _normalize(self, chw: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(-1, 1, 1)
        return ((chw / 255.0 - mean) / std).astype(np.float32)


@dataclass
class ImageSet:
    """A list of images, each a file path or a row of an in-memory array, with optional labels."""

    items: list  # Path, or np.ndarray (one image)
    labels: list[int] | None
    classes: tuple[str, ...] | None
    source: str
    skipped: list[str] = field(default_factory=list)
    mapping: str | None = None  # how labels were assigned, for the manifest (labels.py)

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices: Sequence[int]) -> "ImageSet":
        return ImageSet(
            [self.items[i] for i in indices],
            [self.labels[i] for i in indices] if self.labels is not None else None,
            self.classes, self.source, self.skipped, self.mapping,
        )

    def sample(self, n: int | None, seed: int) -> "ImageSet":
        """`n` items drawn without replacement, reproducibly; all of them if n is None or >= len."""
        if n is None or n >= len(self):
            return self
        idx = sorted(random.Random(seed).sample(range(len(self)), n))
        return self.subset(idx)

    def split(self, held_out_fraction: float, seed: int) -> tuple["ImageSet", "ImageSet"]:
        idx = list(range(len(self)))
        random.Random(seed).shuffle(idx)
        n_out = max(1, int(round(len(idx) * held_out_fraction)))
        return self.subset(sorted(idx[n_out:])), self.subset(sorted(idx[:n_out]))

    def load(self, i: int, pre: Preprocess) -> np.ndarray:
        item = self.items[i]
        if isinstance(item, np.ndarray):
            return pre.apply_array(item)
        with Image.open(item) as img:
            return pre.apply_pil(img)

    def batches(self, pre: Preprocess, batch: int, exact: bool = False) -> Iterator[np.ndarray]:
        """(B, C, H, W) float32 batches. Files that fail to decode here were already vetted in `open_images`.
        exact: every batch holds exactly `batch` images, the last one filled up from the first images again: what a
        graph whose batch size is fixed needs, for statistics that real repeated images skew far less than zeros."""
        for start in range(0, len(self), batch):
            stop = start + batch if exact else min(start + batch, len(self))
            yield np.stack([self.load(i % len(self), pre) for i in range(start, stop)])

    def first_image_size(self) -> tuple[int, int] | None:
        """(H, W) of the first image: the natural input size when neither model nor user gives one."""
        if not self.items:
            return None
        item = self.items[0]
        if isinstance(item, np.ndarray):
            hw = item.shape[:2] if item.ndim == 2 or item.shape[-1] in (1, 3) else item.shape[1:3]
            return int(hw[0]), int(hw[1])
        with Image.open(item) as img:
            return img.size[1], img.size[0]


GREY_MODES = {"1", "L", "I", "I;16", "F"}
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def conversions(images: ImageSet, pre: Preprocess) -> list[str]:
    """What preprocessing will change in these images to feed the model, with counts, read from the file headers
    only (cheap): channel conversions (grey -> RGB, RGB -> grey, alpha dropped, palette expanded) and resizes
    from another size. Printed once by the stage, so no conversion is silent."""
    modes: dict[str, int] = {}
    sizes: dict[tuple[int, int], int] = {}
    for item in images.items:
        if isinstance(item, np.ndarray):
            grey = item.ndim == 2 or (item.ndim == 3 and 1 in (item.shape[0], item.shape[-1]))
            mode = "L" if grey else "RGB"
            hw = item.shape[:2] if item.ndim == 2 or item.shape[-1] in (1, 3) else item.shape[1:3]
        else:
            with Image.open(item) as img:
                mode, hw = img.mode, (img.size[1], img.size[0])
        modes[mode] = modes.get(mode, 0) + 1
        sizes[tuple(int(v) for v in hw)] = sizes.get(tuple(int(v) for v in hw), 0) + 1
    n, notes = len(images), []
    if pre.channels == 3 and (grey := sum(c for m, c in modes.items() if m in GREY_MODES | {"LA", "La"})):
        notes.append(f"{grey} of {n} images are greyscale: each replicated to the model's 3 channels")
    if pre.channels == 1 and (colour := sum(c for m, c in modes.items() if m not in GREY_MODES | {"LA", "La"})):
        notes.append(f"{colour} of {n} images are colour: converted to greyscale (ITU-R 601 luma) for the 1-channel model")
    if alpha := sum(c for m, c in modes.items() if m in ALPHA_MODES):
        notes.append(f"{alpha} of {n} images have an alpha channel: dropped (transparent pixels keep their colour)")
    if palette := modes.get("P", 0):
        notes.append(f"{palette} of {n} images are palette images: expanded to {'grey' if pre.channels == 1 else 'RGB'}")
    other = {hw: c for hw, c in sizes.items() if hw != (pre.height, pre.width)}
    if other:
        shown = ", ".join(f"{h}x{w} ({c})" for (h, w), c in sorted(other.items(), key=lambda kv: -kv[1])[:3])
        short = pre.resize or max(pre.height, pre.width)
        notes.append(f"{sum(other.values())} of {n} images are not {pre.height}x{pre.width} ({shown}"
                     f"{', ...' if len(other) > 3 else ''}): short side resized to {short}, then centre-cropped")
    return notes


def open_images(spec: str | Path, what: str, labels: str | Path | None = None,
                classes: str | Path | None = None) -> ImageSet:
    """An ImageSet from a folder, an .npy/.npz file, or a named dataset (`fashion-mnist:test`).
    labels / classes: a labels file and the model's class list, for folders whose labels are not the ImageFolder
    convention (labels.py)."""
    from .datasets import NAMED

    if (labels is not None or classes is not None) and (str(spec) in NAMED or Path(spec).is_file()):
        raise EdgekitError(f"--labels/--classes apply to a folder of images, not to {spec}",
                           "an .npz carries its own labels; a named dataset knows its classes")
    if str(spec) in NAMED:
        try:
            named = NAMED[str(spec)]()
        except FileNotFoundError as e:
            raise EdgekitError(str(e)) from None
        return ImageSet(list(named.images), named.labels.tolist(), named.classes, named.source)
    path = Path(spec)
    if not path.exists():
        raise EdgekitError(
            f"{what} path {path} does not exist",
            f"pass a folder of images, an .npy/.npz file, or one of: {', '.join(NAMED)}",
        )
    images = _open_array_file(path, what) if path.is_file() else _open_folder(path, what, classes)
    if labels is not None:
        _apply_labels_file(images, path, labels, classes)
    if len(images) == 0:
        detail = f" ({len(images.skipped)} unreadable or non-image files skipped)" if images.skipped else ""
        raise EdgekitError(
            f"{what} {path} holds no usable images{detail}",
            "point it at a folder of png/jpg/bmp/webp images (flat or one sub-folder per class) or an .npy/.npz",
        )
    return images


def _apply_labels_file(images: ImageSet, folder: Path, labels_path, classes_path) -> None:
    """Labels from a file, matched by the path inside the folder, else by file name; every image must have one."""
    from .labels import class_index, read_classes, read_labels

    table = read_labels(labels_path)
    classes = read_classes(classes_path) if classes_path is not None else None
    found, missing = [], []
    for item in images.items:
        rel = item.relative_to(folder).as_posix()
        value = table.get(rel, table.get(item.name))
        if value is None:
            missing.append(rel)
            continue
        found.append(class_index(value, classes, f"--labels {labels_path} for {rel}"))
    if missing:
        raise EdgekitError(f"--labels {labels_path} has no label for {len(missing)} of {len(images)} images "
                           f"(e.g. {missing[0]})", "add them, or remove those images from the folder")
    images.labels, images.classes = found, None  # indices into the model's classes; coverage may be partial
    images.mapping = f"--labels {Path(labels_path).name}" + (f" via --classes {Path(classes_path).name}"
                                                             if classes_path is not None else "")


def _open_folder(folder: Path, what: str, classes_path=None) -> ImageSet:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise EdgekitError(f"{what} folder {folder} is empty", "put images in it (png/jpg/bmp/webp)")
    usable, skipped = [], []
    for p in files:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(str(p))
            continue
        try:
            with Image.open(p) as img:
                img.verify()  # header + structure check; truncated or mislabelled files fail here
            usable.append(p)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            skipped.append(str(p))
    # ImageFolder convention: every usable image sits in a sub-folder (one per class) -> labels
    # from the folder name's position in sorted order. Images directly in `folder` -> no labels.
    parents = {p.parent for p in usable}
    if usable and all(p.parent != folder for p in usable) and all(p.parent.parent == folder for p in usable):
        from .labels import folder_labels, read_classes

        names = sorted(q.name for q in parents)
        index, mapping = folder_labels(names, read_classes(classes_path) if classes_path is not None else None)
        labels = [index[p.parent.name] for p in usable]
        # Only the ImageFolder convention says how many classes there are (one folder each); the other mappings
        # may cover some of the model's classes, so the label range is what gets checked.
        classes = tuple(names) if mapping.endswith("(ImageFolder)") else None
        return ImageSet(usable, labels, classes, str(folder), skipped, mapping)
    return ImageSet(usable, None, None, str(folder), skipped)


def _open_array_file(path: Path, what: str) -> ImageSet:
    if path.suffix.lower() not in ARRAY_SUFFIXES:
        raise EdgekitError(
            f"{what} {path} is a file but not .npy/.npz", "pass a folder of images or an .npy/.npz array file"
        )
    try:
        if path.suffix.lower() == ".npy":
            images, labels, classes = np.load(path, allow_pickle=False), None, None
        else:
            with np.load(path, allow_pickle=False) as z:
                key = next((k for k in ("images", "x", "arr_0") if k in z), None)
                if key is None:
                    raise EdgekitError(f"{path} has no 'images' (or 'x') array; keys: {sorted(z.keys())}",
                                       "save the images under the key 'images' and labels under 'labels'")
                images = z[key]
                labels = next((z[k] for k in ("labels", "y") if k in z), None)
                classes = tuple(str(c) for c in z["classes"]) if "classes" in z else None
    except (ValueError, OSError, EOFError) as e:
        raise EdgekitError(f"cannot read {what} {path}: {e}", "check the file is a valid numpy .npy/.npz") from None
    if images.ndim not in (3, 4):
        raise EdgekitError(f"{path}: images array has shape {images.shape}", "expected (N, H, W), (N, H, W, C) or (N, C, H, W)")
    if labels is not None:
        labels = [int(v) for v in np.asarray(labels).reshape(-1)]
        if len(labels) != len(images):
            raise EdgekitError(f"{path}: {len(images)} images but {len(labels)} labels", "save one label per image")
    return ImageSet(list(images), labels, classes, str(path))


def parse_floats(text: str | None, name: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise EdgekitError(f"--{name} {text!r} is not a number or comma-separated numbers",
                           f"e.g. --{name} 0.5 or --{name} 0.485,0.456,0.406") from None
