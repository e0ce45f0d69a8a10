"""Run one target's bench on a board over ssh: the board needs python3, numpy and the target's runtime, not edgekit.

Uses the system ssh and scp, so keys, agents, ~/.ssh/config and jump hosts work as they do for the user. Steps:
check the board's python and runtime and make a temp dir there, copy the artifacts, the preprocessed inputs, a
job file and remote_runner.py, run it with its progress streamed here, copy back its result and logits, and
remove the temp dir whatever happened.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from . import remote_runner
from .errors import EdgekitError

SSH_OPTS_ENV = "EDGEKIT_SSH_OPTS"  # extra ssh/scp options, e.g. "-o ProxyJump=gateway"
CONNECT_TIMEOUT_S = 10
# edgekit modules a job needs on the board beside remote_runner.py (each imports only numpy and its runtime).
HELPERS = {"arm-tflite": [Path(__file__).resolve().parent / "targets" / "tflite_runner.py"]}
SSH_FAILED = 255  # ssh's exit status when the connection (not the remote command) failed
# Run by the remote python before anything is copied: exit 4 if it is too old for remote_runner.py, 3 (naming
# them) if modules are missing.
PROBE = """import importlib, sys
if sys.version_info < (3, 8):
    print(sys.version.split()[0]); sys.exit(4)
missing = []
for m in sys.argv[1:]:
    try:
        importlib.import_module(m)
    except ImportError:
        missing.append(m)
