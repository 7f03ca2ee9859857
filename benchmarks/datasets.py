"""Second datasets for checking that defaults chosen on the bundled faces hold elsewhere.

    python -m benchmarks.datasets fashion-mnist --n 100 --out runs/fashion100/images

Fashion-MNIST comes from Debian's package ``dataset-fashion-mnist`` (``apt-get install
dataset-fashion-mnist``), which installs the original IDX files under
/usr/share/datasets/fashion-mnist; the first N training images are written as PNG files, named by
their index, so that ``python -m side_core train --data OUT`` and ``--data OUT`` for scoring see the
same set.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from side_core.errors import SideError
from side_core.store import atomic_path

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def read_idx_images(path: Path) -> np.ndarray:
    """(N, H, W) uint8 from an IDX3 file (the MNIST format: magic 2051, then N, H, W as big-endian)."""
    with gzip.open(path, "rb") as f:
        header = np.frombuffer(f.read(16), dtype=">u4")
        if header[0] != 2051:
            raise SideError(f"{path} is not an IDX image file (magic {header[0]}, expected 2051).")
        n, h, w = (int(v) for v in header[1:])
        return np.frombuffer(f.read(n * h * w), dtype=np.uint8).reshape(n, h, w)


def export(images: np.ndarray, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        with atomic_path(out / f"{i:05d}.png") as tmp:
            Image.fromarray(image, "L").save(tmp, format="PNG")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=("fashion-mnist",))
    p.add_argument("--n", type=int, default=100, help="the first N training images (default 100)")
    p.add_argument("--out", required=True, help="folder for the PNG files")
    args = p.parse_args()
    if not FASHION_MNIST.exists():
        raise SystemExit(f"error: {FASHION_MNIST} is missing: apt-get install dataset-fashion-mnist")
    export(read_idx_images(FASHION_MNIST)[: args.n], Path(args.out))
    print(f"{args.n} images in {args.out}")


if __name__ == "__main__":
    main()
