"""The student's training loop: augmentation on tensors, cosine LR, progress, a checkpoint per epoch, resume.

Determinism: all randomness of an epoch (augmentation, dropout) comes from torch's global RNG seeded from
(seed, epoch, rank) at the epoch's start, and the shuffle from the sampler's (seed, epoch). So a run resumed
from the checkpoint of epoch k continues exactly as the uninterrupted run would have, and the checkpoint
needs no RNG state of its own.

Several processes: under `torchrun --nproc_per_node N`, WORLD_SIZE > 1 and each process trains on its
shard of the images (DistributedSampler) with gradients averaged by DistributedDataParallel; only rank 0
writes checkpoints. CPU processes talk over gloo. The loss and accuracy of an epoch are summed over all processes
(all_sum); what only rank 0 may compute or read (a checkpoint on its machine, a choice by latency) reaches the
others through share_from_main.
"""

from __future__ import annotations

import os
import pickle
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import EdgekitError
from .kd import kd_loss
from .progress import track

CHECKPOINT_KIND = "edgekit-distill-checkpoint"
CHECKPOINT_KEYS = {"run", "epoch", "model", "optimizer", "scheduler", "history"}
TEACHER_BATCH = 256


@dataclass(frozen=True)
class TrainOptions:
    epochs: int
    batch: int
    lr: float
    weight_decay: float
    temperature: float
    alpha: float
    augment: bool
    seed: int
    # CPU bf16 autocast for the student's and teacher's forward passes (weights, optimizer and loss stay fp32):
    # about 2x the images per second on CPUs with AMX or AVX512-BF16; the exported student is fp32 either way.
    bf16: bool = False

    def __post_init__(self) -> None:
        for name, value, low in (("epochs", self.epochs, 1), ("batch", self.batch, 2)):
            if value < low:
                raise EdgekitError(f"--{name} must be at least {low}, got {value}", f"e.g. --{name} {max(low, 10)}")
        if self.temperature <= 0:
            raise EdgekitError(f"--temperature must be positive, got {self.temperature:g}", "e.g. --temperature 4")
        if not 0 <= self.alpha <= 1:
            raise EdgekitError(f"--alpha must be between 0 and 1, got {self.alpha:g}",
                               "1: teacher only, 0: labels only, e.g. --alpha 0.9")
        if self.lr <= 0:
            raise EdgekitError(f"--lr must be positive, got {self.lr:g}", "e.g. --lr 0.05")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """One process unless torchrun set WORLD_SIZE > 1; then join its process group."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def share_from_main(dist: Dist, compute):
    """`compute()` on rank 0 only, its result handed to every rank (torch.distributed.broadcast_object_list); an
    EdgekitError raised there is raised on every rank, so no rank waits for a result that never comes."""
    if dist.world == 1:
        return compute()
    import torch.distributed as tdist

    box, failure = [None], None
    if dist.main:
        try:
            box[0] = ("ok", compute())
        except EdgekitError as e:
            box[0], failure = ("error", e.message, e.hint), e
        except Exception as e:  # noqa: BLE001 - passed on, then raised again below
            box[0], failure = ("crash", f"rank 0 failed: {type(e).__name__}: {e}"), e
    tdist.broadcast_object_list(box, src=0)
    if failure is not None:
        raise failure
    if box[0][0] == "error":
        raise EdgekitError(box[0][1], box[0][2])
    if box[0][0] == "crash":
        raise RuntimeError(box[0][1])
    return box[0][1]


def all_sum(*values: float) -> list[float]:
    """Each value summed over all processes (torch.distributed.all_reduce, in float64)."""
    import torch.distributed as tdist

    t = torch.tensor(values, dtype=torch.float64)
    tdist.all_reduce(t)
    return t.tolist()


def augment(x: torch.Tensor, pad: int, fill: torch.Tensor) -> torch.Tensor:
    """Per image: a random crop of the image padded by `pad` px, then a horizontal flip with p=0.5.

    x: (N, C, H, W) normalized; fill: (C,), the normalized value of a black pixel (torchvision's fill=0).
    """
    n, c, h, w = x.shape
    padded = fill.view(1, c, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()  # (N, C, H+2p, W+2p)
    padded[:, :, pad : pad + h, pad : pad + w] = x
    rows = torch.randint(0, 2 * pad + 1, (n, 1)) + torch.arange(h)  # (N, H): each image's crop rows
    cols = torch.randint(0, 2 * pad + 1, (n, 1)) + torch.arange(w)  # (N, W)
    flip = torch.rand(n, 1) < 0.5
    cols = torch.where(flip, cols.flip(1), cols)  # a flipped crop reads its columns right to left
    out = padded[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def teacher_logits(teacher, x: torch.Tensor, show: bool) -> torch.Tensor:
    """(N, classes) logits of the teacher on every image, computed once (used when nothing is augmented)."""
    chunks = [teacher(x[i : i + TEACHER_BATCH]) for i in
              track(range(0, len(x), TEACHER_BATCH), "teacher logits", "batch", enabled=show)]
    return torch.cat(chunks).float()


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temp file in the same folder, then rename: a crash mid-write leaves the previous one."""
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, run: dict) -> dict:
    """The checkpoint at `path`, checked to be edgekit's and written by a run with the same `run` settings."""
    if not path.is_file():
        raise EdgekitError(f"--resume: no checkpoint at {path}", "run without --resume to start training")
    try:
        # weights_only: a checkpoint holds tensors and plain containers only, so loading it runs no code.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise EdgekitError(f"--resume: checkpoint {path} is unreadable ({str(e).strip().splitlines()[0][:200]})",
                           "delete it and run without --resume to start over") from None
    if not isinstance(state, dict) or state.get("kind") != CHECKPOINT_KIND or not CHECKPOINT_KEYS <= state.keys():
        raise EdgekitError(f"--resume: {path} is not an edgekit distill checkpoint",
                           "run without --resume to start over")
    return check_run(path, state, run)


