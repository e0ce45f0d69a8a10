"""Run one artifact pair's bench on a board over ssh: the board needs python3, numpy and the runtime, not edgekit.

Uses the system ssh and scp, so keys, agents, ~/.ssh/config and jump hosts work as they do for the user. Steps:
check the board's python and runtime and make a temp dir there, copy the artifacts, the preprocessed inputs, a
job file and edgekit's board package (edgekit/board/, as edgekit_board/), run `python3 -m edgekit_board.runner`
with its progress streamed here, copy back its result and outputs under fixed names, and remove the temp dir
whatever happened.

Trust: the board's host key is checked against known_hosts (StrictHostKeyChecking=yes): the model and the eval
images are uploaded, so an unknown or changed key is an error, never accepted silently. Host names are validated
before anything runs: no option-looking names, no control characters, IPv6 literals in brackets.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .board import runner as board_runner
from .errors import EdgekitError

SSH_OPTS_ENV = "EDGEKIT_SSH_OPTS"  # extra ssh/scp options, e.g. "-o ProxyJump=gateway"
CONNECT_TIMEOUT_S = 10
BOARD_PACKAGE = Path(__file__).resolve().parent / "board"  # copied to the board as edgekit_board/
REMOTE_PACKAGE = "edgekit_board"
SSH_FAILED = 255  # ssh's exit status when the connection (not the remote command) failed
# Run by the remote python before anything is copied: exit 4 if it is too old for the board runner, 3 (naming
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


# user@ (optional), then a host name / IPv4 address, or an IPv6 address in brackets, then :port (optional).
_HOST = re.compile(r"(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?"
                   r"(?:(?P<name>[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?)"
                   r"|\[(?P<ipv6>[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?)\])"
                   r"(?::(?P<port>[0-9]{1,5}))?")


def parse_host(spec: str) -> tuple[str, int | None]:
    """'user@host[:port]' or 'user@[ipv6]:port' -> (ssh destination, port or None). Anything else (an option-looking
    name, spaces or control characters, a bare IPv6 address whose colons read as a port) is refused."""
    m = _HOST.fullmatch(spec or "")
    port = int(m["port"]) if m and m["port"] else None
    if m is None or (port is not None and not 0 < port < 65536):
        raise EdgekitError(f"--remote {spec!r} is not user@host[:port]",
                           "e.g. --remote pi@192.168.1.20, --remote pi@board:2222, or --remote pi@[fe80::1%eth0]:22")
    host = m["name"] or m["ipv6"]
    return (f"{m['user']}@{host}" if m["user"] else host), port


def scp_target(dest: str, path: str) -> str:
    """scp's host:path, with an IPv6 host in the brackets scp needs (ssh itself takes it bare)."""
    user, _, host = dest.rpartition("@")
    host = f"[{host}]" if ":" in host else host
    return f"{user + '@' if user else ''}{host}:{path}"


