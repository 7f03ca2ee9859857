"""Second datasets for checking that defaults chosen on the bundled faces hold elsewhere.

    python -m benchmarks.datasets fashion-mnist --n 100 --out runs/fashion100/images
    python -m benchmarks.datasets fashion-mnist --n 1000 --out runs/fashion1k/images \\
        --repeated 300 --train-out runs/fashion1k/train
    python -m benchmarks.datasets fashion-mnist --n 1000 --out runs/fashion1k/images \\
        --repeated 300 --copies 16 --train-out runs/flat16/train

Fashion-MNIST comes from Debian's package ``dataset-fashion-mnist`` (``apt-get install
dataset-fashion-mnist``), which installs the original IDX files under
/usr/share/datasets/fashion-mnist; the first N training images are written as PNG files, named by
their index, so that ``python -m side_core train --data OUT`` and ``--data OUT`` for scoring see the
same set.

With ``--repeated R --train-out TRAIN``, TRAIN holds the same N images plus extra copies of R of
them, chosen with a fixed seed and repeated 2 to 32 times in all, heavy-tailed as duplicates are in
web data: the images with at least c copies number R (c / 2)^-1.5, so each doubling of the count has
about 2.8 times fewer images (R = 300: 194 images with 2-3 copies, 69 with 4-7, 24 with 8-15, 9 with
16-31, 4 with 32). Train on TRAIN and score against OUT, which holds each image once. Duplicated
images are the ones a model memorizes first (Carlini et al. 2023); at each count there are more
images than at all higher counts together, so that more samples keep reaching new images.
With ``--copies C`` every one of the R images has C copies instead: the model then memorizes many
images at once, each as strongly as its content allows, so their copy rates spread over orders of
magnitude rather than following their counts. TRAIN/repeats.json lists every repeated image with its count.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from side_core.errors import SideError
from side_core.store import atomic_path, write_json

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
MAX_COPIES = 32  # copies in all of the most repeated images
TAIL = 1.5  # the images with at least c copies fall as c^-TAIL
REPEAT_SEED = 0


def read_idx_images(path: Path) -> np.ndarray:
    """(N, H, W) uint8 from an IDX3 file (the MNIST format: magic 2051, then N, H, W as big-endian)."""
    with gzip.open(path, "rb") as f:
        header = np.frombuffer(f.read(16), dtype=">u4")
        if header[0] != 2051:
            raise SideError(f"{path} is not an IDX image file (magic {header[0]}, expected 2051).")
        n, h, w = (int(v) for v in header[1:])
        return np.frombuffer(f.read(n * h * w), dtype=np.uint8).reshape(n, h, w)


def repeat_counts(n_images: int, n_repeated: int, copies: int | None = None, seed: int = REPEAT_SEED) -> dict[int, int]:
    """Image index -> copies in all, for ``n_repeated`` images drawn with ``seed``.

    With ``copies`` every drawn image gets that many. Without, the k-th drawn image gets
    floor(2 (R / k)^(1 / TAIL)) copies, at most MAX_COPIES: the quantiles of a discrete Pareto law, so
    that exactly floor(R (c / 2)^-TAIL) images have at least c copies."""
    if not 0 <= n_repeated <= n_images:
        raise SideError(f"--repeated {n_repeated} must be between 0 and --n {n_images}.")
    if copies is not None and not 2 <= copies <= MAX_COPIES:
        raise SideError(f"--copies {copies} must be between 2 and {MAX_COPIES}.")
    rank = np.arange(1, n_repeated + 1)
    if copies is None:
        counts = np.minimum(MAX_COPIES, np.floor(2 * (n_repeated / rank) ** (1 / TAIL))).astype(int)
    else:
        counts = np.full(n_repeated, copies)
    chosen = np.random.default_rng(seed).choice(n_images, size=n_repeated, replace=False)
    return {int(i): int(c) for i, c in zip(chosen, counts, strict=True)}


def export(images: np.ndarray, out: Path, copies: dict[int, int] | None = None) -> int:
    """Write each image as OUT/{index}.png, and copies 2..c of a repeated one as {index}-{k}.png."""
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for i, image in enumerate(images):
        for k in range(1, (copies or {}).get(i, 1) + 1):
            name = f"{i:05d}.png" if k == 1 else f"{i:05d}-{k:02d}.png"
            with atomic_path(out / name) as tmp:
                Image.fromarray(image, "L").save(tmp, format="PNG")
            written += 1
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=("fashion-mnist",))
    p.add_argument("--n", type=int, default=100, help="the first N training images (default 100)")
    p.add_argument("--out", required=True, help="folder for the PNG files, each image once (for scoring)")
    p.add_argument("--repeated", type=int, default=0, help="images given extra copies in --train-out (default 0)")
    p.add_argument(
        "--copies", type=int, default=None, help="copies of every repeated image (default: 2 to 32, heavy-tailed)"
    )
    p.add_argument("--train-out", default=None, help="folder for the training files with the copies")
    args = p.parse_args()
    if not FASHION_MNIST.exists():
        raise SystemExit(f"error: {FASHION_MNIST} is missing: apt-get install dataset-fashion-mnist")
    if args.repeated and not args.train_out:
        raise SystemExit("error: --repeated needs --train-out, the folder the copies go to")
    images = read_idx_images(FASHION_MNIST)[: args.n]
    export(images, Path(args.out))
    print(f"{len(images)} images in {args.out}")
    if args.train_out:
        copies = repeat_counts(len(images), args.repeated, args.copies)
        written = export(images, Path(args.train_out), copies)
        write_json(
            Path(args.train_out) / "repeats.json",
            {"seed": REPEAT_SEED, "n_images": len(images), "n_files": written, "copies": copies},
        )
        print(f"{written} training files ({args.repeated} images repeated) in {args.train_out}")


if __name__ == "__main__":
    main()
