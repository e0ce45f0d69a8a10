"""The CIFAR-10 sections of RESULTS.md (issue 14), rendered from the JSON the measuring scripts write:

    student_vs_teacher.json   python benchmarks/student_vs_teacher.py   (accuracy of every artifact, paired latency)
    distill_cifar10.json      python benchmarks/distill_vs_labels.py    (KD vs labels only over seeds)

A missing file leaves its section out, with a line saying which script writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEACHER_BAR, DROP_BAR, SPEED_BAR, GAP_BAR = 0.90, 0.3, 0.5, 1.5
ARTIFACTS = (("openvino:main", "openvino int8 IR (OpenVINO)"), ("arm:main", "arm int8 ONNX (ONNX Runtime, host proxy)"),
             ("arm:tflite", "arm int8 .tflite (LiteRT + XNNPACK, host proxy)"))


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def student_section(r: dict) -> list[str]:
    acc = r["accuracy"]
    t_fp32, s_fp32 = acc["teacher"]["openvino:main"]["reference_top1"], acc["student"]["openvino:main"]["reference_top1"]
    lines = ["## CIFAR-10: the teacher and its distilled student", "",
             f"`{r['command']}`, {r['date']}. Teacher `{r['teacher']}`, student `{r['student']}`; both quantized by "
             f"`edgekit quantize` on the same calibration images ({r['calib']}), compiled by `edgekit compile`, and "
             f"evaluated by `edgekit bench` on `{r['eval']}`: {r['eval_source']}.",
             "", "| model | fp32 top-1 | " + " | ".join(f"{label}: top-1 (drop)" for _, label in ARTIFACTS) + " |",
             "|---|---|" + "---|" * len(ARTIFACTS)]
    for key in ("teacher", "student"):
        cells = [pct(acc[key]["openvino:main"]["reference_top1"])]
        for art, _ in ARTIFACTS:
            a = acc[key][art]
            cells.append(f"{pct(a['top1'])} ({100 * (a['reference_top1'] - a['top1']):+.2f} pts)")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "Latency: int8, batch 1, teacher and student timed in one interleaved run per artifact and thread "
              "count (alternating rounds); the speed-up's 95 % interval is over the rounds' paired ratios. A timed call: "
              + r.get("timed_call", "the runner call, float batch in and outputs out included") + ".", "",
              "| int8 artifact | threads | teacher p50 | student p50 | student / teacher | speed-up (95 % interval) | "
              "others' CPU share |", "|---|---|---|---|---|---|---|"]
    for t in r["timing"]:
        iv = t["speedup_interval"]
        share = t["load"].get("others_cpu_share")
        lines.append(f"| {t['target']}:{t['pair']} ({t['runtime']}) | {t['threads']} | "
                     f"{t['latency_ms']['teacher']['p50']:.3f} ms | {t['latency_ms']['student']['p50']:.3f} ms | "
                     f"{t['student_over_teacher_p50']:.2f}x | {t['speedup']:.2f}x"
                     + (f" ({iv[0]:.2f}-{iv[1]:.2f})" if iv else "") + " | "
                     + ("-" if share is None else f"{100 * share:.0f} %") + " |")
    goals = [(f"teacher fp32 top-1 >= {100 * TEACHER_BAR:.0f} %", t_fp32 >= TEACHER_BAR, pct(t_fp32))]
    for art, label in ARTIFACTS:
        a = acc["teacher"][art]
        drop = 100 * (a["reference_top1"] - a["top1"])
        goals.append((f"teacher int8 drop <= {DROP_BAR} pts, {label}", drop <= DROP_BAR, f"{drop:+.2f} pts"))
    for t in r["timing"]:
        if (t["target"], t["pair"]) in (("openvino", "main"), ("arm", "tflite")):
            ratio = t["student_over_teacher_p50"]
            goals.append((f"student int8 p50 <= {SPEED_BAR}x the teacher's, {t['target']}:{t['pair']}, "
                          f"{t['threads']} thread(s)", ratio <= SPEED_BAR, f"{ratio:.2f}x"))
    gap = 100 * (t_fp32 - s_fp32)
    goals.append((f"student top-1 <= {GAP_BAR} pts below the teacher (fp32)", gap <= GAP_BAR,
                  f"{pct(s_fp32)} vs {pct(t_fp32)}: {gap:.2f} pts below"))
    for art, label in ARTIFACTS:
        g = 100 * (acc["teacher"][art]["top1"] - acc["student"][art]["top1"])
        goals.append((f"student top-1 <= {GAP_BAR} pts below the teacher, {label}", g <= GAP_BAR, f"{g:.2f} pts below"))
    return lines + ["", "Goals:", ""] + [f"- {mark(ok)}: {goal}: {nums}" for goal, ok, nums in goals]


def kd_section(r: dict) -> list[str]:
    s, v = r["summary"], r["verdict"]
    lines = ["## CIFAR-10: distillation vs the same training on labels only", "",
             f"`{r.get('command', 'python benchmarks/distill_vs_labels.py')}` ({r['date']}, torch threads {r['torch_threads']}): "
             f"{r['student']}, {r['epochs']} epochs each (a short schedule, the same for both arms), KD at "
             f"T={r['temperature']:g}, alpha={r['alpha']:g}, seeds {', '.join(str(x['seed']) for x in r['runs'] if x['arm'] == 'KD')}; "
             f"top-1 on {r['runs'][0]['eval']}. The commands are in distill_cifar10.json.", "",
             "| arm | top-1 (mean +- std) | agreement with the teacher | training min / run | per seed |",
             "|---|---|---|---|---|"]
    for arm, m in s.items():
        seeds = ", ".join(pct(x["top1"]) for x in r["runs"] if x["arm"] == arm)
        lines.append(f"| {arm} | {100 * m['top1_mean']:.2f} +- {100 * m['top1_std']:.2f} % | "
                     f"{100 * m['agreement_mean']:.2f} +- {100 * m['agreement_std']:.2f} % | "
                     f"{m['train_seconds_mean'] / 60:.1f} | {seeds} |")
    return lines + ["", f"- {mark(v['kd_beats_labels'])}: KD mean exceeds labels-only mean by more than the larger "
                        f"std: {v['gain_points']:+.2f} pts vs {v['larger_std_points']:.2f} pts"]


def cifar10_sections() -> list[str]:
    out = []
    for name, render, script in (("student_vs_teacher.json", student_section, "student_vs_teacher.py"),
                                 ("distill_cifar10.json", kd_section, "distill_vs_labels.py")):
        path = HERE / name
        out += [""] + (render(json.loads(path.read_text())) if path.is_file()
                       else [f"- Note: {name} not found; `python benchmarks/{script}` writes it."])
    return out
