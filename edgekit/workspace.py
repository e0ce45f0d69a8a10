"""The workspace folder every stage reads and writes, described by manifest.json.

A stage never writes into the workspace directly: it writes into a staging folder beside it and
`commit()` moves the finished files in, the manifest last. A stage that fails leaves the workspace
exactly as it was (the staging folder is removed), so a half-written model.int8.onnx can never be
mistaken for a finished one.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .errors import EdgekitError

MANIFEST = "manifest.json"
SCHEMA = 1


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temp file in the same folder, then rename: readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Workspace:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def path(self, name: str) -> Path:
        return self.root / name

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def read_manifest(self) -> dict[str, Any]:
        if not self.exists():
            return {}
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise EdgekitError(
                f"{self.manifest_path} is not valid JSON ({e})",
                "restore it, or start a fresh workspace with another --workdir",
            ) from None
        if manifest.get("schema") != SCHEMA:
            raise EdgekitError(
                f"{self.manifest_path} has schema {manifest.get('schema')!r}, this edgekit writes {SCHEMA}",
                "use the edgekit version that made it, or start a fresh workspace with another --workdir",
            )
        return manifest

    @contextmanager
    def stage(self, name: str) -> Iterator["Stage"]:
        """Stage files in a temp folder; on success `Stage.commit` moves them in. On any error nothing moves."""
        created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".staging-{name}-"))
        try:
            yield Stage(self, name, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if created and not any(self.root.iterdir()):
                self.root.rmdir()  # a first stage that failed leaves no empty workspace behind


class Stage:
    def __init__(self, ws: Workspace, name: str, staging: Path) -> None:
        self.ws, self.name, self.dir = ws, name, staging

    def path(self, name: str) -> Path:
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def commit(self, manifest_update: dict[str, Any], record: dict[str, Any], restart: bool = False,
               replace_dir: str | None = None) -> dict[str, Any]:
        """Move staged files into the workspace, then write the manifest with this stage recorded.

        restart=True (a new quantize) forgets every later stage and removes targets/: artifacts compiled
        from the previous model must never sit beside the new one looking current. replace_dir swaps a
        whole folder (a target's) for its staged version, so no file of an earlier build (an old engine,
        an old bench.json) survives a rebuild.
        """
        manifest = self.ws.read_manifest() or {"schema": SCHEMA}
        if restart:
            manifest = {"schema": SCHEMA}
        manifest.update(manifest_update)
        manifest["edgekit_version"] = __version__
        files = sorted(str(p.relative_to(self.dir)) for p in self.dir.rglob("*") if p.is_file())
        if replace_dir is not None and (self.ws.root / replace_dir).exists():
            os.replace(self.ws.root / replace_dir, self.dir / ".replaced")  # removed with the staging folder
        for rel in files:
            dest = self.ws.root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.dir / rel, dest)
        stages = manifest.setdefault("stages", {})
        stages[self.name] = {
            **record,
            "files": files,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        write_json_atomic(self.ws.manifest_path, manifest)
        if restart:
            shutil.rmtree(self.ws.root / "targets", ignore_errors=True)
        return manifest
