"""Training sets: the bundled LFW faces or any image folder, converted to a model's channels and
size. The training set is needed only to train a model and to score extractions, never to extract."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from side_core.errors import SideError
from side_core.images import from_uint8

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_DATA = "default"
# scikit-image ships 200 LFW crops: the first 100 are faces, the last 100 are not.
N_BUNDLED_FACES = 100
EXIF_ORIENTATION = 0x0112


@dataclass
class TrainingSet:
    """Training images as float32 (N, C, H, W) in [-1, 1], with where they came from."""

    images: torch.Tensor
    names: list[str]
    source: str
    preprocessing: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def facts(self) -> dict:
        return {
            "source": self.source,
            "n_images": len(self),
            "channels": self.channels,
            "size": self.size,
            "preprocessing": self.preprocessing,
        }


def load_training_set(
    spec: str | Path = DEFAULT_DATA,
    channels: int | None = None,
    size: int | None = None,
    n_images: int | None = None,
) -> TrainingSet:
    """Load ``default`` (the bundled LFW faces, 1 x 24 x 24 unless asked otherwise) or an image
    folder (png/jpg/jpeg/bmp/webp, sorted by name), converted to ``channels`` and ``size``.

    ``n_images`` keeps the first N images (after sorting). Unreadable files are skipped with a
    warning; a folder with no readable image is an error.
    """
    if n_images is not None and n_images < 1:
        raise SideError(f"n_images must be at least 1 (got {n_images}).")
    if str(spec) == DEFAULT_DATA:
        pixels, names, steps = _bundled_faces()
        source = "bundled LFW faces (scikit-image lfw_subset, first 100)"
    else:
        pixels, names, steps = _image_folder(Path(spec), size)
        source = str(Path(spec).resolve())
    if n_images is not None:
        pixels, names = pixels[:n_images], names[:n_images]
        steps.append(f"kept the first {len(names)} images")
    pixels, more_steps = _convert(pixels, channels, size)
    return TrainingSet(from_uint8(pixels), names, source, steps + more_steps)


def _bundled_faces() -> tuple[np.ndarray, list[str], list[str]]:
    from skimage.data import lfw_subset

    faces = lfw_subset()[:N_BUNDLED_FACES]  # (100, 25, 25) float64 in [0, 1]
    pixels = np.round(faces * 255).astype(np.uint8)[..., None]
    names = [f"lfw_subset[{i}]" for i in range(len(pixels))]
    return pixels, names, ["scikit-image lfw_subset() rows 0-99, 25x25 grayscale"]


def _image_folder(folder: Path, size: int | None = None) -> tuple[np.ndarray, list[str], list[str]]:
    """Every readable image of ``folder`` as (N, side, side, 3) uint8, where side is ``size`` (the
    model's) or else the most common short side; smaller images are skipped, not upscaled."""
    from collections import Counter

    if not folder.exists():
        raise SideError(f"Image folder {folder} does not exist: give an existing folder or 'default'.")
    if not folder.is_dir():
        raise SideError(f"{folder} is a file, not a folder: give the folder that holds the images.")
    # Regular files only: a FIFO or device named like an image would block or never end.
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    images, names, notes = [], [], Counter()
    for path in files:
        try:
            rgb, image_notes = _read_image(path)
        except (
            UnidentifiedImageError,
            OSError,
            ValueError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as err:
            log.warning("skipping unreadable image %s (%s)", path.name, err)
            continue
        images.append(rgb)
        names.append(path.name)
        notes.update(image_notes)
    if not images:
        raise SideError(
            f"No readable image in {folder} (looked for regular files ending in {', '.join(IMAGE_SUFFIXES)}): "
            "put the training images directly in that folder."
        )
    short_sides = [min(a.shape[:2]) for a in images]
    side = size if size is not None else Counter(short_sides).most_common(1)[0][0]
    too_small = [name for name, s in zip(names, short_sides, strict=True) if s < side]
    if len(too_small) == len(images):
        raise SideError(
            f"Every image in {folder} is smaller than {side}x{side} (the largest is {max(short_sides)} pixels on its "
            "short side): upscaling would invent detail and no copy could be found. Use larger images or a model "
            "of their size."
        )
    for name in too_small:
        log.warning("skipping %s: smaller than %dx%d, and upscaling would invent detail", name, side, side)
    kept = [i for i, s in enumerate(short_sides) if s >= side]
    steps = [f"{len(kept)} images from {folder.name}/ (of {len(files)} files), RGB"]
    steps += [f"{note} ({count} images)" for note, count in sorted(notes.items())]
    if too_small:
        steps.append(f"skipped {len(too_small)} images smaller than {side}x{side}: {', '.join(too_small[:5])}")
    squared, how = zip(*(_square(images[i], side) for i in kept), strict=True)
    steps += [f"{note} ({count} images)" for note, count in sorted(Counter(h for h in how if h).items())]
    return np.stack(squared), [names[i] for i in kept], steps


def _read_image(path: Path) -> tuple[np.ndarray, list[str]]:
    """(H, W, 3) uint8 in display orientation, and what was done to get there (16-bit, alpha, EXIF)."""
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb is skipped, not decoded
        with Image.open(path) as opened:
            im = ImageOps.exif_transpose(opened)
            if im is not opened and opened.getexif().get(EXIF_ORIENTATION, 1) != 1:
                notes.append("rotated or flipped by its EXIF orientation")
            if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                # 16-bit grayscale: scale 0..65535 to 0..255 (PIL's convert would clip it to white)
                wide = np.asarray(im, dtype=np.float64)
                im = Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8), "L")
                notes.append("16-bit grayscale scaled to 8 bits")
            elif im.mode == "F":
                im = Image.fromarray(np.clip(np.round(np.asarray(im)), 0, 255).astype(np.uint8), "L")
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, rgba)
                notes.append("transparency composited onto white")
            return np.asarray(im.convert("RGB")), notes


