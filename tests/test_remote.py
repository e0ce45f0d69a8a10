"""`edgekit bench --remote` against a real sshd on 127.0.0.1: the local bench's numbers, measured over ssh.

The sshd runs as the current user with its own host key, config and authorized_keys, and serves the test's own
python as the "board's" python; the ssh client is kept off ~/.ssh (its config and known_hosts) through
EDGEKIT_SSH_OPTS. Nothing but 127.0.0.1 is contacted.
"""

from __future__ import annotations

import ast
import getpass
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from edgekit.cli import main
from tests.conftest import compile_all

SSHD = "/usr/sbin/sshd"
FAST = ["--runs", "20", "--warmup", "2", "--warmup-seconds", "0.05", "--threads", "1"]
TOOLS_MISSING = not Path(SSHD).is_file() or not all(shutil.which(t) for t in ("ssh", "scp", "ssh-keygen"))
WHY_SKIPPED = "needs OpenSSH (apt-get install openssh-server openssh-client)"
NEEDS_OPENSSH = pytest.mark.skipif(TOOLS_MISSING, reason=WHY_SKIPPED)


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if TOOLS_MISSING:
        pytest.skip(WHY_SKIPPED)
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    remote_tmp = d / "remote-tmp"  # the remote's $TMPDIR, so the test can see what mktemp left behind
    remote_tmp.mkdir()
    port = free_port()
    (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d / 'host_key'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
SetEnv TMPDIR={remote_tmp}
""")
    if os.geteuid() == 0:
        # A root sshd refuses to start without its privilege separation dir (systemd makes it for the service).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    with open(d / "sshd.log", "w") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, f"sshd exited: {(d / 'sshd.log').read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "sshd did not listen within 10 s"
                time.sleep(0.05)
        yield SimpleNamespace(host=f"{getpass.getuser()}@127.0.0.1:{port}", key=d / "client_key", tmp=remote_tmp, dir=d)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def no_user_ssh_config(monkeypatch, tmp_path):
    """Keep ssh off ~/.ssh/config and ~/.ssh/known_hosts (each sshd here has a fresh host key)."""
    monkeypatch.setenv("EDGEKIT_SSH_OPTS", f"-F /dev/null -o UserKnownHostsFile={tmp_path / 'known_hosts'}")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, quantized_workspace):
    return compile_all(tmp_path_factory.mktemp("remote") / "ws", quantized_workspace)


def remote_args(sshd, python=sys.executable):
    return ["--remote", sshd.host, "--ssh-key", sshd.key, "--remote-python", python]


def test_remote_bench_equals_local_and_cleans_up(sshd, compiled):
    local = invoke("bench", "--target", "all", "--workdir", compiled, "--json", "--max-drop", "100", *FAST)
    assert local.exit_code == 0, local.output
    local = json.loads(local.stdout)

    result = invoke("bench", "--target", "all", "--workdir", compiled, "--json", "--max-drop", "100", *FAST,
                    *remote_args(sshd))
    assert result.exit_code == 0, result.output
    remote = json.loads(result.stdout)
    assert set(remote) == {"openvino", "arm", "jetson"}
    for name, r in remote.items():
        assert json.loads((compiled / "targets" / name / "bench.json").read_text()) == r
        assert r["remote"] == sshd.host and r["threads"] == 1 and r["passed"]
        # The board sent back the same logits a local run computes, so every accuracy figure is identical.
        assert r["accuracy"] == local[name]["accuracy"], name
        assert r["environment"]["machine"] == platform.machine() and "onnxruntime" in r["environment"]["versions"]
    # Latency measured on the "board", labelled for what it is: arm on a non-ARM machine stays a host proxy.
    arm, ov, jetson = remote["arm"], remote["openvino"], remote["jetson"]
    assert arm["latency_ms"]["n"] == 20 and arm["reference_latency_ms"]["n"] == 20
    assert arm["speedup_vs_reference"] == pytest.approx(arm["reference_latency_ms"]["p50"] / arm["latency_ms"]["p50"])
    assert arm["host_proxy"] is (platform.machine() not in ("aarch64", "arm64", "armv7l", "armv8l"))
    assert sshd.host in arm["latency_note"]
    assert ov["host_proxy"] is False
    assert ov["latency_note"] == f"measured on the device: {sshd.host} ({platform.machine()})"
    assert ov["environment"]["precision"] == "f32" and ov["latency_ms"]["n"] == 20
    # No TensorRT or CUDA on the "board": the jetson graph ran emulated, so accuracy only, as locally.
    assert jetson["emulated"] and jetson["latency_ms"] is None and "not measured" in jetson["latency_note"]
    assert jetson["providers"]["int8"] == ["CPUExecutionProvider"]
    assert "openvino: latency 40/40 calls" in result.stderr, "the remote's progress is streamed"
    made = re.findall(rf"to {re.escape(sshd.host)}:({re.escape(str(sshd.tmp))}/\S+)", result.stderr)
    # One remote job per target, and one per further artifact pair (arm's .tflite, with the tflite extra).
    jobs = len(remote) + sum(len(r.get("variants", {})) for r in remote.values())
    assert len(made) == jobs and not any(Path(d).exists() for d in made), "each remote temp dir is removed"


def snapshot(root: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*")}


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("edgekit: error:")]


@NEEDS_OPENSSH
def test_unreachable_host_is_one_line_exit_2(compiled):
    before = snapshot(compiled)
    port = free_port()  # bound and released: nothing listens there
    result = invoke("bench", "--target", "arm", "--workdir", compiled, *FAST, "--remote", f"root@127.0.0.1:{port}")
    assert result.exit_code == 2 and "Traceback" not in result.output
    [line] = error_lines(result)
    assert f"cannot reach root@127.0.0.1:{port} over ssh" in line and "Connection refused" in line
    assert f"check that `ssh -p {port} root@127.0.0.1` works without a password" in line
    assert snapshot(compiled) == before, "nothing written"


# The board's python, as a wrapper around this one: None is a path that does not exist.
BOARD_PYTHONS = {
    "no python": None,
    "no site-packages": f'exec {sys.executable} -S "$@"',  # no numpy, no onnxruntime
    "runner fails": f'[ "$1" = -u ] && {{ echo "error: no NPU on this board" >&2; exit 1; }}; exec {sys.executable} "$@"',
}


@pytest.mark.parametrize("board,needle", [
    ("no python", "not found on"),
    ("no site-packages", "cannot import numpy, onnxruntime. install them on the board"),
    ("runner fails", "failed (exit 1): error: no NPU on this board. its output is above"),
])
def test_board_that_cannot_run_it_is_one_line_exit_2(sshd, compiled, board, needle):
    python = sshd.dir / f"python-{board.replace(' ', '-')}"
    if BOARD_PYTHONS[board] is not None:
        python.write_text(f"#!/bin/sh\n{BOARD_PYTHONS[board]}\n")
        python.chmod(0o755)
    result = invoke("bench", "--target", "arm", "--workdir", compiled, *FAST, *remote_args(sshd, python))
    assert result.exit_code == 2 and "Traceback" not in result.output
    [line] = error_lines(result)
    assert needle in line
    assert not [p for p in sshd.tmp.iterdir() if p.is_dir()], "the remote temp dir is removed after a failure too"


def top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree)), "no relative imports"
    imported = {alias.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    return imported - set(sys.stdlib_module_names)


def test_remote_runner_is_standalone():
    """The board has no edgekit: remote_runner.py may import only the standard library, numpy, a runtime, and the
    helper modules copied beside it, which themselves import only numpy and their runtime."""
    import edgekit.remote_runner as runner
    from edgekit.remote import HELPERS

    assert top_level_imports(Path(runner.__file__)) == {"numpy", "onnxruntime", "openvino", "tflite_runner"}
    [tflite_runner] = HELPERS["arm-tflite"]
    assert tflite_runner.name == "tflite_runner.py"
    assert top_level_imports(tflite_runner) == {"numpy", runner.MODULES["arm-tflite"]}
