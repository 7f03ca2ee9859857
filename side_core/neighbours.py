"""Exact nearest-neighbour search of generated images against the training set, in chunks.

A similarity maps images to unit vectors so that gamma(x, x') is a dot product:
- ``pixel``: Pearson correlation of the pixels (standardize each image, divide by sqrt(D)), i.e.
  1 - ||z - z'||^2 / (2D) for standardized images z: a normalised pixel distance that ignores
  brightness and contrast, suited to small images;
- ``sscd``: cosine similarity of SSCD descriptors (needs the TorchScript file).
Queries are processed ``chunk`` rows at a time so that 50k x 30k fits any GPU; the per-band
"hit" flags over training images are accumulated on the way, so UMS is exact without ever holding
the full similarity matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from side_core.embed import load_sscd, sscd_descriptors, standardize
from side_core.errors import SideError
from side_core.metrics import Bands, in_band

SIMILARITIES = ("pixel", "sscd")


@dataclass
class Similarity:
    name: str
    preprocessing: str
    sscd_path: str | None = None

    def vectors(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> (N, D) float32 unit vectors."""
        if self.name == "pixel":
            z = standardize(images)
            return z / z.shape[1] ** 0.5
        return torch.from_numpy(sscd_descriptors(images, load_sscd(self.sscd_path)))

    def to_dict(self) -> dict:
        return {"name": self.name, "preprocessing": self.preprocessing}


def make_similarity(name: str = "pixel", sscd_path: str | Path | None = None) -> Similarity:
    if name == "pixel":
        return Similarity("pixel", "Pearson correlation of pixels (each image standardized to mean 0, std 1)")
    if name == "sscd":
        load_sscd(sscd_path)  # fail now, not after generation, if the file is missing
        return Similarity(
            "sscd", "SSCD descriptor cosine; images resized to 320x320, ImageNet mean/std", str(sscd_path)
        )
    raise SideError(f"Unknown similarity '{name}': use one of {', '.join(SIMILARITIES)}.")


@dataclass
class NeighbourResult:
    similarity: np.ndarray  # (N, k) float32, descending
    index: np.ndarray  # (N, k) int64 training indices
    # band -> (M,) int64: index of the first query in the band with each training image, -1 if none
    first_hit: dict[str, np.ndarray]

    @property
    def max_similarity(self) -> np.ndarray:
        return self.similarity[:, 0]

    @property
    def band_hits(self) -> dict[str, np.ndarray]:
        """band -> (M,) bool: some query lies in the band with this training image."""
        return {name: first >= 0 for name, first in self.first_hit.items()}


def search(
    queries: torch.Tensor,
    train: torch.Tensor,
    k: int = 1,
    bands: Bands | None = None,
    chunk: int = 1024,
    device: str | torch.device | None = None,
) -> NeighbourResult:
    """Top-k training neighbours of every query, from (N, D) and (M, D) unit vectors."""
    if len(train) == 0:
        raise SideError("The training set is empty: give at least one training image.")
    device = torch.device(device) if device is not None else queries.device
    k = min(k, len(train))
    train = train.to(device)
    first_hit = {
        name: torch.full((len(train),), -1, dtype=torch.long, device=device)
        for name, _ in (bands.items() if bands else [])
    }
    sims, idxs = [], []
    for start in range(0, len(queries), chunk):
        s = queries[start : start + chunk].to(device) @ train.T  # (chunk, M)
        top = s.topk(k, dim=1)
        sims.append(top.values.cpu())
        idxs.append(top.indices.cpu())
        for name, band in bands.items() if bands else []:
            inside = in_band(s, band)
            # argmax of a bool column is its first True; keep only images not hit by earlier chunks
            first_here = inside.to(torch.uint8).argmax(dim=0) + start
            new = inside.any(dim=0) & (first_hit[name] < 0)
            first_hit[name][new] = first_here[new]
    return NeighbourResult(
        torch.cat(sims).numpy() if sims else np.zeros((0, k), np.float32),
        torch.cat(idxs).numpy() if idxs else np.zeros((0, k), np.int64),
        {name: f.cpu().numpy() for name, f in first_hit.items()},
    )


def train_nn_similarity(train: torch.Tensor, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Each training vector's similarity to, and index of, its nearest *other* training vector."""
    if len(train) < 2:
        raise SideError("Need at least 2 training images to compare them with each other.")
    sims, idxs = [], []
    for start in range(0, len(train), chunk):
        s = train[start : start + chunk] @ train.T
        rows = torch.arange(len(s))
        s[rows, rows + start] = -float("inf")  # exclude each image itself
        top = s.max(dim=1)
        sims.append(top.values)
        idxs.append(top.indices)
    return torch.cat(sims).numpy(), torch.cat(idxs).numpy()
