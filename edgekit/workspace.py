"""The workspace folder every stage reads and writes, described by manifest.json, and what stages read from it.

Writing: a stage never writes into the workspace directly. It holds the workspace's lock (`writing()`), writes
into a staging folder beside its files, and `Stage.commit()` moves the finished files in, the manifest last. A
stage that fails or is interrupted leaves the workspace exactly as it was, so a half-written model.int8.onnx can
never be mistaken for a finished one; a staging folder left by a killed process is removed by the next writer.

Safety: a folder is written only when it is an edgekit workspace (it has manifest.json), new, or empty; anything
else is someone's project folder and is refused unless the user adopts it (`force`). One writer at a time: the
lock is an flock on `.edgekit.lock`, released by the kernel when its holder exits, however it exits. Readers
(`edgekit report` is not one: it writes report.*) never take it. Paths a manifest names must stay inside the
workspace, whoever edited it.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from . import __version__, interrupt
from .errors import EdgekitError

MANIFEST = "manifest.json"
LOCK_FILE = ".edgekit.lock"
STAGING_PREFIX = ".staging-"
SCHEMA = 1
HELD_OUT_FRACTION = 0.2  # of the calibration set, used for agreement when no --eval is given

_held: dict[Path, int] = {}  # workspace root -> how many nested writing() blocks of this process hold its lock


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temp file in the same folder, then rename: readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result gets the mode the user's umask gives
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
        if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
            got = manifest.get("schema") if isinstance(manifest, dict) else None
            raise EdgekitError(
                f"{self.manifest_path} has schema {got!r}, this edgekit writes {SCHEMA}",
                "use the edgekit version that made it, or start a fresh workspace with another --workdir",
            )
        for rel in manifest_paths(manifest):
            self.inside(rel)
        return manifest

    def inside(self, rel: str) -> Path:
        """root / rel, refused unless rel is a relative path that stays inside the workspace."""
        p = PurePosixPath(rel)
        if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel:
            raise EdgekitError(f"{self.manifest_path} names {rel!r}, a path outside the workspace",
                               "the manifest was edited or comes from elsewhere: quantize again into a fresh --workdir")
        return self.root / p

    @contextmanager
    def writing(self, *, create: bool = False, force: bool = False) -> Iterator["Workspace"]:
        """Hold the workspace's exclusive lock for a block of writes. create=True: the block may start a workspace
        (quantize, run); a non-empty folder that is not one is refused unless `force` adopts it. Re-entrant within
        a process, so `edgekit run` holds it across the stages it calls."""
        key = self.root.resolve()
        if key in _held:
            _held[key] += 1
            try:
                yield self
            finally:
                _held[key] -= 1
            return
        if not create and not self.exists():
            raise EdgekitError(f"{self.root} is not an edgekit workspace (no {MANIFEST})",
                               f"run `edgekit quantize MODEL --calib DIR --workdir {self.root}` first")
        created = False

        def claim_and_lock() -> int:
            nonlocal created
            created = self._claim(force) if create else False
            # A writer that does not get the lock leaves the folder alone, even one it saw missing: two writers
            # starting at once both see no folder, and the one that holds the lock owns what is in it.
            return self._lock()

        def forget_created_root(*_) -> None:
            # Only while holding the lock: released first, the folder could already be another writer's.
            if created and self.root.is_dir() and {p.name for p in self.root.iterdir()} <= {LOCK_FILE}:
                interrupt.remove_tree(self.root)  # a first stage that failed leaves no folder behind

        with interrupt.guarded(claim_and_lock, forget_created_root) as fd:
            _held[key] = 1
            try:
                yield self
            finally:
                del _held[key]
                try:
                    forget_created_root()
                finally:
                    os.close(fd)  # releases the lock

    def _claim(self, force: bool) -> bool:
        """Check that a writer may start a workspace here; True if the folder does not exist yet (it is made)."""
        if self.root.exists() and not self.root.is_dir():
            raise EdgekitError(f"--workdir {self.root} is a file", "name a folder for the workspace")
        if self.exists():
            return False
        created = not self.root.exists()
        if not created and not force:
            foreign = sorted(p.name for p in self.root.iterdir()
                             if p.name != LOCK_FILE and not p.name.startswith(STAGING_PREFIX))
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise EdgekitError(
                    f"{self.root} is not empty ({shown}) and is not an edgekit workspace (no {MANIFEST}): "
                    "edgekit would overwrite files there and remove its targets/ folder",
                    "pass a new or empty --workdir, or add --force to use this folder anyway")
        self.root.mkdir(parents=True, exist_ok=True)
        return created

    def _lock(self) -> int:
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _lock_holder(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise EdgekitError(f"cannot lock {self.root / LOCK_FILE}: {e.strerror}",
                                   "use a workspace on a local disk") from None
            raise EdgekitError(f"{self.root} is in use by another edgekit process (pid {holder})",
                               "wait for it to finish, or use another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._remove_stale()
        return fd

    def _remove_stale(self) -> None:
        """Staging folders and temp files of writers that died: with the lock held, nothing else owns them."""
        for p in self.root.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(p, ignore_errors=True)
        for folder in [self.root, *self.root.glob("targets/*")]:
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    @contextmanager
    def stage(self, name: str) -> Iterator["Stage"]:
        """Stage files in a temp folder; on success `Stage.commit` moves them in. On any error nothing moves."""
        with self.writing(create=name == "quantize"), interrupt.guarded(
                lambda: Path(tempfile.mkdtemp(dir=self.root, prefix=f"{STAGING_PREFIX}{name}-")),
                interrupt.remove_tree) as staging:
            try:
                yield Stage(self, name, staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def record(self, key: str, update: dict[str, Any]) -> dict[str, Any]:
        """Merge `update` into the manifest's `key` section (e.g. a bench result's inputs key), under the lock."""
        with self.writing(), interrupt.critical():
            manifest = self.read_manifest() or {"schema": SCHEMA}
            section = manifest.setdefault(key, {})
            for name, value in update.items():
                section[name] = {**section.get(name, {}), **value} if isinstance(value, dict) else value
            write_json_atomic(self.manifest_path, manifest)
        return manifest


class Stage:
    def __init__(self, ws: Workspace, name: str, staging: Path) -> None:
        self.ws, self.name, self.dir = ws, name, staging

    def path(self, name: str) -> Path:
        p = self.dir / name
        # After Ctrl-C the watcher thread removes the staging folder while this thread still runs: without the
        # stop, the mkdir below recreated it (parents=True) and a .staging-* folder outlived the exit.
        interrupt.stop_if_exiting()
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def commit(self, manifest_update: dict[str, Any], record: dict[str, Any], restart: bool = False,
               replace_dir: str | None = None) -> dict[str, Any]:
        """Move staged files into the workspace, then write the manifest with this stage recorded.

        restart=True (a new quantize) forgets every later stage and removes the compiled targets and the report:
        artifacts compiled from the previous model must never sit beside the new one looking current (a distill
        record stays: it is the quantize stage's input, not its output). replace_dir swaps a whole folder (a target's) for
        its staged version, so no file of an earlier build (an old engine, an old bench.json) survives a rebuild.
        The manifest's "removed" lists what a restart took away, for the stage to say so.
        """
        with interrupt.critical():
            manifest = self.ws.read_manifest() or {"schema": SCHEMA}
            removed = []
            if restart:
                # Only what the previous manifest says edgekit built: a folder adopted with --force keeps its own files.
                built = [info["dir"] for info in manifest.get("targets", {}).values()]
                if "quantize" in manifest.get("stages", {}):
                    built += ["report.md", "report.html"]
                removed = [rel for rel in built if (self.ws.root / rel).exists()]
                kept = {k: v for k, v in manifest.get("stages", {}).items() if k == "distill"}
                manifest = {"schema": SCHEMA, "stages": kept}
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
            for rel in removed:
                path = self.ws.inside(rel)
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            targets = self.ws.root / "targets"
            if removed and targets.is_dir() and not any(targets.iterdir()):
                targets.rmdir()
        manifest["removed"] = removed
        return manifest


def manifest_paths(manifest: dict) -> list[str]:
    """Every workspace-relative path a manifest names: stage files, target folders and their files."""
    paths = [f for stage in manifest.get("stages", {}).values() for f in stage.get("files", [])]
    paths += list(manifest.get("files_sha256", {}))
    for info in manifest.get("targets", {}).values():
        paths.append(info.get("dir", ""))
        paths += [f"{info.get('dir', '')}/{f}" for f in info.get("files", {}).values()]
    return paths


# ---- what the later stages read from a quantized workspace ----

def require_quantized(ws: Workspace) -> dict:
    """The manifest of a finished quantize stage whose files are as quantize left them."""
    from .model import sha256_of

    manifest = ws.read_manifest()
    if "quantize" not in manifest.get("stages", {}):
        raise EdgekitError(
            f"{ws.root} holds no quantized model",
            f"run `edgekit quantize MODEL --calib DIR --workdir {ws.root}` first",
        )
    for name, digest in manifest.get("files_sha256", {}).items():
        path = ws.inside(name)
        if not path.is_file():
            raise EdgekitError(f"{path} is missing from the workspace", "rerun `edgekit quantize` to rebuild it")
        if sha256_of(path) != digest:
            raise EdgekitError(
                f"{path} changed after `edgekit quantize` wrote it (sha256 differs from manifest.json)",
                "rerun `edgekit quantize`, or use a fresh --workdir; nothing was overwritten",
            )
    return manifest


def require_compiled(ws: Workspace, manifest: dict, names: list[str]) -> None:
    """Stage order: bench needs each named target compiled."""
    compiled = manifest.get("targets", {})
    if not names:
        raise EdgekitError(f"{ws.root} has no compiled targets",
                           f"run `edgekit compile --target all --workdir {ws.root}` first")
    for name in names:
        if name not in compiled:
            raise EdgekitError(f"target {name} has not been compiled in {ws.root}",
                               f"run `edgekit compile --target {name} --workdir {ws.root}` first")


def data_ref(spec: str | Path | None) -> str | None:
    """How the manifest records a data source: an absolute path (later stages may run elsewhere) or a dataset name."""
    if spec is None:
        return None
    return str(Path(spec).resolve()) if Path(spec).exists() else str(spec)


def split_images(calib_set, eval_set, calib_size: int | None, seed: int):
    """(calibration sample, eval set, eval description). Without an eval set, a seeded held-out part of the
    calibration images serves for agreement with fp32; compile and bench rebuild the same split from the manifest."""
    if eval_set is None:
        calib_set, eval_set = calib_set.split(HELD_OUT_FRACTION, seed)
        eval_label = f"held-out {len(eval_set)} of the calibration images (no --eval): agreement only"
        eval_set.labels = None  # agreement with fp32 only; calibration labels are not an accuracy claim
    else:
        eval_label = f"{eval_set.source} ({len(eval_set)} images, {'labelled' if eval_set.labels else 'no labels'})"
    return calib_set.sample(calib_size, seed), eval_set, eval_label


def workspace_images(manifest: dict):
    """The calibration sample and eval set a finished quantize stage used, rebuilt from its manifest:
    (calibration ImageSet, eval ImageSet, eval description)."""
    from .data import open_images

    cal, ev = manifest["calibration_data"], manifest["eval_data"]
    calib_set = open_images(cal["path"], "calibration")
    eval_set = open_images(ev["path"], "eval", ev.get("labels"), ev.get("classes")) if ev["path"] is not None else None
    return split_images(calib_set, eval_set, cal["calib_size"], cal["seed"])


def check_labels(images, num_classes: int, flag: str = "--eval", model: str = "model") -> None:
    """Labelled images must name classes the model has: the same class count, labels in range."""
    if images.labels is None:
        return
    if images.classes and len(images.classes) != num_classes:
        raise EdgekitError(
            f"the {flag} images have {len(images.classes)} classes but the {model} outputs {num_classes}",
            f"point {flag} at data with the {model}'s classes (one sub-folder per class, in the training order)",
        )
    if max(images.labels) >= num_classes:
        raise EdgekitError(f"{flag} label {max(images.labels)} is out of range for a {num_classes}-class {model}",
                           f"check the labels in the {flag} data")


def _lock_holder(fd: int, wait_s: float = 1.0) -> str:
    """The pid the lock's holder wrote into the lock file. It writes it just after taking the lock, so a process
    refused in between reads an empty file or an earlier holder's pid (seen in CI: "pid unknown"); it reads again
    for up to `wait_s` until the file names a live process."""
    deadline = time.monotonic() + wait_s
    while True:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if (text.isdigit() and _alive(int(text))) or time.monotonic() > deadline:
            return text or "unknown"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True
