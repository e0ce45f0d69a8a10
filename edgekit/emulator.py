"""ARM numerics without a board: the arm target's artifacts in the aarch64 builds of their runtimes, on an emulated
aarch64 CPU (qemu user mode), run by the same board runner `bench --remote` runs on a board (edgekit/board/).

`edgekit setup arm-emulator` (setup) builds, in a per-user cache folder (cache_dir()):
  sysroot/   the arm64 Debian bookworm packages python3.11, libstdc++6, libgomp1 and their dependencies, unpacked with
             `dpkg -x`: no chroot, no root, and the system's apt configuration untouched (apt runs on private
             state, cache and sources folders, apt/ while it runs)
  wheels/    numpy, onnxruntime and ai-edge-litert for CPython 3.11 on manylinux aarch64 (pip --target); the two
             runtimes at this host's versions where it has them, so the x86 comparison compares the same releases
  env.json   what was installed, with versions; ready() reads it
qemu-aarch64-static itself comes from the system (`apt-get install qemu-user-static` as root).

A run (run_pair) is `qemu-aarch64-static -cpu MODEL -L ROOT ROOT/usr/bin/python3.11 -m edgekit_board.runner
job.json`. ROOT is a folder of the run's own: links to sysroot/'s top-level folders plus proc/cpuinfo and
sys/devices/system/cpu/ (qemu looks every absolute path up under -L first and falls back to the real one), because
  - cpuinfo (inside onnxruntime and LiteRT) parses /proc/cpuinfo and crashes on the host's x86 one at import;
  - LiteRT drops XNNPACK without a word when it cannot read an aarch64 CPU topology under /sys;
and both are written from what the emulated CPU reports itself (MIDR_EL1 and the HWCAP bits, probed in the guest),
so they describe the CPU model asked for. The model is always named: qemu's default `max` CPU enables SME, and
XNNPACK then returns wrong results (998 of 1000 int8 outputs differed in a test), so `max` is refused.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import EdgekitError
from .remote import BOARD_PACKAGE, REMOTE_PACKAGE

NAME = "arm-emulator"
TARGET = "arm"  # the target whose artifacts it runs
SETUP = f"edgekit setup {NAME}"
SPEC = 1  # bump when what setup builds changes: an older env.json is then rebuilt
# Named in --help; any model `qemu-aarch64-static -cpu help` lists is accepted, except "max" (above).
CPUS = ("cortex-a53", "cortex-a72", "cortex-a76", "neoverse-n1")
QEMU = ("qemu-aarch64-static", "qemu-aarch64")  # Debian's qemu-user-static, or a distribution's plain build
PYTHON = "python3.11"  # bookworm's python: the wheels below are cp311
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
RELEASE = "bookworm"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
PACKAGES = (PYTHON, "libstdc++6", "libgomp1")  # + dependencies; libgomp1: onnxruntime's OpenMP
WHEELS = ("numpy", "onnxruntime", "ai-edge-litert")
PINNED = ("onnxruntime", "ai-edge-litert")  # at the host's version: same kernels' release on both sides
# pip takes exactly the tags listed: onnxruntime 1.32's wheel is manylinux_2_28, ai-edge-litert 2.3's manylinux_2_27,
# and with manylinux2014 alone pip silently picked onnxruntime 1.16.3 and no ai-edge-litert at all (2026-11-30).
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux2014_aarch64")
RUNTIME_VERSIONS = ("numpy", "onnxruntime", "ai-edge-litert")
# Default eval images on an emulated CPU: DEFAULT_IMAGES_224 at 224x224, scaled by input area, at most MAX_IMAGES.
# Measured 2026-11-30 on 2 cores, both int8 artifacts with their start-up: EfficientNet-Lite0 (224 px), 100 images in
# 81 s (4 min at a load average of 6), the Fashion-MNIST ResNet (28 px), 500 images in 56 s (4 min at load 7).
DEFAULT_IMAGES_224, MAX_IMAGES = 100, 500

# Linux arm64 HWCAP / HWCAP2 bits (arch/arm64/include/uapi/asm/hwcap.h), named as /proc/cpuinfo names them.
HWCAP = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop "
         "sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg").split()
HWCAP2 = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm svebf16 "
          "i8mm bf16 dgh rng bti mte ecv afp rpres mte3 sme smei16i64 smef64f64 smei8i32 smef16f32 smeb16f32 "
          "smef32f32 smefa64 wfxt ebf16 sveebf16").split()

NETWORK = re.compile(r"Failed to fetch|Could not (resolve|connect)|Temporary failure|Connection|timed out|"
                     r"No matching distribution|Network is unreachable", re.I)

# Runs in the guest before anything reads /proc/cpuinfo: MIDR_EL1 (an `mrs` the kernel, here qemu, serves at EL0)
# and the HWCAP words from the auxiliary vector, as JSON.
PROBE = r"""import ctypes, json, mmap
libc = ctypes.CDLL(None)
libc.getauxval.restype = ctypes.c_ulong
libc.getauxval.argtypes = [ctypes.c_ulong]
code = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
code.write(bytes.fromhex("000038d5c0035fd6"))  # mrs x0, midr_el1; ret
midr = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(code)))()
print(json.dumps({"midr": midr, "hwcap": libc.getauxval(16), "hwcap2": libc.getauxval(26)}))
"""
# Run by setup's last step: the runtimes import on the emulated CPU (what crashes without the sysroot's cpuinfo).
IMPORT_CHECK = r"""import json, platform, numpy, onnxruntime
from ai_edge_litert.interpreter import Interpreter
print(json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                  "onnxruntime_providers": onnxruntime.get_available_providers()}))
"""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgekit" / NAME


def qemu_binary() -> str | None:
    return next((path for path in map(shutil.which, QEMU) if path), None)


def ready() -> str | None:
    """None when `bench --emulate` can run here, else why not (one line). Cheap: no process is started."""
    if qemu_binary() is None:
        return "qemu-aarch64-static not found"
    env = read_env()
    if env is None or env.get("spec") != SPEC or "check" not in env:
        return "not set up"
    root = cache_dir()
    missing = [p for p in (root / "sysroot/usr/bin" / PYTHON, root / "wheels/onnxruntime") if not p.exists()]
    if missing:
        return f"incomplete: {missing[0]} is missing"
    return None


def read_env() -> dict | None:
    try:
        return json.loads((cache_dir() / "env.json").read_text())
    except (OSError, ValueError):
        return None


def status_line() -> str:
    """For `edgekit targets`: "ready (qemu 7.2.22)" or why not (versions: env.json)."""
    reason = ready()
    return f"{reason} (`{SETUP}`)" if reason else f"ready (qemu {read_env()['qemu']['version'].split()[0]})"


# ---- setup --------------------------------------------------------------------------------------------------------

def setup(name: str = NAME, *, log=print) -> dict:
    """Build the aarch64 emulation environment for `edgekit bench --target arm --emulate CPU` (see the module
    docstring) into cache_dir(); a step already done is checked and skipped. Returns env.json's content."""
    if name != NAME:
        raise EdgekitError(f"unknown environment {name!r}", f"the one edgekit can set up is {NAME}")
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        env = read_env() or {}
        if env.get("spec") != SPEC:
            env = {}
        started = time.perf_counter()
        log(f"{NAME}: {'checking' if env else 'building'} {root}")
        env.pop("check", None)  # ready() again only once the last step passed
        env.update(spec=SPEC, qemu=_step_qemu(log))
        # Recorded after each step, so a run that fails later (a lost connection) does not download it again.
        for key, step in (("sysroot", _step_sysroot), ("wheels", _step_wheels)):
            env[key] = step(root, env.get(key), log)
            _write_json(root / "env.json", env)
        env.update(check=_step_check(env["qemu"]["path"], log),
                   updated=datetime.datetime.now().isoformat(timespec="seconds"))
        _write_json(root / "env.json", env)
        log(f"{NAME}: ready in {time.perf_counter() - started:.0f} s; "
            f"`edgekit bench --target arm --emulate cortex-a76` runs the arm artifacts on an emulated Cortex-A76")
        return env


