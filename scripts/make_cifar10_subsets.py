"""Write the CIFAR-10 JPEG subsets shipped in the repository, from the shared CIFAR-10 JPEG tars.

- data/cifar10/calib/<class>/train_<NNNN>.jpg: 32 training images per class (320), for int8 calibration.
- data/cifar10/test/<class>/<NNNN>.jpg: 200 test images per class (2,000), a labelled evaluation subset.

The JPEG bytes are copied exactly as stored in the tar (no decoding, no re-encoding); <NNNN> is the file's
number in its class folder of the tar. Class folders keep the tar's names (airplane, automobile, ...), whose
sorted order is the CIFAR-10 label order. The picks come from a fixed seed, so rerunning gives the same files.

    python scripts/make_cifar10_subsets.py                 # default: the shared tars, writes data/cifar10/
    python scripts/make_cifar10_subsets.py --src /path/to/cifar10-folder-or-dir-with-tars
"""

from __future__ import annotations

import argparse
import shutil
import tarfile
from pathlib import Path

import numpy as np

SHARED = Path("/work/shared/data/cifar10")
CALIB_PER_CLASS, TEST_PER_CLASS, SEED = 32, 200, 0


def read_split(src: Path, split: str) -> dict[str, dict[str, bytes]]:
    """{class: {file name: JPEG bytes}} for one split, from `<src>/cifar10-<split>-jpg.tar.gz` or a folder
    `<src>/[cifar10/]<split>/<class>/*.jpg`."""
    tar_path = src / f"cifar10-{split}-jpg.tar.gz"
    out: dict[str, dict[str, bytes]] = {}
    if tar_path.is_file():
        with tarfile.open(tar_path, "r:gz") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if not member.isfile() or not member.name.endswith(".jpg") or len(parts) < 3 or parts[-3] != split:
                    continue
                out.setdefault(parts[-2], {})[parts[-1]] = tar.extractfile(member).read()
        return out
    folder = src / split if (src / split).is_dir() else src / "cifar10" / split
    if not folder.is_dir():
        raise SystemExit(f"neither {tar_path} nor a folder {folder} with class folders")
    for path in folder.glob("*/*.jpg"):
        out.setdefault(path.parent.name, {})[path.name] = path.read_bytes()
    return out


def write_subset(files: dict[str, dict[str, bytes]], per_class: int, dest: Path, prefix: str,
                 rng: np.random.Generator) -> int:
    if dest.exists():
        shutil.rmtree(dest)
    count = 0
    for cls in sorted(files):  # sorted class order = CIFAR-10 label order; the rng is drawn in that order
        names = sorted(files[cls])
        for i in np.sort(rng.choice(len(names), per_class, replace=False)):
            (dest / cls).mkdir(parents=True, exist_ok=True)
            (dest / cls / f"{prefix}{names[i]}").write_bytes(files[cls][names[i]])
            count += 1
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", type=Path, default=SHARED, help="folder with the two tars, or with train/ and test/")
    ap.add_argument("--out", type=Path, default=Path("data/cifar10"))
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    train = read_split(args.src, "train")
    n_calib = write_subset(train, CALIB_PER_CLASS, args.out / "calib", "train_", rng)
    test = read_split(args.src, "test")
    n_test = write_subset(test, TEST_PER_CLASS, args.out / "test", "", rng)
    assert len(train) == len(test) == 10, (sorted(train), sorted(test))
    print(f"wrote {n_calib} calibration JPEGs to {args.out / 'calib'} and {n_test} test JPEGs to {args.out / 'test'}")


if __name__ == "__main__":
    main()
