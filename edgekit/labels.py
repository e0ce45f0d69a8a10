"""Labels as users hold them, mapped to the model's class indices.

An ImageFolder's labels are its folders' positions in sorted order, which only works when every class has a
folder. Real eval sets often cover part of the classes (an ImageNet-val slice, one photo per even class) or name
classes differently from the model's order, so edgekit also takes:

- folders named by integer class index (`0007/`): the number is the label, whatever other folders exist;
- folders named by wnid or class name, mapped through `--classes FILE` (the model's classes in output order: a
  text file one name per line, a JSON list, or a JSON object name -> index);
- `--labels FILE`: file name -> class index or class name, as JSON (an object, or {"labels": {...}}) or CSV
  (two columns, file,label; a header row is skipped).

Every image must map to a class; one that does not is bad input (exit 2) naming it, never a silent guess.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .errors import EdgekitError


def read_classes(path: str | Path) -> dict[str, int]:
    """Class name (wnid, or any name) -> index, from a text, JSON-list or JSON-object file."""
    path = Path(path)
    if not path.is_file():
        raise EdgekitError(f"--classes {path} does not exist", "pass the model's class names, one per line, in output order")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise EdgekitError(f"--classes {path} is not valid JSON ({e})", "fix the file") from None
        if isinstance(data, list):
            return {str(name): i for i, name in enumerate(data)}
        if isinstance(data, dict) and all(isinstance(v, int) for v in data.values()):
            return {str(k): int(v) for k, v in data.items()}
        raise EdgekitError(f"--classes {path} must be a JSON list of names or an object name -> index",
                           'e.g. ["tench", "goldfish", ...] or {"n01440764": 0, ...}')
    names = [line.strip() for line in text.splitlines() if line.strip()]
    # A "wnid name" line (the common synset listing) maps both the wnid and the name.
    mapping: dict[str, int] = {}
    for i, line in enumerate(names):
        mapping[line] = i
        first, _, rest = line.partition(" ")
        mapping.setdefault(first, i)
        if rest:
            mapping.setdefault(rest.strip(), i)
    return mapping


def read_labels(path: str | Path) -> dict[str, int | str]:
    """File name -> class index or class name, from JSON or CSV."""
    path = Path(path)
    if not path.is_file():
        raise EdgekitError(f"--labels {path} does not exist", "pass a JSON or CSV file: file name -> class")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise EdgekitError(f"--labels {path} is not valid JSON ({e})", "fix the file") from None
        if isinstance(data, dict) and isinstance(data.get("labels"), dict):
            data = data["labels"]
        if not isinstance(data, dict):
            raise EdgekitError(f"--labels {path} must map file names to classes",
                               'e.g. {"img_001.jpg": 7} or {"labels": {...}}')
        return {str(k): v for k, v in data.items()}
    rows = [r for r in csv.reader(path.read_text().splitlines()) if r and any(c.strip() for c in r)]
    if rows and len(rows[0]) >= 2 and not _is_label(rows[0][1]) and len(rows) > 1 and _is_label(rows[1][1]):
        rows = rows[1:]  # a header row
    if any(len(r) < 2 for r in rows):
        raise EdgekitError(f"--labels {path}: every CSV row needs two columns, file,label", "fix the file")
    return {r[0].strip(): r[1].strip() for r in rows}


def _is_label(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def class_index(value, classes: dict[str, int] | None, where: str) -> int:
    """A label value (an index, a digit string, or a class name) -> the class index."""
    if isinstance(value, bool):
        raise EdgekitError(f"{where}: label {value!r} is not a class", "give a class index or name")
    if isinstance(value, int) or (isinstance(value, str) and _is_label(value)):
        index = int(value)
        if index < 0:
            raise EdgekitError(f"{where}: class index {index} is negative", "class indices start at 0")
        return index
    if classes is None:
        raise EdgekitError(f"{where}: label {value!r} is a class name, and no --classes file says its index",
                           "pass --classes FILE with the model's class names in output order")
    if str(value) not in classes:
        raise EdgekitError(f"{where}: class {value!r} is not in the --classes file",
                           "check the spelling, or that the classes file is the model's")
    return classes[str(value)]


def folder_labels(folders: list[str], classes: dict[str, int] | None) -> tuple[dict[str, int], str]:
    """Class folder name -> index, and how it was decided: a --classes file, integer folder names, or (the
    ImageFolder convention) the folders' sorted order."""
    if classes is not None:
        missing = [f for f in folders if f not in classes]
        if missing:
            raise EdgekitError(f"class folder(s) {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} are not "
                               "in the --classes file", "name the folders by the classes file's names (or wnids)")
        return {f: classes[f] for f in folders}, "class folders mapped through --classes"
    if folders and all(_is_label(f) for f in folders):
        return {f: int(f) for f in folders}, "class folders named by class index"
    return {f: i for i, f in enumerate(sorted(folders))}, "class folders in sorted order (ImageFolder)"
