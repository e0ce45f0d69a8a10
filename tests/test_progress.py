"""edgekit.progress: one summary line in a log, a live bar on a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time

from edgekit.progress import summary_line

# 500 steps over ~0.5 s: long enough for tqdm (mininterval 0.1 s) to redraw a terminal bar several times.
SCRIPT = """
import time
from edgekit.progress import progress, track
with progress(500, "demo", "img") as bar:
    for _ in range(500):
        time.sleep(0.001)
        bar.update(1)
for _ in track(range(3), "quiet", "batch", enabled=False):
    pass
"""
LINE = re.compile(r"^demo: 500 img in (\d+\.\d\d) s \((\d+(?:\.\d+)?) img/s\)$")


def test_log_file_gets_exactly_one_line(tmp_path):
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        subprocess.run([sys.executable, "-c", SCRIPT], stderr=err, check=True, timeout=60)
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines
    m = LINE.match(lines[0])
    assert m, lines[0]
    seconds, rate = float(m[1]), float(m[2])
    assert seconds >= 0.5, "500 sleeps of 1 ms"
    assert abs(rate - 500 / seconds) <= 0.02 * rate, "the rate is the count over the time (seconds rounded)"


def test_terminal_gets_a_bar(tmp_path):
    master, slave = pty.openpty()
    # A real terminal has a size; a bare pty is 0x0, where tqdm's dynamic width draws nothing.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stderr=slave, stdout=slave, stdin=subprocess.DEVNULL)
    os.close(slave)  # the child holds its own copy; reading the master ends with EIO once it exits
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=10) == 0
    text = out.decode(errors="replace")
    assert re.search(r"demo:\s+\d+%\|.*\| *\d+/500", text), text  # tqdm's bar: "demo:  40%|████   | 200/500"
    assert text.count("\r") >= 2, "redrawn in place"
    assert "img in" not in text, "no log line on a terminal"
    assert "quiet" not in text, "enabled=False shows nothing"


def test_summary_line_format():
    assert summary_line("calibrating", 320, "img", 2.0) == "calibrating: 320 img in 2.00 s (160 img/s)"
    assert summary_line("epoch 1/4", 3, "batch", 0.5) == "epoch 1/4: 3 batch in 0.50 s (6.00 batch/s)"
    assert summary_line("nothing", 0, "img", 0.0) == "nothing: 0 img in 0.00 s (0.000 img/s)"