def _square(image: np.ndarray, side: int) -> tuple[np.ndarray, str]:
    """A center square of an (H, W, C) uint8 image brought to side x side, and what was done ('' if
    nothing)."""
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = image[top : top + s, left : left + s]
    how = f"center-cropped {h}x{w} to {s}x{s}" if h != w else ""
    if s - side > 2:
        plane = crop[..., 0] if crop.shape[-1] == 1 else crop  # PIL takes gray images as (H, W)
        crop = np.asarray(Image.fromarray(plane).resize((side, side), Image.LANCZOS)).reshape(side, side, -1)
        how = ", then ".join(filter(None, [how, f"resized {s}x{s} to {side}x{side} (Lanczos)"]))
    elif s != side:
        # A pixel or two: crop rather than resample, so pixels stay the originals.
        top = (s - side) // 2
        crop = crop[top : top + side, top : top + side]
        how = ", then ".join(filter(None, [how, f"center-cropped {s}x{s} to {side}x{side}"]))
    return crop, how


def _convert(pixels: np.ndarray, channels: int | None, size: int | None) -> tuple[np.ndarray, list[str]]:
    """(N, H, W, C) uint8 -> (N, size, size, channels) uint8, and the steps taken."""
    steps = []
    c = pixels.shape[-1]
    if channels is not None and channels != c:
        if channels == 1 and c == 3:
            pixels = np.round(pixels @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None]
            steps.append("RGB to grayscale (ITU-R 601 luma)")
        elif channels == 3 and c == 1:
            pixels = np.repeat(pixels, 3, axis=-1)
            steps.append("grayscale repeated to 3 channels")
        else:
            raise SideError(
                f"Cannot convert {c}-channel images to the model's {channels} channels: "
                "use a model with 1 or 3 channels, or images that match it."
            )
    h = pixels.shape[1]
    if size is not None and size != h:
        if size > h:
            raise SideError(
                f"The images are {h}x{h} but the model needs {size}x{size}: upscaling would invent "
                "detail and no copy could be found. Use larger images or a model of that size."
            )
        squared = [_square(p, size) for p in pixels]  # same shape in, so the same step for all
        pixels = np.stack([p for p, _ in squared])
        steps.append(squared[0][1])
    return pixels, steps
