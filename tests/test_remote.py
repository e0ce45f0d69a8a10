"""`edgekit bench --remote` against a real sshd on 127.0.0.1: the local bench's numbers, measured over ssh.

The sshd runs as the current user with its own host key, config and authorized_keys, and serves the test's own
python as the "board's" python; the ssh client is kept off ~/.ssh (its config and known_hosts) through
EDGEKIT_SSH_OPTS. Nothing but 127.0.0.1 is contacted.
"""

from __future__ import annotations

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
from edgekit.workspace import LOCK_FILE
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
        host_key = (d / "host_key.pub").read_text().split()
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        yield SimpleNamespace(host=f"{getpass.getuser()}@127.0.0.1:{port}", key=d / "client_key", tmp=remote_tmp, dir=d)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def no_user_ssh_config(monkeypatch, tmp_path, request):
    """Keep ssh off ~/.ssh/config and ~/.ssh/known_hosts: a test's sshd is known by its own fresh host key, as a
    board is once the user has accepted its key."""
    known = tmp_path / "known_hosts"
    if "sshd" in request.fixturenames:
        known = request.getfixturevalue("sshd").dir / "known_hosts"
    monkeypatch.setenv("EDGEKIT_SSH_OPTS", f"-F /dev/null -o UserKnownHostsFile={known}")


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
    assert "latency 40/40 calls" in result.stderr, "the remote's progress is streamed"
    made = re.findall(rf"to {re.escape(sshd.host)}:({re.escape(str(sshd.tmp))}/\S+)", result.stderr)
    # One remote job per target, and one per further artifact pair (arm's .tflite, with the tflite extra).
    jobs = len(remote) + sum(len(r.get("variants", {})) for r in remote.values())
    assert len(made) == jobs and not any(Path(d).exists() for d in made), "each remote temp dir is removed"


def snapshot(root: Path) -> dict:
    """Every file and its mtime, but the writer lock's file: a failed bench still took (and released) the lock."""
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.name != LOCK_FILE}


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


@pytest.mark.parametrize("spec,dest,port", [
    ("pi@192.168.1.20", "pi@192.168.1.20", None), ("pi@board:2222", "pi@board", 2222), ("board", "board", None),
    ("me@[::1]:22", "me@::1", 22), ("[fe80::1%eth0]", "fe80::1%eth0", None),
])
def test_host_specs_that_are_accepted(spec, dest, port):
    from edgekit.remote import parse_host

    assert parse_host(spec) == (dest, port)


@pytest.mark.parametrize("spec", ["-oProxyCommand=touch /tmp/x", "pi@-oProxyCommand=x", "a b@c", "pi@host\n",
                                  "pi@host\x1b[2J", "me@::1", "pi@board:99999", "pi@", "@board", ""])
def test_host_specs_that_are_refused_before_anything_runs(spec, compiled):
    result = invoke("bench", "--target", "arm", "--workdir", compiled, *FAST, "--remote", spec)
    assert result.exit_code == 2 and "is not user@host[:port]" in result.stderr


@NEEDS_OPENSSH
def test_an_unknown_host_key_is_refused_not_accepted(sshd, compiled, monkeypatch, tmp_path):
    """The model and images are uploaded: a board whose key is not in known_hosts is an error, never trusted."""
    monkeypatch.setenv("EDGEKIT_SSH_OPTS", f"-F /dev/null -o UserKnownHostsFile={tmp_path / 'empty_known_hosts'}")
    result = invoke("bench", "--target", "arm", "--workdir", compiled, *FAST, *remote_args(sshd))
    assert result.exit_code == 2 and "host key is not in known_hosts" in result.stderr
    assert not (tmp_path / "empty_known_hosts").exists() or not (tmp_path / "empty_known_hosts").read_text()


def test_jetson_counts_as_on_device_only_under_tensorrt():
    """Which ONNX Runtime providers make a jetson run "on device": TensorRT's only. The CUDA EP runs the Q/DQ graph
    as written, not as TensorRT's int8 kernels would: that is still an emulation (no latency)."""
    from edgekit.board.jetson_board import CUDA, TRT, runs_on_device, session_providers

    cpu = "CPUExecutionProvider"
    assert session_providers([cpu], "int8") == [cpu] and not runs_on_device([cpu])
    assert session_providers([CUDA, cpu], "int8") == [CUDA, cpu] and not runs_on_device([CUDA, cpu])
    with_trt = session_providers([TRT, CUDA, cpu], "int8")
    assert with_trt[0] == (TRT, {"trt_int8_enable": True, "trt_fp16_enable": True})
    assert session_providers([TRT, CUDA, cpu], "fp32")[0] == (TRT, {})  # the reference stays fp32
    assert runs_on_device([TRT, CUDA, cpu])


def test_the_board_package_runs_without_edgekit(tmp_path, compiled):
    """What bench --remote copies (edgekit/board as edgekit_board) runs with only numpy and the runtime importable:
    here with edgekit made unimportable, on the arm pair."""
    import numpy as np

    from edgekit.remote import BOARD_PACKAGE, REMOTE_PACKAGE

    shutil.copytree(BOARD_PACKAGE, tmp_path / REMOTE_PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("model.int8.onnx", "model.fp32.onnx"):
        shutil.copy(compiled / "targets" / "arm" / name, tmp_path / name)
    np.save(tmp_path / "inputs.npy", np.random.default_rng(0).normal(size=(5, 1, 28, 28)).astype(np.float32))
    (tmp_path / "job.json").write_text(json.dumps({
        "board_module": "arm_board", "files": {"int8": "model.int8.onnx", "fp32": "model.fp32.onnx"},
        "inputs": "inputs.npy", "batch": 1, "threads": 1, "runs": 4, "warmup": 1, "warmup_seconds": 0, "options": {}}))
    (tmp_path / "edgekit.py").write_text("raise ImportError('no edgekit on a board')\n")  # shadows the real one
    proc = subprocess.run([sys.executable, "-m", f"{REMOTE_PACKAGE}.runner", "job.json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert len(result["timings_ms"]["int8"]) == 4 and result["emulated"] is False
    assert np.load(tmp_path / "int8.npy").shape == (5, 10)