def check_run(path: Path, state: dict, run: dict) -> dict:
    """`state` (a checkpoint load_checkpoint read from `path`) if it was written by a run with the same `run`
    settings; an EdgekitError naming the first setting that differs otherwise."""
    for key, value in run.items():
        if state["run"].get(key) != value:
            raise EdgekitError(
                f"--resume: the checkpoint was written with {key} = {state['run'].get(key)!r}, this run has {value!r}",
                "resume with the options it was started with, or run without --resume to start over",
            )
    return state


def warmup_cosine(optimizer, steps_per_epoch: int, total: int):
    """Linear warm-up over the first epoch (at most half the run), then cosine decay to 0, per step.

    The warm-up is there because a freshly initialized MobileNet at full learning rate can blow up in its first
    few steps (seen with mobilenetv2_035 at lr 0.05-0.1: the loss jumped from 2.3 to over 10).
    """
    import math

    warmup = max(1, min(steps_per_epoch, total // 2))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def train(student: torch.nn.Module, teacher, x: torch.Tensor, labels: torch.Tensor | None, fill: torch.Tensor,
          opts: TrainOptions, dist: Dist, checkpoint: Path, run: dict, resume_from: dict | None, log) -> list[dict]:
    """Train `student` in place on x (N, C, H, W) against the teacher (None when alpha is 0); per-epoch history.

    `run` (student, teacher, data and options) is stored in each checkpoint, so a resume can check it matches.
    """
    from torch.utils.data.distributed import DistributedSampler

    # channels-last: depthwise convs run ~1.5x faster on CPU in that layout (oneDNN's native one).
    student.to(memory_format=torch.channels_last)
    model = student
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(student)
    # Weight decay on conv/linear weights only: on BatchNorm scales and biases it only fights the normalization.
    decay = [p for p in student.parameters() if p.ndim > 1]
    rest = [p for p in student.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": opts.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    optimizer = torch.optim.SGD(groups, lr=opts.lr, momentum=0.9, nesterov=True)
    sampler = DistributedSampler(range(len(x)), num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=opts.seed)
    # Whole batches only: the last, partial one would be noisy for BatchNorm and vary the step count.
    steps = max(1, len(sampler) // opts.batch)
    schedule = warmup_cosine(optimizer, steps, opts.epochs * steps)  # stepped per batch
    history, start = [], 0
    if resume_from is not None:
        student.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
        schedule.load_state_dict(resume_from["scheduler"])
        history, start = list(resume_from["history"]), int(resume_from["epoch"])
        log(f"resuming after epoch {start} of {opts.epochs}")
    # Without augmentation the teacher would see the same pixels every epoch: ask it once.
    cached = None
    if teacher is not None and not opts.augment and start < opts.epochs:
        cached = teacher_logits(teacher, x, dist.main)
    pad = max(1, min(x.shape[2:]) // 8)  # 3 px on 28 px images, 4 on 32 (the CIFAR convention), 28 on 224

    for epoch in range(start, opts.epochs):
        torch.manual_seed(epoch_seed(opts.seed, epoch, dist.rank))
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        student.train()
        t0, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
        bar = track(range(steps), f"epoch {epoch + 1}/{opts.epochs}", "batch", enabled=dist.main)
        for step in bar:
            idx = order[step * opts.batch : (step + 1) * opts.batch]
            xb = augment(x[idx], pad, fill) if opts.augment else x[idx]  # (B, C, H, W)
            xb = xb.contiguous(memory_format=torch.channels_last)
            yb = labels[idx] if labels is not None else None
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=opts.bf16):
                tb = cached[idx] if cached is not None else teacher(xb) if teacher is not None else None  # (B, classes)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=opts.bf16):
                logits = model(xb)
            logits, tb = logits.float(), tb.float() if tb is not None else None  # the loss in fp32
            loss = kd_loss(logits, tb, yb, opts.temperature, opts.alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            # Running accuracy on the (augmented) training batches: against labels, else agreement with the teacher.
            target = yb if yb is not None else tb.argmax(1)
            total_loss += loss.item()
            correct += int((logits.argmax(1) == target).sum())
            seen += len(idx)
            bar.set_postfix(loss=f"{total_loss / (step + 1):.4f}", acc=f"{correct / seen:.3f}")
        bar.close()
        if dist.world > 1:  # the epoch's figures over every process's shard, not rank 0's alone
            total_loss, correct, seen = all_sum(total_loss / dist.world, correct, seen)
        history.append({"epoch": epoch + 1, "loss": total_loss / steps, "train_accuracy": correct / seen,
                        "accuracy_vs": "labels" if labels is not None else "teacher",
                        "lr_end": schedule.get_last_lr()[0], "seconds": round(time.perf_counter() - t0, 2)})
        if dist.main:
            save_checkpoint(checkpoint, {"kind": CHECKPOINT_KIND, "run": run, "epoch": epoch + 1,
                                         "model": student.state_dict(), "optimizer": optimizer.state_dict(),
                                         "scheduler": schedule.state_dict(), "history": history})
        h = history[-1]
        log(f"epoch {h['epoch']}/{opts.epochs}: loss {h['loss']:.4f}, train accuracy {100 * h['train_accuracy']:.2f} %"
            f" (vs {h['accuracy_vs']}), {h['seconds']:.0f} s")
    return history
