"""`edgekit bench --target arm --emulate CPU`: the arm target's int8 artifacts on an emulated aarch64 CPU (qemu user
mode, the aarch64 builds of the runtimes), run by the board runner `--remote` uses, compared with this host's outputs.

The emulated bench needs `edgekit setup arm-emulator` (qemu-user-static, an arm64 sysroot, aarch64 wheels: about
40 s and 260 MB on a fresh machine); .ci/run builds it best-effort before pytest, and without it those tests skip
and say why. The runner's outputs-only job and the request checks run everywhere.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit import emulator
from edgekit.cli import main
from tests.conftest import compile_all

IMAGES = 24  # a few seconds per artifact on the emulated CPU for the 28x28 tiny model


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture(scope="module")
def emulated_bench(tmp_path_factory, quantized_workspace):
    """bench.json of `bench --target arm --emulate cortex-a76` on the tiny model's arm artifacts."""
    reason = emulator.ready()
    if reason:
        pytest.skip(f"aarch64 emulation unavailable: {reason} (`edgekit setup arm-emulator` builds it)")
    ws = compile_all(tmp_path_factory.mktemp("emulated") / "ws", quantized_workspace)
    result = invoke("bench", "--workdir", ws, "--target", "arm", "--emulate", "cortex-a76", "--emulate-images",
                    IMAGES, "--max-drop", 50, "--max-latency-ms", 1)
    assert result.exit_code == 0, result.output
    return json.loads((ws / "targets/arm/bench.json").read_text()), result.output


def test_emulated_onnx_pair_reports_accuracy_and_the_difference_from_x86_without_latency(emulated_bench):
    bench, output = emulated_bench
    assert bench["emulated"] and bench["latency_ms"] is None and bench["speedup_vs_reference"] is None
    assert "aarch64 (emulated CPU cortex-a76)" in bench["runtime"]
    assert bench["environment"]["machine"] == "aarch64"
    assert bench["eval"]["images"] == IMAGES
    # The latency gate cannot be measured there: shown as not checked, and it does not fail the run.
    assert {g["name"]: g["status"] for g in bench["gates"]} == {"max_drop_points": "passed",
                                                                "max_latency_ms_p50": "not checked"}
    emu = bench["emulation"]
    assert emu["cpu"] == "cortex-a76" and emu["midr"] == "0x414fd0b1"  # Arm's part number for the Cortex-A76
    assert "asimddp" in emu["features"] and "sve" not in emu["features"]
    assert emu["versions"]["onnxruntime"] and emu["qemu"]
    vs = emu["vs_host"]
    assert vs["outputs"] == IMAGES * 10 and 0 <= vs["outputs_differ"] <= vs["outputs"]
    assert vs["bit_exact"] == (vs["outputs_differ"] == 0)
    # ONNX Runtime's int8 kernels are not the same code on x86 and ARM: +-1 step of the output scale at most.
    assert vs["max_abs_diff"] <= 0.5 and vs["top1_differ"] <= 2
    assert "not measured" in output


def test_emulated_tflite_pair_runs_xnnpack_bit_exact_with_x86(emulated_bench):
    bench, output = emulated_bench
    if "tflite" not in bench.get("variants", {}):
        pytest.skip("no .tflite pair: the edgekit[tflite] extra is not installed")
    row = bench["variants"]["tflite"]
    assert row["emulated"] and row["latency_ms"] is None
    x = row["emulation"]["xnnpack"]
    assert x["applied"] and x["delegate_nodes"] >= 1, x  # read from the interpreter, not assumed
    vs = row["emulation"]["vs_host"]
    # XNNPACK's int8 kernels on both sides: the same arithmetic, to the bit.
    assert vs["bit_exact"] and vs["outputs_differ"] == 0 and vs["max_abs_diff"] == 0, vs
    assert "XNNPACK applied" in output and "bit-exact" in output


def test_emulate_is_refused_for_other_targets_and_without_it_its_options_are(quantized_workspace):
    for args, says in ((["--target", "openvino", "--emulate", "cortex-a76"], "does not apply to openvino"),
                       (["--target", "arm", "--emulate-images", "5"], "only applies to an emulated bench"),
                       (["--target", "arm", "--emulate", "cortex-a76", "--remote", "pi@board"], "exclude each other")):
        result = invoke("bench", "--workdir", quantized_workspace, *args)
        assert result.exit_code == 2 and says in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_the_runner_can_compute_outputs_only_without_timing(tmp_path, quantized_workspace):
    """The job an emulated CPU gets: the int8 artifact only, no timing loop; run here by the runner itself."""
    from edgekit.board import runner

    (tmp_path / "model.int8.onnx").write_bytes((quantized_workspace / "model.int8.onnx").read_bytes())
    np.save(tmp_path / "inputs.npy", np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32))
    (tmp_path / "job.json").write_text(json.dumps({
        "board_module": "arm_board", "files": {"int8": "model.int8.onnx", "fp32": "missing.onnx"},
        "inputs": "inputs.npy", "batch": 1, "threads": 1, "runs": 5, "warmup": 1, "warmup_seconds": 0,
        "options": {}, "roles": ["int8"], "time": False}))
    runner.main(str(tmp_path / "job.json"))
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["timings_ms"] is None and list(result["providers"]) == ["int8"]
    assert np.load(tmp_path / "int8.npy").shape == (3, 10) and not (tmp_path / "fp32.npy").exists()


def test_cpu_files_describe_the_emulated_model(tmp_path):
    """/proc/cpuinfo as an arm64 kernel writes it, from MIDR_EL1 and HWCAP; the /sys lists cpuinfo parses."""
    from edgekit.board.timing import ISA_FLAGS

    emulator._write_cpu_files(tmp_path, 0x414FD0B1, ["fp", "asimd", "asimddp"], 2)
    text = (tmp_path / "proc/cpuinfo").read_text()
    assert text.count("processor\t:") == 2 and "CPU implementer\t: 0x41" in text and "CPU part\t: 0xd0b" in text
    assert "CPU variant\t: 0x4" in text and "CPU revision\t: 1" in text and "asimddp" in ISA_FLAGS
    cpu = tmp_path / "sys/devices/system/cpu"
    assert (cpu / "possible").read_text() == "0-1\n" and (cpu / "cpu1/topology/physical_package_id").is_file()


def test_default_image_count_scales_with_the_input_and_the_subset_keeps_every_class():
    assert emulator.default_images(224, 224) == emulator.DEFAULT_IMAGES_224
    assert emulator.default_images(28, 28) == emulator.MAX_IMAGES
    labels = [i // 100 for i in range(1000)]  # sorted by class, as a class-folder eval set is

    class Images(list):
        def subset(self, idx):
            return Images(self[i] for i in idx)

    subset, label = emulator.eval_subset(Images(labels), "eval", 10, SimpleNamespace(height=28, width=28))
    assert sorted(subset) == list(range(10)) and "10 of its 1000 images" in label