def _step_qemu(log) -> dict:
    step = "[1/4] qemu"
    path = qemu_binary()
    if path is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise EdgekitError("qemu-aarch64-static is not installed",
                               "install it as root (`sudo apt-get install qemu-user-static`; Fedora: `sudo dnf "
                               f"install qemu-user-static`), then run `{SETUP}` again")
        log(f"{step}: installing qemu-user-static with apt-get (about 60 MB)")
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "qemu-user-static"]
        if _quiet(install).returncode != 0:  # stale package lists: refresh once, then try again
            _check_ok(_quiet(["apt-get", "update", "-q"]), "apt-get update", "the system's package archive")
            _check_ok(_quiet(install), "apt-get install qemu-user-static", "the system's package archive")
        path = qemu_binary()
        if path is None:
            raise EdgekitError("apt-get installed qemu-user-static but no qemu-aarch64-static is on PATH",
                               "check the package's files with `dpkg -L qemu-user-static`")
    version = qemu_version(path)
    log(f"{step}: {path}, version {version}")
    return {"path": path, "version": version}


def _step_sysroot(root: Path, done: dict | None, log) -> dict:
    step = "[2/4] sysroot"
    sysroot = root / "sysroot"
    if done and (sysroot / "usr/bin" / PYTHON).is_file():
        log(f"{step}: present ({len(done['packages'])} arm64 packages, {PYTHON} {done['packages'].get(PYTHON)}), "
            "skipped")
        return done
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise EdgekitError(f"the aarch64 sysroot is made from Debian packages with apt-get and dpkg; {tool} "
                               "is not here", f"run `{SETUP}` on a Debian or Ubuntu machine (or container)")
    if not KEYRING.is_file():
        raise EdgekitError(f"{KEYRING} is missing: the Debian archive's signatures cannot be checked",
                           "install it (`sudo apt-get install debian-archive-keyring`), then run the setup again")
    started = time.perf_counter()
    apt = root / "apt"
    shutil.rmtree(apt, ignore_errors=True)
    for sub in ("state/lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        (apt / sub).mkdir(parents=True)
    (apt / "state/status").write_text("")  # an empty dpkg database: every dependency is downloaded
    sources = debian_sources()
    if not sources:
        raise EdgekitError(f"this machine's apt sources name no Debian {RELEASE} archive to take arm64 packages from",
                           f"add one to /etc/apt/sources.list.d (the {RELEASE} main suites), then run `{SETUP}` again")
    signed = f"[arch=arm64 signed-by={KEYRING}]"
    (apt / "sources.list").write_text("".join(f"deb {signed} {uri} {suite} main\n" for uri, suite in sources))
    archive = ", ".join(sorted({uri for uri, _ in sources}))  # the archive(s) this machine already uses
    # Every path apt reads or writes points into apt/: the system's sources, state and dpkg database stay as they
    # are (its apt.conf.d still applies, so a configured proxy is used).
    options = [f"Dir::State={apt}/state", f"Dir::State::status={apt}/state/status", f"Dir::Cache={apt}/cache",
               f"Dir::Etc::SourceList={apt}/sources.list", f"Dir::Etc::SourceParts={apt}/sources.list.d",
               f"Dir::Etc::Preferences={apt}/preferences", f"Dir::Etc::PreferencesParts={apt}/preferences.d",
               "APT::Architecture=arm64", "APT::Architectures::=arm64", "Debug::NoLocking=1",
               "APT::Install-Recommends=false"]
    if os.geteuid() == 0:
        options.append("APT::Sandbox::User=root")  # apt's _apt user cannot enter a 0700 home's cache folder
    apt_get = ["apt-get", "-q", *(f"-o{o}" for o in options)]
    log(f"{step}: reading Debian bookworm's arm64 package lists ({archive})")
    update = _quiet([*apt_get, "update"])
    if update.returncode != 0 or not any((apt / "state/lists").glob("*arm64_Packages*")):
        raise EdgekitError(f"cannot reach the Debian archive ({archive}): {_last_problem(update)}",
                           f"check the network or apt's proxy setting, then run `{SETUP}` again")
    log(f"{step}: downloading {', '.join(PACKAGES)} and their dependencies (arm64, about 16 MB)")
    _check_ok(_quiet([*apt_get, "install", "--download-only", "-y", *PACKAGES]), "apt-get install --download-only",
              f"the Debian archive ({archive})")
    debs = sorted((apt / "cache/archives").glob("*.deb"))
    partial = root / "sysroot.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for deb in debs:
        _check_ok(_quiet(["dpkg", "-x", str(deb), str(partial)]), f"dpkg -x {deb.name}", None)
    shutil.rmtree(sysroot, ignore_errors=True)
    partial.rename(sysroot)
    packages = dict(_deb_name_version(d) for d in debs)
    shutil.rmtree(apt, ignore_errors=True)  # lists and downloads: 25 MB not needed once unpacked
    log(f"{step}: {len(debs)} packages unpacked into {sysroot} ({_megabytes(sysroot):.0f} MB) in "
        f"{time.perf_counter() - started:.0f} s")
    return {"release": RELEASE, "mirror": archive, "packages": packages}


def debian_sources() -> list[tuple[str, str]]:
    """(archive URI, suite) of the Debian release's suites that this machine's apt is configured with (one-line
    sources.list entries and deb822 .sources files), so the arm64 packages come from the archive, mirror or proxy
    the machine already uses; nothing is hard-coded."""
    found: list[tuple[str, str]] = []
    files = [APT_SOURCES[0]] if APT_SOURCES[0].is_file() else []
    if APT_SOURCES[1].is_dir():
        files += sorted(p for p in APT_SOURCES[1].iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":  # deb822: paragraphs of "Key: value" lines
            for para in text.split("\n\n"):
                fields = dict(line.split(":", 1) for line in para.splitlines()
                              if ":" in line and not line.lstrip().startswith("#"))
                fields = {k.strip(): v.split() for k, v in fields.items()}
                if "deb" in fields.get("Types", []) and "main" in fields.get("Components", []):
                    found += [(u, s) for u in fields.get("URIs", []) for s in fields.get("Suites", [])]
        else:
            for line in text.splitlines():
                parts = [w for w in line.split("#", 1)[0].split() if not w.startswith("[")]
                if len(parts) >= 4 and parts[0] == "deb" and "main" in parts[3:]:
                    found.append((parts[1], parts[2]))
    return [(u, s) for u, s in dict.fromkeys(found) if s == RELEASE or s.startswith(f"{RELEASE}-")]


def _step_wheels(root: Path, done: dict | None, log) -> dict:
    step = "[3/4] wheels"
    wheels = root / "wheels"
    want = _wheel_requirements()
    if done and wheels.is_dir() and all(done.get(n) == v for n, v in _pins(want).items()):
        log(f"{step}: present ({', '.join(f'{k} {v}' for k, v in done.items())}), skipped")
        return done
    started = time.perf_counter()
    partial = root / "wheels.partial"
    shutil.rmtree(partial, ignore_errors=True)
    log(f"{step}: pip install {' '.join(want)} for CPython 3.11 on manylinux aarch64")
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    proc = _quiet([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--retries", "2",
                   "--no-warn-conflicts", "--target", str(partial), "--only-binary=:all:", "--implementation", "cp",
                   "--python-version", "3.11", "--abi", "cp311", *platforms, *want])
    if proc.returncode != 0:
        problem = _last_problem(proc)
        raise EdgekitError(("cannot reach the Python package index" if NETWORK.search(problem) else
                            "pip could not get the aarch64 wheels") + f": {problem}",
                           f"check the network, or pip's index settings (PIP_INDEX_URL, pip.conf), then run `{SETUP}` "
                           "again")
    shutil.rmtree(wheels, ignore_errors=True)
    partial.rename(wheels)
    versions = wheel_versions(wheels)
    log(f"{step}: {', '.join(f'{k} {v}' for k, v in versions.items())} ({_megabytes(wheels):.0f} MB) in "
        f"{time.perf_counter() - started:.0f} s")
    return versions


def _step_check(qemu: str, log) -> dict:
    """The runtimes import on an emulated CPU: what fails here without the sysroot's cpuinfo."""
    step = "[4/4] check"
    cpu = "cortex-a76"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgekit-emu-") as tmp:
        guest = Guest(cpu, qemu)
        guest.make_root(Path(tmp))
        proc = guest.python(["-c", IMPORT_CHECK], cwd=Path(tmp))
    if proc.returncode != 0:
        raise EdgekitError(f"numpy, onnxruntime and ai_edge_litert do not import on an emulated {cpu}: "
                           f"{_last_problem(proc)}", f"run `{SETUP}` again; if it persists, report it with "
                           "`edgekit --debug setup arm-emulator`")
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    log(f"{step}: numpy, onnxruntime and ai_edge_litert import on an emulated {cpu} (python {facts['python']}, "
        f"{facts['machine']}) in {time.perf_counter() - started:.0f} s")
    return {"cpu": cpu, **facts}


def _wheel_requirements() -> list[str]:
    """numpy, and the runtimes at this host's versions where it has them."""
    out = []
    for name in WHEELS:
        version = host_version(name) if name in PINNED else None
        out.append(f"{name}=={version}" if version else name)
    return out


def _pins(requirements: list[str]) -> dict:
    return dict(r.split("==") for r in requirements if "==" in r)


def host_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def wheel_versions(folder: Path) -> dict:
    found = {d.metadata["Name"].lower(): d.version for d in importlib.metadata.distributions(path=[str(folder)])}
    return {name: found[name] for name in RUNTIME_VERSIONS if name in found}


def qemu_version(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version\s+(.+)", out)
    return m.group(1).strip() if m else "unknown"


def qemu_cpus(path: str) -> list[str]:
    out = subprocess.run([path, "-cpu", "help"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines()[1:] if line.strip()]


# ---- running ------------------------------------------------------------------------------------------------------

class Guest:
    """An emulated aarch64 CPU of one model, with the sysroot's python and the wheels."""

    def __init__(self, cpu: str, qemu: str | None = None) -> None:
        self.cpu = cpu
        self.qemu = qemu or qemu_binary()
        self.qemu_version = qemu_version(self.qemu)
        self.cache = cache_dir()
        self.root: Path | None = None

    def make_root(self, folder: Path) -> Path:
        """The -L folder of a run: the sysroot's top-level folders linked, plus this CPU's proc/ and sys/."""
        self.root = folder / "aarch64-root"
        self.root.mkdir()
        sysroot = self.cache / "sysroot"
        for entry in sysroot.iterdir():
            (self.root / entry.name).symlink_to(entry)
        proc = self.python(["-I", "-S", "-c", PROBE], cwd=folder)
        if proc.returncode != 0:
            raise EdgekitError(f"python does not start on an emulated {self.cpu}: {_last_problem(proc)}",
                               f"run `{SETUP}` again")
        self.facts = json.loads(proc.stdout.strip().splitlines()[-1])
        cores = os.cpu_count() or 1  # as many as the host: qemu runs each guest thread on a host thread
        self.features = [name for bits, names in ((self.facts["hwcap"], HWCAP), (self.facts["hwcap2"], HWCAP2))
                         for i, name in enumerate(names) if bits >> i & 1]
        _write_cpu_files(self.root, self.facts["midr"], self.features, cores)
        return self.root

    @property
    def midr(self) -> str:
        return f"0x{self.facts['midr']:08x}"

    def command(self, args: list[str]) -> list[str]:
        return [self.qemu, "-cpu", self.cpu, "-L", str(self.root), str(self.root / "usr/bin" / PYTHON), *args]

    def environ(self, extra_path: Path | None = None) -> dict:
        # The host's loader and python settings must not reach the guest's: its ld.so reads LD_* too.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LD_", "PYTHON", "QEMU_"))}
        path = [str(extra_path)] if extra_path else []
        env.update(PYTHONPATH=os.pathsep.join([*path, str(self.cache / "wheels")]), PYTHONNOUSERSITE="1")
        return env

    def python(self, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(args), cwd=cwd, env=self.environ(), capture_output=True, text=True)


def _write_cpu_files(root: Path, midr: int, features: list[str], cores: int) -> None:
    """/proc/cpuinfo as an arm64 kernel prints it, and the /sys cpu topology cpuinfo reads: one package, one
    cluster, `cores` cores of the emulated model."""
    block = (f"Features\t: {' '.join(features)}\nCPU implementer\t: 0x{midr >> 24 & 0xff:02x}\n"
             f"CPU architecture: 8\nCPU variant\t: 0x{midr >> 20 & 0xf:x}\nCPU part\t: 0x{midr >> 4 & 0xfff:03x}\n"
             f"CPU revision\t: {midr & 0xf}\n\n")
    (root / "proc").mkdir()
    (root / "proc/cpuinfo").write_text("".join(f"processor\t: {i}\n{block}" for i in range(cores)))
    cpu = root / "sys/devices/system/cpu"
    cpu.mkdir(parents=True)
    every = f"0-{cores - 1}" if cores > 1 else "0"
    for name, value in (("kernel_max", "255"), ("possible", every), ("present", every), ("online", every)):
        (cpu / name).write_text(value + "\n")
    for i in range(cores):
        topology = cpu / f"cpu{i}/topology"
        topology.mkdir(parents=True)
        for name, value in (("physical_package_id", "0"), ("cluster_id", "0"), ("core_id", str(i)),
                            ("thread_siblings_list", str(i)), ("core_siblings_list", every),
                            ("cluster_cpus_list", every), ("package_cpus_list", every)):
            (topology / name).write_text(value + "\n")


def check_request(target: str, cpu: str | None, images: int | None, remote: str | None) -> Guest | None:
    """The emulated CPU `bench --emulate CPU` asks for, checked before any work (None without --emulate)."""
    if cpu is None:
        if images is not None:
            raise EdgekitError("--emulate-images only applies to an emulated bench", "add --emulate cortex-a76")
        return None
    if remote is not None:
        raise EdgekitError("--emulate and --remote exclude each other: one runs on an emulated CPU here, the other "
                           "on a board", "drop one of them")
    others = [] if target == "all" else [t.strip() for t in target.split(",") if t.strip() not in ("", TARGET)]
    if others:
        raise EdgekitError(f"--emulate runs the {TARGET} target's artifacts on an emulated aarch64 CPU; it does not "
                           f"apply to {', '.join(others)}", f"use --target {TARGET}")
    if images is not None and images < 1:
        raise EdgekitError(f"--emulate-images must be at least 1, got {images}", "e.g. --emulate-images 50")
    return Guest(check_cpu(cpu))


def default_images(height: int, width: int) -> int:
    """Eval images for an emulated bench when none are asked for: a few minutes for a 224 px model, more images
    for smaller inputs (per-image cost falls with the pixels, though not as fast), at most MAX_IMAGES."""
    return max(1, min(MAX_IMAGES, round(DEFAULT_IMAGES_224 * 224 * 224 / (height * width))))


def eval_subset(images, label: str, n: int | None, pre) -> tuple:
    """(ImageSet, description): `n` images (default_images) spread evenly over the eval set, so a set sorted by
    class keeps every class."""
    n = min(len(images), n or default_images(pre.height, pre.width))
    if n == len(images):
        return images, label
    picked = np.linspace(0, len(images) - 1, n).round().astype(int).tolist()
    return images.subset(picked), f"{label}: {n} of its {len(images)} images, evenly spread"


def check_cpu(cpu: str) -> str:
    """The CPU model, checked against what this qemu emulates; the environment must be ready."""
    reason = ready()
    if reason:
        raise EdgekitError(f"aarch64 emulation is not set up here: {reason}", f"run `{SETUP}` first")
    if cpu in ("max", "host"):
        raise EdgekitError(f"--emulate {cpu}: qemu's {cpu!r} CPU enables every feature it emulates (SME included) "
                           "and XNNPACK's kernels then return wrong results", f"name a real model, e.g. {CPUS[2]}")
    known = qemu_cpus(qemu_binary())
    if cpu not in known:
        raise EdgekitError(f"qemu {qemu_version(qemu_binary()).split()[0]} does not emulate a CPU named {cpu!r}",
                           f"choose one of: {', '.join(c for c in known if c != 'max')}")
    return cpu


def run_pair(guest: Guest, target_dir: Path, pair, inputs: Path, *, threads: int, options: dict | None = None,
             log=print) -> dict:
    """The board runner's result.json for the int8 artifact of an ArtifactPair (targets/base.py), computed on the
    emulated CPU, with its outputs as result["outputs"]["int8"]. Only the int8 artifact runs there: fp32 kernels
    are emulated about ten times slower than int8 ones, and the fp32 reference is not what this check is about.
    No timing: emulation time is not device time."""
    with tempfile.TemporaryDirectory(prefix="edgekit-emu-") as tmp:
        job_dir = Path(tmp)
        guest.make_root(job_dir)
        package = job_dir / REMOTE_PACKAGE
        package.mkdir()
        for module in BOARD_PACKAGE.glob("*.py"):  # the package as `bench --remote` copies it to a board
            package.joinpath(module.name).write_bytes(module.read_bytes())
        files = {}
        for role, name in pair.files.items():
            (job_dir / name).symlink_to(Path(target_dir).resolve() / name)
            files[role] = name
        (job_dir / inputs.name).symlink_to(inputs.resolve())
        job = {"board_module": pair.board_module, "files": files, "inputs": inputs.name, "batch": 1,
               "threads": threads, "runs": 0, "warmup": 0, "warmup_seconds": 0, "options": options or {},
               "roles": ["int8"], "time": False}
        (job_dir / "job.json").write_text(json.dumps(job))
        argv = guest.command(["-u", "-m", f"{package.name}.runner", "job.json"])
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=job_dir, env=guest.environ(job_dir), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        last = ""
        for line in proc.stdout:
            if line.strip():
                last = line.strip()
                log(f"  aarch64 {guest.cpu}: {last}")
        if proc.wait() != 0:
            raise EdgekitError(f"the board runner failed on the emulated {guest.cpu} (exit {proc.returncode}): "
                               f"{last}", "its output is above")
        result = json.loads((job_dir / "result.json").read_text())
        result["outputs"] = {"int8": np.load(job_dir / "int8.npy", allow_pickle=False)}
        result["seconds"] = round(time.perf_counter() - started, 1)
        return result


def record(guest: Guest, result: dict, host_int8: np.ndarray, host_runtime: str, logits=None) -> dict:
    """bench.json's "emulation": the emulated CPU, the software that ran, whether XNNPACK did, and how the int8
    outputs differ from this host's on the same inputs. logits: the model's class-logits slice of the runners'
    outputs (OutputLayout.primary), for the top-1 comparison; None: the model has no class logits."""
    return {"cpu": guest.cpu, "midr": guest.midr, "features": guest.features, "qemu": guest.qemu_version,
            "python": result["environment"]["python"], "versions": result["environment"]["versions"],
            "threads": result["threads"], "xnnpack": xnnpack(result), "seconds": result["seconds"],
            "reference": "the fp32 reference's outputs come from this host: on an emulated CPU fp32 kernels run "
                         "about ten times slower than int8 ones, and it is the int8 numerics that differ by CPU",
            "vs_host": {"machine": platform.machine(), "runtime": host_runtime,
                        "versions": {k: v for k in PINNED if (v := host_version(k))},
                        **compare(result["outputs"]["int8"], host_int8, logits)}}


def summary(label: str, record: dict) -> str:
    """One line for the bench log: XNNPACK, and the difference from this host."""
    x, d = record["xnnpack"], record["vs_host"]
    if "delegate_nodes" in x:
        kernels = (f"XNNPACK applied ({x['delegate_nodes']} delegate node(s)"
                   + (f"; on builtin kernels: {', '.join(x['ops_on_builtin_kernels'])})" if x["ops_on_builtin_kernels"]
                      else ", no op left to builtin kernels)") if x["applied"] else "XNNPACK NOT applied")
    else:
        kernels = f"XNNPACK {'applied' if x['applied'] else 'not applied'} ({', '.join(x['providers'])})"
    if d["bit_exact"]:
        diff = f"int8 outputs bit-exact with {d['machine']} ({d['outputs']} outputs)"
    else:
        diff = (f"{d['outputs_differ']} of {d['outputs']} int8 outputs differ from {d['machine']} (max |diff| "
                f"{d['max_abs_diff']:.4g}" + (f"; top-1 differs on {d['top1_differ']} image(s))"
                                              if d["top1_differ"] is not None else ")"))
    return f"{label}: aarch64 {record['cpu']}: {kernels}; {diff}; {record['seconds']:.0f} s emulated"


def xnnpack(result: dict) -> dict:
    """Whether XNNPACK ran the int8 artifact, as the runtime reports it: LiteRT's delegate nodes (and the ops left
    to its builtin kernels), or ONNX Runtime's execution providers."""
    delegation = (result.get("delegation") or {}).get("int8")
    if delegation is not None:
        return {"applied": delegation["delegated_ops"] > 0, "delegate_nodes": delegation["delegated_ops"],
                "ops_on_builtin_kernels": delegation["builtin_ops"], "checked_from": "the LiteRT interpreter's graph"}
    providers = result["providers"]["int8"]
    return {"applied": "XnnpackExecutionProvider" in providers, "providers": providers,
            "checked_from": "the ONNX Runtime session's providers"}


def compare(aarch64: np.ndarray, host: np.ndarray, logits=None) -> dict:
    """How the emulated CPU's outputs differ from this host's on the same inputs; top-1 on `logits(outputs)`."""
    differ = aarch64 != host
    top1 = None if logits is None else int((logits(aarch64).argmax(1) != logits(host).argmax(1)).sum())
    return {"bit_exact": not differ.any(), "outputs_differ": int(differ.sum()), "outputs": int(differ.size),
            "max_abs_diff": float(np.abs(aarch64.astype(np.float64) - host).max()) if differ.size else 0.0,
            "top1_differ": top1}


# ---- helpers ------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(path: Path):
    """One setup at a time per cache folder: a second waits rather than unpacking over the first."""
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _quiet(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _check_ok(proc: subprocess.CompletedProcess, what: str, registry: str | None) -> None:
    if proc.returncode == 0:
        return
    problem = _last_problem(proc)
    if registry and NETWORK.search(problem):
        raise EdgekitError(f"cannot reach {registry}: {problem}", f"check the network, then run `{SETUP}` again")
    raise EdgekitError(f"{what} failed: {problem}", f"run `{SETUP}` again; `--debug` shows more")


def _last_problem(proc: subprocess.CompletedProcess) -> str:
    """The line that says what went wrong: the first about the network, else the last error or warning."""
    lines = [l.strip() for l in (proc.stderr + "\n" + proc.stdout).splitlines() if l.strip()]
    network = [l for l in lines if NETWORK.search(l)]
    flagged = [l for l in lines if l.startswith(("E:", "W:", "ERROR", "error"))]
    return (network[:1] or flagged[-1:] or lines[-1:] or [f"exit {proc.returncode}"])[0][:300]


def _deb_name_version(deb: Path) -> tuple[str, str]:
    name, version, _ = deb.stem.split("_")
    return name, version.replace("%3a", ":")


def _megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