class Ssh:
    """ssh and scp to one host, with edgekit's non-interactive options and the user's extras."""

    def __init__(self, spec: str, key: str | Path | None = None) -> None:
        self.spec = spec
        self.dest, self.port = parse_host(spec)
        # The user's options come first: ssh takes the first value it is given for each option.
        self.options = [*shlex.split(os.environ.get(SSH_OPTS_ENV, "")),
                        "-o", "BatchMode=yes",  # never prompt: a password prompt would hang the bench
                        "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
                        # The model and the images are uploaded: only to a host whose key the user already trusts.
                        "-o", "StrictHostKeyChecking=yes"]
        if key is not None:
            self.options += ["-i", str(key), "-o", "IdentitiesOnly=yes"]

    def command(self, remote_command: str) -> list[str]:
        # "--" ends ssh's options: nothing after it is read as one, whatever the destination looks like.
        return ["ssh", *self.options, *(["-p", str(self.port)] if self.port else []), "--", self.dest, remote_command]

    def run(self, remote_command: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.command(remote_command), capture_output=True, text=True)
        if proc.returncode == SSH_FAILED:
            raise self.unreachable(proc.stderr)
        return proc

    def copy(self, sources: list[str], target: str, what: str) -> None:
        argv = ["scp", "-q", "-r", *self.options, *(["-P", str(self.port)] if self.port else []), "--", *sources, target]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise EdgekitError(f"copying {what} {self.spec} failed: {last_line(proc.stderr) or proc.returncode}",
                               "check the disk space and permissions there")

    def unreachable(self, stderr: str) -> EdgekitError:
        port = f"-p {self.port} " if self.port else ""
        reason = last_line(stderr) or "connection failed"
        if "host key" in reason.lower() or "known_hosts" in stderr:
            return EdgekitError(f"{self.spec}'s host key is not in known_hosts (or changed): {reason}",
                                f"check the board's key and add it, e.g. `ssh {port}{self.dest}` once and answer "
                                "yes, or `ssh-keyscan` into ~/.ssh/known_hosts")
        return EdgekitError(f"cannot reach {self.spec} over ssh: {reason}",
                            f"check that `ssh {port}{self.dest}` works without a password "
                            "(a key in ssh-agent, or --ssh-key)")


def run_remote(host: str, target_dir: Path, pair, inputs: Path, *, batch: int, threads: int, runs: int, warmup: int,
               warmup_seconds: float, options: dict | None = None, ssh_key: str | Path | None = None,
               remote_python: str = "python3", log=print) -> dict:
    """The board runner's result.json for one ArtifactPair (targets/base.py), benched on `host`, with the
    outputs loaded as result["outputs"] = {"int8": ..., "fp32": ...}."""
    ssh = Ssh(host, ssh_key)
    artifacts = _artifacts(Path(target_dir), pair.files.values())
    board = importlib.import_module(f"edgekit.board.{pair.board_module}")
    remote_dir = _prepare(ssh, remote_python, board.RUNTIME_MODULE)
    try:
        with tempfile.TemporaryDirectory(prefix="edgekit-remote-") as tmp:
            job = Path(tmp) / "job.json"
            job.write_text(json.dumps({"board_module": pair.board_module, "files": pair.files, "inputs": inputs.name,
                                       "batch": batch, "threads": threads, "runs": runs, "warmup": warmup,
                                       "warmup_seconds": warmup_seconds, "options": options or {}}))
            package = Path(tmp) / REMOTE_PACKAGE
            package.mkdir()
            for module in BOARD_PACKAGE.glob("*.py"):  # the package without caches
                package.joinpath(module.name).write_bytes(module.read_bytes())
            uploads = [*artifacts, inputs, job, package]
            mb = sum(p.stat().st_size for p in [*artifacts, inputs, job]) / 1e6
            log(f"{pair.board_module}: copying {len(artifacts) + 2} files ({mb:.1f} MB) and edgekit's board runner "
                f"to {host}:{remote_dir}")
            # Absolute, so scp never reads a local name with a colon in it as host:path.
            ssh.copy([str(p.resolve()) for p in uploads], scp_target(ssh.dest, f"{remote_dir}/"), "to")
            python = shlex.quote(remote_python)
            _run_streaming(ssh, f"cd {shlex.quote(remote_dir)} && {python} -u -m {REMOTE_PACKAGE}.runner job.json", log)
            back = Path(tmp) / "back"
            back.mkdir()
            # Fixed names only: what comes back from a board never chooses a path here.
            ssh.copy([scp_target(ssh.dest, f"{remote_dir}/{name}") for name in board_runner.RESULT_FILES],
                     str(back), "the results back from")
            result = json.loads((back / "result.json").read_text())
            result["outputs"] = {"int8": np.load(back / "int8.npy", allow_pickle=False),
                                 "fp32": np.load(back / "fp32.npy", allow_pickle=False)}
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