print(" ".join(missing)); sys.exit(3 if missing else 0)
"""


def parse_host(spec: str) -> tuple[str, int | None]:
    """'user@host[:port]' -> ('user@host', port or None)."""
    dest, sep, port = spec.rpartition(":")
    if not sep:
        dest, port = spec, ""
    if not dest or dest.startswith("-") or dest.endswith("@") or (port and not port.isdigit()):
        raise EdgekitError(f"--remote {spec!r} is not user@host[:port]",
                           "e.g. --remote pi@192.168.1.20 or --remote pi@board:2222")
    return dest, int(port) if port else None


class Ssh:
    """ssh and scp to one host, with edgekit's non-interactive options and the user's extras."""

    def __init__(self, spec: str, key: str | Path | None = None) -> None:
        self.spec = spec
        self.dest, self.port = parse_host(spec)
        # The user's options come first: ssh takes the first value it is given for each option.
        self.options = [*shlex.split(os.environ.get(SSH_OPTS_ENV, "")),
                        "-o", "BatchMode=yes",  # never prompt: a password prompt would hang the bench
                        "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "StrictHostKeyChecking=accept-new"]
        if key is not None:
            self.options += ["-i", str(key), "-o", "IdentitiesOnly=yes"]

    def command(self, remote_command: str) -> list[str]:
        return ["ssh", *self.options, *(["-p", str(self.port)] if self.port else []), self.dest, remote_command]

    def run(self, remote_command: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.command(remote_command), capture_output=True, text=True)
        if proc.returncode == SSH_FAILED:
            raise self.unreachable(proc.stderr)
        return proc

    def copy(self, sources: list[str], target: str, what: str) -> None:
        argv = ["scp", "-q", *self.options, *(["-P", str(self.port)] if self.port else []), *sources, target]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise EdgekitError(f"copying {what} {self.spec} failed: {last_line(proc.stderr) or proc.returncode}",
                               "check the disk space and permissions there")

    def unreachable(self, stderr: str) -> EdgekitError:
        port = f"-p {self.port} " if self.port else ""
        return EdgekitError(f"cannot reach {self.spec} over ssh: {last_line(stderr) or 'connection failed'}",
                            f"check that `ssh {port}{self.dest}` works without a password "
                            "(a key in ssh-agent, or --ssh-key)")


def run_remote(host: str, target_dir: Path, target_name: str, files: dict[str, str], inputs: Path, *,
               batch: int, threads: int, runs: int, warmup: int, warmup_seconds: float, device: str = "CPU",
               ssh_key: str | Path | None = None, remote_python: str = "python3", log=print) -> dict:
    """remote_runner.py's result.json for `target_name`, benched on `host`, with the logits loaded as
    result["logits"] = {"int8": ..., "fp32": ...}. `files` names the "int8" and "fp32" artifacts in target_dir."""
    ssh = Ssh(host, ssh_key)
    artifacts = _artifacts(Path(target_dir), files.values())
    remote_dir = _prepare(ssh, remote_python, remote_runner.MODULES[target_name])
    try:
        with tempfile.TemporaryDirectory(prefix="edgekit-remote-") as tmp:
            job = Path(tmp) / "job.json"
            job.write_text(json.dumps({"target": target_name, "files": files, "inputs": inputs.name, "batch": batch,
                                       "threads": threads, "runs": runs, "warmup": warmup,
                                       "warmup_seconds": warmup_seconds, "device": device}))
            uploads = [*artifacts, inputs, job, Path(remote_runner.__file__), *HELPERS.get(target_name, [])]
            mb = sum(p.stat().st_size for p in uploads) / 1e6
            log(f"{target_name}: copying {len(uploads)} files ({mb:.1f} MB) to {host}:{remote_dir}")
            # Absolute, so scp never reads a local name with a colon in it as host:path.
            ssh.copy([str(p.resolve()) for p in uploads], f"{ssh.dest}:{remote_dir}/", "to")
            python = shlex.quote(remote_python)
            _run_streaming(ssh, f"cd {shlex.quote(remote_dir)} && {python} -u remote_runner.py job.json", log)
            ssh.copy([f"{ssh.dest}:{remote_dir}/{name}" for name in ("result.json", "int8.npy", "fp32.npy")], tmp,
                     "the results back from")
            result = json.loads((Path(tmp) / "result.json").read_text())
            result["logits"] = {"int8": np.load(Path(tmp) / result["int8_logits_file"]),
                                "fp32": np.load(Path(tmp) / result["fp32_logits_file"])}
            return result
    finally:
        subprocess.run(ssh.command(f"rm -rf {shlex.quote(remote_dir)}"), capture_output=True)


def _prepare(ssh: Ssh, python: str, module: str) -> str:
    """Checks the remote python and runtime, makes the remote temp dir; returns its path. One round trip."""
    proc = ssh.run(f"{shlex.quote(python)} -c {shlex.quote(PROBE)} numpy {module} && mktemp -d")
    out = proc.stdout.strip().splitlines()
    if proc.returncode in (126, 127):  # the shell's "not executable" / "not found"
        raise EdgekitError(f"{python} not found on {ssh.spec}",
                           "install python3 and numpy on the board, or name its python with --remote-python")
    if proc.returncode == 4:
        raise EdgekitError(f"{python} on {ssh.spec} is Python {out[-1]}; the remote bench needs 3.8 or later",
                           "name a newer python on the board with --remote-python")
    if proc.returncode == 3:
        missing = out[-1]
        raise EdgekitError(f"{python} on {ssh.spec} cannot import {missing.replace(' ', ', ')}",
                           f"install them on the board (e.g. `{python} -m pip install {missing}`; on a Jetson, "
                           "onnxruntime-gpu from the Jetson Zoo)")
    remote_dir = out[-1] if out else ""
    if proc.returncode != 0 or not remote_dir.startswith("/"):
        raise EdgekitError(f"could not make a temp dir on {ssh.spec}: {last_line(proc.stderr) or proc.returncode}",
                           "check that mktemp works there and /tmp is writable")
    return remote_dir


def _artifacts(folder: Path, names) -> list[Path]:
    """The files to copy for these artifacts, checked here before anything is done on the board."""
    paths = []
    for name in names:
        path = folder / name
        paths.append(path)
        if path.suffix == ".xml":  # an OpenVINO IR keeps its weights beside it
            paths.append(path.with_suffix(".bin"))
    for path in paths:
        if not path.is_file():
            raise EdgekitError(f"{path} is missing", "compile the target again")
    return paths


def _run_streaming(ssh: Ssh, remote_command: str, log) -> None:
    """Runs the remote bench with its output streamed to `log`; a failure raises with its last line."""
    proc = subprocess.Popen(ssh.command(remote_command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = ""
    for line in proc.stdout:
        if line.strip():
            last = line.strip()
            log(f"  {ssh.spec}: {last}")
    code = proc.wait()
    if code == SSH_FAILED:
        raise ssh.unreachable(last)
    if code != 0:
        raise EdgekitError(f"the bench on {ssh.spec} failed (exit {code}): {last}", "its output is above")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
