"""Peak memory and wall time of `edgekit quantize` on EfficientNet-Lite0 (224 px) as the calibration set grows.

    python benchmarks/quantize_memory.py [--sizes 300,1000] [--workdir /tmp/edgekit-mem]

Each size is one `edgekit quantize` process, default method, under `/usr/bin/time -v`: peak RSS is its "Maximum
resident set size", wall its "Elapsed (wall clock) time", calibration seconds from the workspace's quantize.json.
The calibration folder holds 1,000 crops of scikit-image's photos (`efficientnet_lite.draw_crops`, a seed of its
own, so none is one of the benchmark's 320), sampled down to N by `--calib-size N`; eval is the 500 labelled
ImageNet photos with their labels.json as it is (what a user who wants the accuracy cost runs). Run it on an
otherwise quiet machine: it times the whole process.

Writes benchmarks/quantize_memory.json; `results_report.py` renders it into RESULTS.md (`memory_section`), with
issue 17's goals: peak RSS <= 2 GB at every size, wall <= 3 min with 300 images on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT_JSON = HERE / "quantize_memory.json"
RSS_GOAL_GB, WALL_GOAL_S, WALL_GOAL_SIZE = 2.0, 180.0, 300
CROPS, CROP_SEED = 1000, 3  # the benchmark's own calibration crops use seed 1, its eval crops seed 2


def calibration_folder(root: Path) -> Path:
    """1,000 photo crops under root/calib1000 (reused when complete)."""
    from efficientnet_lite import draw_crops, load_photos, write_crops

    folder = root / f"calib{CROPS}"
    if len(list(folder.glob("*.png"))) != CROPS:
        shutil.rmtree(folder, ignore_errors=True)
        photos = load_photos()
        print(f"writing {CROPS} calibration crops of {len(photos)} photos to {folder}")
        write_crops(photos, draw_crops(photos, CROPS, seed=CROP_SEED), folder)
    return folder


def time_v(report: str) -> tuple[float, float]:
    """(peak RSS in KiB, wall seconds) from GNU time's -v report (its "kbytes" are 1,024 bytes)."""
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", report).group(1))
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", report).group(1)
    seconds = 0.0
    for part in clock.split(":"):
        seconds = 60 * seconds + float(part)
    return rss, seconds


def quantize_once(model: Path, calib: Path, n: int, sample: Path, pre: dict, ws: Path, threads: int) -> dict:
    shutil.rmtree(ws, ignore_errors=True)
    command = ["edgekit", "quantize", str(model), "--calib", str(calib), "--calib-size", str(n),
               "--eval", str(sample), "--labels", str(sample / "labels.json"), "--size", pre["size"],
               "--resize", str(pre["resize"]), "--mean", pre["mean"], "--std", pre["std"], "--workdir", str(ws),
               "--threads", str(threads)]
    print(f"[{n} images] {' '.join(command)}", flush=True)
    report = ws.parent / f"time-{n}.txt"
    subprocess.run(["/usr/bin/time", "-v", "-o", str(report), *command], check=True)
    rss_kb, wall = time_v(report.read_text())
    q = json.loads((ws / "quantize.json").read_text())
    return {"images": n, "peak_rss_kb": rss_kb, "wall_s": round(wall, 1),
            "calibration_s": q["calibration"]["seconds"], "method": q["calibration"]["method"],
            "top1_fp32": q["fp32"]["top1"], "top1_int8": q["int8"]["top1"], "agreement": q["int8"]["agreement"],
            "command": " ".join(command)}


def gb(kib: float) -> float:
    """GNU time's KiB as GB of 10^9 bytes, the unit of the goal (stricter than GiB)."""
    return kib * 1024 / 1e9


def memory_section(r: dict) -> list[str]:
    """RESULTS.md's section for quantize_memory.json."""
    lines = ["## Quantize: memory and time as calibration grows (EfficientNet-Lite0, 224 px)", "",
             f"`{r['command']}`, {r['date']}, {r['cpu']} ({r['cores']} cores), load average before "
             f"{r['load_before']:.2f}. One `edgekit quantize` process per row, default method, under `/usr/bin/time -v`, "
             f"calibrated on N of {CROPS:,} crops of scikit-image's photos and evaluated on the 500 labelled photos "
             "(`--labels` the shared labels.json as it is).", "",
             "| calibration images | peak RSS | wall | calibration alone | method | top-1 fp32 / int8 | agreement |",
             "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        acc = ("-" if row["top1_int8"] is None
               else f"{100 * row['top1_fp32']:.2f} / {100 * row['top1_int8']:.2f} %")
        agree = "-" if row["agreement"] is None else f"{100 * row['agreement']:.2f} %"
        lines.append(f"| {row['images']:,} | {gb(row['peak_rss_kb']):.2f} GB ({row['peak_rss_kb']:,.0f} KiB) | "
                     f"{row['wall_s']:.0f} s | {row['calibration_s']:.0f} s | {row['method']} | {acc} | {agree} |")
    lines += ["", "Goals:", ""]
    for goal, ok, nums in memory_goals(r):
        lines.append(f"- {'PASS' if ok else 'FAIL'}: {goal}: {nums}")
    return lines


def memory_goals(r: dict) -> list[tuple[str, bool, str]]:
    out = []
    for row in r["rows"]:
        peak = gb(row["peak_rss_kb"])
        out.append((f"peak RSS <= {RSS_GOAL_GB:.0f} GB with {row['images']:,} calibration images",
                    peak <= RSS_GOAL_GB, f"{peak:.2f} GB"))
        if row["images"] == WALL_GOAL_SIZE:
            out.append((f"wall <= {WALL_GOAL_S / 60:.0f} min with {WALL_GOAL_SIZE} on {r['cores']} cores",
                        row["wall_s"] <= WALL_GOAL_S, f"{row['wall_s']:.0f} s"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="300,1000", help="calibration set sizes, one quantize process each")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/edgekit-mem"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT_JSON)
    args = ap.parse_args()

    from compare_runtimes import REPO, default_imagenet_sample
    from efficientnet_lite import prepare

    from edgekit.environment import environment

    sample = default_imagenet_sample()
    if sample is None:
        raise SystemExit("the labelled ImageNet photos (../shared/data/imagenet-sample) are not here")
    paths = prepare(args.workdir / "lite0", "lite0")
    calib = calibration_folder(args.workdir)
    env = environment()
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    result = {"command": " ".join(["python", str(shown), *sys.argv[1:]]), "cpu": env["cpu"], "cores": env["cores"],
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "load_before": os.getloadavg()[0], "rows": []}
    for n in (int(s) for s in args.sizes.split(",")):
        result["rows"].append(quantize_once(paths["model"], calib, n, sample, paths["preprocess"],
                                            args.workdir / f"ws-{n}", args.threads))
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    print("\n".join(memory_section(result)))


if __name__ == "__main__":
    main()
