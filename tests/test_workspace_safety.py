"""A workspace is safe to share and to interrupt: foreign folders refused, one writer at a time, Ctrl-C at any
point exits 130 and leaves a valid workspace, paths and permissions stay the user's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgekit import interrupt
from edgekit.cli import main
from edgekit.workspace import LOCK_FILE, Workspace, require_quantized, write_text_atomic
from tests.conftest import save_model

EDGEKIT = [sys.executable, "-m", "edgekit"]


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def quantize_args(model, calib, evalset, workdir):
    return ["quantize", model, "--calib", calib, "--eval", evalset, "--workdir", workdir, "--mean", "0.286",
            "--std", "0.353", "--method", "minmax", "--calib-size", "24"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, trained_tiny):
    return save_model(trained_tiny, "exported_program", tmp_path_factory.mktemp("m") / "tiny.pt2",
                      torch.zeros(2, 1, 28, 28))


def test_a_project_folder_is_refused_and_left_alone(tmp_path, tiny_model, calib_small, eval_npz_small):
    project = tmp_path / "project"
    (project / "targets").mkdir(parents=True)
    (project / "notes.txt").write_text("mine")
    (project / "targets" / "keep.txt").write_text("mine too")
    before = sorted(str(p.relative_to(project)) for p in project.rglob("*"))
    result = invoke(*quantize_args(tiny_model, calib_small, eval_npz_small, project))
    assert result.exit_code == 2 and "not an edgekit workspace" in result.stderr and "--force" in result.stderr
    assert "Traceback" not in result.output
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*")) == before

    adopted = invoke(*quantize_args(tiny_model, calib_small, eval_npz_small, project), "--force")
    assert adopted.exit_code == 0, adopted.output
    assert (project / "notes.txt").read_text() == "mine" and (project / "targets" / "keep.txt").is_file()
    assert require_quantized(Workspace(project))["stages"]["quantize"]["inputs_key"]


def test_an_empty_or_new_folder_is_fine_and_a_failed_first_stage_leaves_nothing(tmp_path, calib_small):
    (tmp_path / "empty").mkdir()
    result = invoke("quantize", tmp_path / "missing.pt", "--calib", calib_small, "--workdir", tmp_path / "new")
    assert result.exit_code == 2
    assert not (tmp_path / "new").exists()  # no folder, no lock file left behind


def test_a_second_writer_exits_2_naming_the_holder_and_readers_are_not_blocked(tmp_path, quantized_workspace):
    ws = tmp_path / "ws"
    shutil.copytree(quantized_workspace, ws)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom edgekit.workspace import Workspace\n"
        f"with Workspace({str(ws)!r}).writing():\n    print('locked', flush=True)\n    time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = invoke("compile", "--target", "arm", "--workdir", ws)
        assert second.exit_code == 2
        assert f"in use by another edgekit process (pid {holder.pid})" in second.stderr
        assert not (ws / "targets").exists()
        assert require_quantized(Workspace(ws))  # a reader goes on while the writer holds the lock
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the dead holder's lock: the next writer proceeds.
    assert invoke("compile", "--target", "arm", "--workdir", ws).exit_code == 0


def test_two_concurrent_quantize_runs_one_wins_one_is_refused(tmp_path, tiny_model, calib_small, eval_npz_small):
    ws = tmp_path / "ws"
    procs = [subprocess.Popen([*EDGEKIT, *map(str, quantize_args(tiny_model, calib_small, eval_npz_small, ws))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)][1]
    winner_pid = procs[[p.returncode for p in procs].index(0)].pid
    assert f"in use by another edgekit process (pid {winner_pid})" in loser
    require_quantized(Workspace(ws))


# Lines `edgekit compile --target all` writes to stderr as it goes; Ctrl-C lands right after each.
INTERRUPT_POINTS = ["openvino: compiling", "openvino: int8 vs fp32", "arm: compiling", "jetson: compiling"]


@pytest.mark.parametrize("after", INTERRUPT_POINTS)
def test_ctrl_c_during_compile_all_exits_130_and_leaves_a_valid_workspace(tmp_path, quantized_workspace, after):
    ws = tmp_path / "ws"
    shutil.copytree(quantized_workspace, ws)
    # As a terminal's foreground job: SIGINT at its default. A test run started in the background of a
    # non-interactive shell (`pytest &`, as `.ci/run` may be) inherits SIGINT ignored, and an ignored signal is
    # discarded before edgekit's sigwait can take it: the Ctrl-C would never arrive.
    proc = subprocess.Popen([*EDGEKIT, "compile", "--target", "all", "--workdir", str(ws)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if after in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    assert any(after in line for line in seen), "".join(seen)
    assert proc.returncode == interrupt.EXIT_CODE, "".join(seen) + rest
    assert rest.strip().splitlines()[-1] == interrupt.MESSAGE
    assert not list(ws.glob(".staging-*"))
    manifest = require_quantized(Workspace(ws))  # valid, with its files as quantize left them
    built = {p.name for p in (ws / "targets").iterdir()} if (ws / "targets").exists() else set()
    assert built == set(manifest.get("targets", {}))  # every target folder is a committed one, and vice versa
    for name in built:
        assert (ws / "targets" / name / "compile.json").is_file()


def test_once_exiting_a_stage_cannot_recreate_its_removed_staging_folder(tmp_path, monkeypatch):
    """The race behind a .staging-* folder that outlived Ctrl-C: the watcher removed the folder while the working
    thread went on and asked for a path in it (mkdir parents=True). Once exiting, that thread must stop instead."""
    import threading

    ws = Workspace(tmp_path / "ws")
    with ws.stage("quantize") as stage:  # the one stage that may start a new workspace
        staging = stage.dir
        monkeypatch.setattr(interrupt, "_exiting", True)  # what the watcher sets before it runs the cleanups
        interrupt.remove_tree(staging)
        worker = threading.Thread(target=lambda: stage.path("targets/openvino/model.xml").write_text("x"),
                                  daemon=True)  # left blocked, as os._exit would end it
        worker.start()
        worker.join(0.3)
        assert worker.is_alive() and not staging.exists()
        monkeypatch.setattr(interrupt, "_exiting", False)


# A process with threads that predate interrupt.install() (numpy's OpenBLAS pool, and eight more to make the
# kernel's choice of thread land on one of them): a Ctrl-C or SIGTERM must still end it through the watcher (130,
# its cleanups), never as a KeyboardInterrupt raised at an arbitrary line of the main thread. The main thread
# releases the GIL as edgekit's stages do (a runtime call, a file write): CPython 3.11 runs a Python-level signal
# handler that a foreign thread received only once the main thread next takes the GIL.
EARLY_THREADS = """
import sys, threading, time
import numpy
for _ in range(8):
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
from edgekit import interrupt
interrupt.install()
print("ready", flush=True)
try:
    while True:
        time.sleep(0.001)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(5)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_reach_the_watcher_from_threads_started_before_install(signum):
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", EARLY_THREADS], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            assert proc.stdout.readline().strip() == "ready"
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()  # a child that missed the signal must not outlive the test
        assert proc.returncode == interrupt.EXIT_CODE, out + err
        assert err.strip().splitlines()[-1] == interrupt.MESSAGE and "KeyboardInterrupt" not in out


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread signal masks from Linux /proc")
def test_the_executable_installs_before_any_thread_starts():
    """`edgekit` and `python -m edgekit` go through edgekit.launch: it must reach interrupt.install() with no thread
    started, so that every thread the CLI's imports start (numpy's pool at least) blocks Ctrl-C."""
    code = """
import os, sys, threading
from edgekit import interrupt, launch
assert "numpy" not in sys.modules, "importing edgekit.launch imported numpy"
real_install = interrupt.install
def install():
    assert len(os.listdir("/proc/self/task")) == 1, "a thread started before interrupt.install()"
    real_install()
interrupt.install = install
sys.argv = ["edgekit", "--help"]
try:
    launch.entry()
except SystemExit:
    pass
assert "numpy" in sys.modules  # the CLI's imports started numpy's pool after the install
watcher = next(t.native_id for t in threading.enumerate() if t.name == "edgekit-interrupt")
for task in os.listdir("/proc/self/task"):
    if int(task) != watcher:
        blocked = int(open(f"/proc/self/task/{task}/status").read().split("SigBlk:")[1].split()[0], 16)
        assert all(blocked >> (n - 1) & 1 for n in (2, 15)), (task, hex(blocked))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_stale_staging_folders_are_removed_at_the_next_write(tmp_path, quantized_workspace):
    ws = tmp_path / "ws"
    shutil.copytree(quantized_workspace, ws)
    stale = ws / ".staging-compile-arm-dead"
    stale.mkdir()
    (stale / "half.onnx").write_bytes(b"\0" * 10)
    (ws / ".manifest.json.abc.tmp").write_text("{")
    assert invoke("compile", "--target", "arm", "--workdir", ws).exit_code == 0
    assert not stale.exists() and not list(ws.glob(".*.tmp"))


def test_manifest_paths_must_stay_inside_the_workspace(tmp_path, quantized_workspace):
    ws = tmp_path / "ws"
    shutil.copytree(quantized_workspace, ws)
    assert invoke("compile", "--target", "arm", "--workdir", ws).exit_code == 0
    manifest = json.loads((ws / "manifest.json").read_text())
    for bad in ("../../etc", "/etc", "targets/../../x"):
        manifest["targets"]["arm"]["dir"] = bad
        (ws / "manifest.json").write_text(json.dumps(manifest))
        result = invoke("bench", "--target", "arm", "--workdir", ws)
        assert result.exit_code == 2 and "a path outside the workspace" in result.stderr, bad


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_keep_the_users_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == mode


def test_lock_file_is_not_a_foreign_file(tmp_path, tiny_model, calib_small, eval_npz_small):
    """A folder holding only edgekit's own lock file (a writer that failed early) is still a fresh workspace."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / LOCK_FILE).write_text("12345\n")
    assert invoke(*quantize_args(tiny_model, calib_small, eval_npz_small, ws)).exit_code == 0


def test_a_refused_process_waits_for_the_holder_to_write_its_pid(tmp_path):
    """The holder writes its pid just after taking the lock; a process refused in that window reads the file again
    rather than reporting "pid unknown" (a CI flake) or an earlier holder's pid."""
    import os
    import threading

    from edgekit.workspace import _lock_holder

    path = tmp_path / "lock"
    path.write_text("999999999\n")  # an earlier holder, long gone
    fd = os.open(path, os.O_RDWR)
    try:
        writer = threading.Timer(0.1, lambda: os.pwrite(fd, f"{os.getpid()}\n".ljust(10).encode(), 0))
        writer.start()
        assert _lock_holder(fd) == str(os.getpid())
        writer.join()
        os.ftruncate(fd, 0)
        assert _lock_holder(fd, wait_s=0.05) == "unknown"
    finally:
        os.close(fd)
