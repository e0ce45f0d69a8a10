"""Train the CIFAR-10 teacher (edgekit.zoo.cifar_net:cifar_net) on the 50k CIFAR-10 training JPEGs.

Reads the shared JPEG tars (/work/shared/data/cifar10/cifar10-{train,test}-jpg.tar.gz; --data may name another
folder holding the two tars, or a folder with train/<class>/*.jpg and test/<class>/*.jpg), decodes every JPEG
once into a uint8 tensor in memory, and trains with a fast-CIFAR recipe: SGD with Nesterov momentum 0.9,
batch 512, weight decay 5e-4, a linear warm-up/decay ("one-cycle") learning rate, label smoothing 0.2,
random flips and reflect-padded random crops done on whole batches of tensors. Each epoch logs the train loss,
the top-1 on the full 10k test set, the epoch's wall seconds and process CPU seconds, and saves a state_dict
checkpoint (--ckpt; --resume continues from it). At the end it writes models/cifar10_net.pt2: an ExportedProgram with a dynamic batch dimension, the format
edgekit loads without unpickling (written to a temporary file, then renamed).

Speed (measured on the 2-core Xeon with AMX these scripts run on, torch 2.13 CPU, batch 512): fp32 with two
threads trains about 220 images/s on a quiet machine; bf16 autocast (AMX) with ONE thread about 400 images/s per
CPU second, and it keeps that rate on a busy shared machine, where two threads (fp32 or bf16) lose most of their
time waiting for each other (40-80 images/s wall measured under a load of 7). Hence the defaults --bf16
--threads 1: then process CPU seconds are the honest single-core time, an upper bound for a quiet two-core run.
With the defaults (35 epochs) an epoch costs about 125 CPU seconds (117 training, 7 testing), the whole run about
75 CPU minutes.

Preprocessing (fixed; the recipe's preprocess mean/std): pixels / 255, then per channel (x - mean) / std with
    mean = (0.4914, 0.4822, 0.4465), std = (0.2470, 0.2435, 0.2616)   (CIFAR-10 training-set statistics, RGB).

    python scripts/train_cifar10.py                  # the teacher run; see --help for the schedule
    python scripts/train_cifar10.py --epochs 1 --train-limit 5000 --out /tmp/pilot.pt2    # a pilot
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from edgekit.zoo.cifar_net import cifar_net

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
SHARED = Path("/work/shared/data/cifar10")
# The logits are trained as if multiplied by LOGIT_SCALE (the ResNet-9 recipe's 0.125 output scaling), done by
# reparametrising the classifier (see make_optimizer) so that the exported net has no extra multiply.
LOGIT_SCALE = 0.125


def load_split(src: Path, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,), class names, 'class/file' keys), sorted by class then file
    name; labels are the positions of the class folders in sorted order (the CIFAR-10 label order)."""
    blobs: dict[tuple[str, str], bytes] = {}
    tar_path = src / f"cifar10-{split}-jpg.tar.gz"
    if tar_path.is_file():
        with tarfile.open(tar_path, "r:gz") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if member.isfile() and member.name.endswith(".jpg") and len(parts) >= 3 and parts[-3] == split:
                    blobs[(parts[-2], parts[-1])] = tar.extractfile(member).read()
    else:
        folder = src / split if (src / split).is_dir() else src / "cifar10" / split
        if not folder.is_dir():
            raise SystemExit(f"neither {tar_path} nor a folder {folder} with class folders")
        for path in folder.glob("*/*.jpg"):
            blobs[(path.parent.name, path.name)] = path.read_bytes()
    keys = sorted(blobs)
    if limit is not None:  # a spread-out subset (every k-th image) for pilots
        keys = keys[:: max(1, len(keys) // limit)][:limit]
    classes = sorted({c for c, _ in blobs})
    index = {c: i for i, c in enumerate(classes)}
    images = np.empty((len(keys), 32, 32, 3), np.uint8)
    for i, key in enumerate(keys):
        with Image.open(io.BytesIO(blobs[key])) as im:
            images[i] = np.asarray(im.convert("RGB"))
    labels = torch.tensor([index[c] for c, _ in keys], dtype=torch.int64)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels, classes, [f"{c}/{n}" for c, n in keys]


def normalize(x: torch.Tensor) -> torch.Tensor:  # uint8 (N, 3, H, W) -> float, channels_last
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255
    return ((x.float() - mean) / std).contiguous(memory_format=torch.channels_last)


def augment(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Per-image random crop of the reflect-padded batch (shifts of up to `pad` pixels) and random horizontal
    flip; x is a normalised float batch (N, 3, H, W)."""
    n, _, h, w = x.shape
    out = torch.empty_like(x)
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen)
        code = offsets[:, 0] * (2 * pad + 1) + offsets[:, 1]
        for c in code.unique().tolist():  # one slice per distinct shift, not per image
            sel = (code == c).nonzero().squeeze(1)
            dy, dx = divmod(c, 2 * pad + 1)
            out[sel] = padded[sel, :, dy : dy + h, dx : dx + w]
    else:
        out.copy_(x)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.where(flip[:, None, None, None], out.flip(3), out)
    return out.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000,
             bf16: bool = False) -> tuple[float, torch.Tensor]:
    """(top-1, predictions) in eval mode; fp32 unless bf16."""
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        preds = torch.cat([model(normalize(x[i : i + batch])).argmax(1) for i in range(0, len(x), batch)])
    return (preds == y).float().mean().item(), preds


def make_optimizer(model: torch.nn.Module, lr: float, wd: float) -> torch.optim.SGD:
    """SGD on W' = LOGIT_SCALE * W for the classifier is SGD on W with the logits scaled by LOGIT_SCALE when its
    learning rate is multiplied by LOGIT_SCALE**2 and its weight decay divided by it (same product lr * wd)."""
    fc = [p for n, p in model.named_parameters() if n.startswith("fc.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("fc.")]
    s2 = LOGIT_SCALE**2
    return torch.optim.SGD(
        [{"params": rest, "lr": lr, "weight_decay": wd, "scale": 1.0},
         {"params": fc, "lr": lr * s2, "weight_decay": wd / s2, "scale": s2}],
        lr=lr, momentum=0.9, nesterov=True)


def lr_at(step: int, total: int, warmup: int, peak: float, final_frac: float) -> float:
    """Linear warm-up from 0 to `peak` over `warmup` steps, then linear decay to peak * final_frac."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (1 - (1 - final_frac) * (step - warmup) / max(1, total - warmup))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED, help="folder with the two tars, or with train/ and test/")
    ap.add_argument("--epochs", type=int, default=35)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=0.4, help="peak learning rate (mean loss over the batch)")
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--warmup", type=float, default=0.2, help="fraction of the steps spent warming up")
    ap.add_argument("--final-lr", type=float, default=0.0, help="last learning rate as a fraction of the peak")
    ap.add_argument("--label-smoothing", type=float, default=0.2)
    ap.add_argument("--pad", type=int, default=4, help="reflect padding of the random crop, pixels")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                    help="train under CPU bf16 autocast (AMX); the final evaluation and the export are fp32")
    ap.add_argument("--eval-bf16", action=argparse.BooleanOptionalAction, default=True,
                    help="per-epoch test top-1 under bf16 autocast (3x cheaper); the final one is always fp32")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (see the note above)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-limit", type=int, default=None, help="train on this many images (pilots)")
    ap.add_argument("--eval-every", type=int, default=1, help="test every k epochs (and after the last)")
    ap.add_argument("--ckpt", type=Path, default=Path("/tmp/cifar10_ckpt.pt"))
    ap.add_argument("--resume", action="store_true", help="continue from --ckpt")
    ap.add_argument("--out", type=Path, default=Path("models/cifar10_net.pt2"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    wall0, cpu0 = time.time(), time.process_time()
    print(f"args: {vars(args)}", flush=True)
    print(f"preprocess: pixels/255, mean {MEAN}, std {STD}", flush=True)
    xtr, ytr, classes, _ = load_split(args.data, "train", args.train_limit)
    xte, yte, test_classes, test_keys = load_split(args.data, "test")
    assert classes == test_classes, (classes, test_classes)
    print(f"decoded {len(xtr)} train / {len(xte)} test JPEGs in {time.time() - wall0:.0f}s; classes {classes}", flush=True)

    model = cifar_net(len(classes))
    with torch.no_grad():
        model.fc.weight.mul_(LOGIT_SCALE)  # W' = s W (see make_optimizer)
        model.fc.bias.mul_(LOGIT_SCALE)
    model = model.to(memory_format=torch.channels_last)
    print(f"model: cifar_net, {sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    opt = make_optimizer(model, args.lr, args.wd)
    steps_per_epoch = len(xtr) // args.batch
    total = args.epochs * steps_per_epoch
    warmup = max(1, round(args.warmup * total))
    start_epoch, step, wall_before, cpu_before = 0, 0, 0.0, 0.0
    if args.resume and args.ckpt.is_file():
        ck = torch.load(args.ckpt, weights_only=True)  # our own checkpoint, still read without unpickling code
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        torch.set_rng_state(ck["torch_rng"])
        start_epoch, step, wall_before, cpu_before = ck["epoch"], ck["step"], ck["wall"], ck["cpu"]
        print(f"resumed from {args.ckpt} after epoch {start_epoch}", flush=True)

    for epoch in range(start_epoch, args.epochs):
        model.train()
        t0, c0 = time.time(), time.process_time()
        perm = torch.randperm(len(xtr), generator=gen)
        loss_sum, correct = 0.0, 0
        for b in range(steps_per_epoch):
            idx = perm[b * args.batch : (b + 1) * args.batch]
            x, y = augment(normalize(xtr[idx]), args.pad, gen), ytr[idx]
            lr = lr_at(step, total, warmup, args.lr, args.final_lr)
            for group in opt.param_groups:
                group["lr"] = lr * group["scale"]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item()
            correct += (logits.argmax(1) == y).sum().item()
        train_wall, train_cpu = time.time() - t0, time.process_time() - c0
        last = epoch + 1 == args.epochs
        acc_text = ""
        if last or (epoch + 1) % args.eval_every == 0:
            acc_text = f"test top-1{' (bf16)' if args.eval_bf16 else ''} {evaluate(model, xte, yte, bf16=args.eval_bf16)[0]:.4f} "
        wall, cpu = time.time() - t0, time.process_time() - c0
        wall_before, cpu_before = wall_before + wall, cpu_before + cpu
        print(f"epoch {epoch + 1}/{args.epochs} lr {lr:.4f} train loss {loss_sum / steps_per_epoch:.4f} "
              f"train top-1 {correct / (steps_per_epoch * args.batch):.4f} {acc_text}"
              f"| epoch wall {wall:.0f}s cpu {cpu:.0f}s (train {train_wall:.0f}s wall {train_cpu:.0f}s cpu) "
              f"| total wall {wall_before:.0f}s cpu {cpu_before:.0f}s", flush=True)
        ck = {"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
              "torch_rng": torch.get_rng_state(), "epoch": epoch + 1, "step": step, "wall": wall_before,
              "cpu": cpu_before}
        torch.save(ck, args.ckpt.with_name(args.ckpt.name + ".partial"))
        os.replace(args.ckpt.with_name(args.ckpt.name + ".partial"), args.ckpt)

    model = model.to(memory_format=torch.contiguous_format).eval()
    acc, preds = evaluate(model, xte, yte)
    batch = torch.export.Dim("batch", min=1, max=4096)
    # clone(): the program stores its example input, and a view would drag the whole test tensor along.
    program = torch.export.export(model, (normalize(xte[:2]).contiguous().clone(),), dynamic_shapes=({0: batch},))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.stem + ".partial.pt2")
    torch.export.save(program, tmp)
    tmp.replace(args.out)
    reloaded = torch.export.load(args.out).module()
    with torch.no_grad():
        acc_reloaded = (torch.cat([reloaded(normalize(xte[i : i + 1000]).contiguous()).argmax(1)
                                   for i in range(0, len(xte), 1000)]) == yte).float().mean().item()
    print(f"final 10k test top-1 {acc:.4f} (the exported program, reloaded: {acc_reloaded:.4f}); wrote {args.out} "
          f"({args.out.stat().st_size / 1e6:.1f} MB)", flush=True)
    subset = Path("data/cifar10/test")
    if subset.is_dir():  # the 2,000-image subset shipped in the repo (scripts/make_cifar10_subsets.py)
        names = {f"{p.parent.name}/{p.name}" for p in subset.glob("*/*.jpg")}
        mask = torch.tensor([k in names for k in test_keys])
        if mask.any():
            print(f"top-1 on the bundled {int(mask.sum())}-image subset {subset}: "
                  f"{(preds[mask] == yte[mask]).float().mean().item():.4f}", flush=True)
    print(f"total wall {time.time() - wall0:.0f}s, process CPU {time.process_time() - cpu0:.0f}s "
          f"= {(time.process_time() - cpu0) / 60:.1f} CPU min with {args.threads} thread(s)"
          + f"; epochs alone, summed over all runs (resumes included): wall {wall_before:.0f}s cpu {cpu_before:.0f}s",
          flush=True)


if __name__ == "__main__":
    main()
