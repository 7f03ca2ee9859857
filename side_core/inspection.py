"""What a person inspects in a run: a scored generation's samples beside their nearest training
images (:class:`Scored`), each method's best distinct extractions as pairs, pictures and a ZIP of
them, and how often guidance toward each class copied (:class:`ClassCopies`).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from side_core.cluster import band_counts
from side_core.errors import SideError
from side_core.images import grid, to_uint8, upscale_nearest
from side_core.kinds.generation import Generation
from side_core.kinds.scoring import Score
from side_core.metrics import BAND_NAMES, Bands, in_band
from side_core.run import Run

if TYPE_CHECKING:
    from side_core.report import Report  # the report's files show these pairs: its modules import this one


@dataclass(frozen=True)
class Scored:
    """A scored generation: its samples and each one's nearest training images."""

    images: torch.Tensor  # (N, C, H, W) float32 in [-1, 1]
    similarity: np.ndarray  # (N, k) float32, descending
    index: np.ndarray  # (N, k) int64 training indices
    bands: Bands
    # timestep -> (N, C, H, W) predicted x0 at the generation's captured steps (empty: none read)
    frames: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def nearest(self) -> np.ndarray:
        """(N,) similarity of each sample to its nearest training image."""
        return self.similarity[:, 0]

    @property
    def is_copy(self) -> np.ndarray:
        """(N,) bool: the nearest training image is in the high band."""
        return in_band(self.nearest, self.bands.high)

    @property
    def n_copies(self) -> int:
        return int(self.is_copy.sum())

    def band(self, similarity: float) -> str:
        """'high', 'mid', 'low', or 'below' (the low band) for one similarity."""
        return self.bands.name_of(float(similarity)) or "below"

    def take(self, ids: list[int] | np.ndarray) -> Scored:
        """The same for the samples ``ids`` only, in that order."""
        frames = {t: frame[ids] for t, frame in self.frames.items()}
        return Scored(self.images[ids], self.similarity[ids], self.index[ids], self.bands, frames)


def scored(score: Score, frames: bool = False) -> Scored:
    """A scored generation's samples with their nearest training images, and with ``frames`` the
    predicted x0 at its captured steps."""
    generation = score.generation
    return Scored(generation.images(), *score.neighbours(), score.bands, generation.frames() if frames else {})


@dataclass(frozen=True)
class Pairs:
    """A method's best distinct extractions, best first."""

    generated: torch.Tensor  # (n, C, H, W) float32 in [-1, 1]
    training: torch.Tensor  # (n, C, H, W): each sample's nearest training image
    similarity: np.ndarray  # (n,)
    train_index: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.generated)


def best_extractions(run: Run, score: Score, n: int = 8) -> Pairs:
    """The ``n`` samples of a scored generation closest to distinct training images, best first."""
    sims, idx = score.neighbours()
    order = np.argsort(-sims[:, 0], kind="stable")
    chosen, seen = [], set()
    for i in order:
        if idx[i, 0] not in seen:
            seen.add(idx[i, 0])
            chosen.append(i)
        if len(chosen) == n:
            break
    chosen = np.array(chosen, dtype=np.int64)
    train_idx = idx[chosen, 0]
    return Pairs(score.generation.images()[chosen], run.data.images[train_idx], sims[chosen, 0], train_idx)


def best_pairs(run: Run, report: Report, n: int = 8) -> dict[str, Pairs]:
    """Each method's ``n`` samples closest to distinct training images, with those images."""
    return {method: best_extractions(run, run.find(row.score, Score), n) for method, row in report.methods.items()}


def pair_image(generated: torch.Tensor, training: torch.Tensor, scale: int = 4, pad: int = 4) -> np.ndarray:
    """(C, H, W) sample and training image -> one (H', W', C) uint8 image, side by side, so that a
    pair never breaks across rows."""
    return grid(upscale_nearest(to_uint8(torch.stack([generated, training])), scale), n_cols=2, pad=pad)


def pairs_zip(pairs: dict[str, Pairs], scale: int = 4) -> bytes:
    """A ZIP of PNGs, ``method/rank_simS_trainI.png``: each sample next to its training image."""
    from PIL import Image

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for method, p in pairs.items():
            for rank in range(len(p)):
                image = pair_image(p.generated[rank], p.training[rank], scale)
                png = io.BytesIO()
                Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(png, format="PNG")
                name = f"{method}/{rank + 1:02d}_sim{p.similarity[rank]:.3f}_train{int(p.train_index[rank]):05d}.png"
                zf.writestr(name, png.getvalue())
    return buffer.getvalue()


@dataclass(frozen=True)
class ClassCopies:
    """How well guidance toward each class extracted in a guided generation whose samples drew their
    targets uniformly (a report's Cond or SIDE row)."""

    aimed: np.ndarray  # (n_classes,) int64 samples aimed at each class
    copies: np.ndarray  # (n_classes,) int64 of them whose nearest training image is in the high band

    def rate(self, cls: int) -> float | None:
        """The share of samples aimed at ``cls`` that are copies; None if none was aimed at it."""
        return float(self.copies[cls] / self.aimed[cls]) if self.aimed[cls] else None

    def n_above(self, rate: float) -> tuple[int, int]:
        """(classes whose guided copy rate exceeds ``rate``, classes some sample was aimed at)."""
        rates = [r for c in range(len(self.aimed)) if (r := self.rate(c)) is not None]
        return sum(r > rate for r in rates), len(rates)


def class_copies(run: Run, report: Report, method: str = "side") -> ClassCopies:
    """Per class, the samples of a report's guided generation aimed at it and the copies among them."""
    row = report.methods[method]
    targets = run.find(row.generation, Generation).targets()
    if targets is None:
        raise SideError(f"The {method} generation has no targets: it is not guided. Pick SIDE or Cond.")
    n_classes = int(report.clusters["n_classes"])
    similarity, _ = run.find(row.score, Score).neighbours()
    aimed = np.bincount(targets.numpy(), minlength=n_classes)
    copies = band_counts(targets.numpy(), similarity[:, 0], report.bands, n_classes)[:, BAND_NAMES.index("high")]
    return ClassCopies(aimed, copies)


def extraction_grid(pairs: dict[str, Pairs], per_row: int = 8, scale: int = 4) -> np.ndarray:
    """One row per method: (generated | training) pairs side by side, upscaled, with a label."""
    from PIL import Image, ImageDraw

    rows = []
    for method, p in pairs.items():
        generated, training = p.generated, p.training
        n = min(per_row, len(generated))
        if n:
            tiles = to_uint8(torch.stack([im for i in range(n) for im in (generated[i], training[i])]))
            tiles = np.repeat(tiles, 3, axis=-1) if tiles.shape[-1] == 1 else tiles
            row = grid(upscale_nearest(tiles, scale), n_cols=2 * per_row, pad=2)
        else:
            row = np.full((40, 200, 3), 255, np.uint8)
        label = Image.new("RGB", (90, row.shape[0]), "white")
        ImageDraw.Draw(label).text((6, row.shape[0] // 2 - 6), method, fill="black")
        rows.append(np.concatenate([np.asarray(label), row], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)
