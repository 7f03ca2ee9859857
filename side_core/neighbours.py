"""Exact nearest-neighbour search of generated images against the training set, in chunks.

A similarity (one entry of :data:`SIMILARITIES`) maps images to unit vectors so that gamma(x, x') is a
dot product:
- ``pixels``: Pearson correlation of the pixels (standardize each image, divide by sqrt(D)), i.e.
  1 - ||z - z'||^2 / (2D) for standardized images z: a normalised pixel distance that ignores
  brightness and contrast, suited to small images;
- ``sscd``: cosine similarity of SSCD descriptors (needs the TorchScript file).
Queries are processed ``chunk`` rows at a time, so memory holds one (chunk, M) block of
similarities and never the (N, M) matrix: 50,000 x 25,000 on a GPU needs ~100 MB at chunk 1,024. The
per-band "hit" flags over training images are accumulated on the way, so UMS is exact. Queries may
arrive in blocks (:class:`QueryBlocks`, e.g. one per store shard), so that N_G never sits in memory
at once; under a launcher each process searches a contiguous run of blocks and the results are
gathered in order, equal bit for bit to one process's. The search stays in float32 (no reduced
precision): band edges are 1e-6 apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

import numpy as np
import torch

from side_core.distributed import World, all_gather_rows, all_reduce_min
from side_core.embed import load_sscd, sscd_descriptors, standardize
from side_core.errors import SideError
from side_core.metrics import Bands
from side_core.registry import Registry


@dataclass(frozen=True)
class SimilarityMeasure:
    """How one similarity scores images: ``vectors(images, sscd)`` maps (N, C, H, W) in [-1, 1] to (N, D)
    float32 unit vectors on the CPU (``sscd``: the loaded SSCD model where the measure needs its file)."""

    vectors: Callable[[torch.Tensor, torch.jit.ScriptModule | None], torch.Tensor]
    help: str
    preprocessing: str  # what reports say the similarity is; part of the training set's reference key
    needs_sscd_file: bool = False


def _pixel_correlation(images: torch.Tensor, sscd: torch.jit.ScriptModule | None) -> torch.Tensor:
    z = standardize(images)
    return z / z.shape[1] ** 0.5


def _sscd_cosine(images: torch.Tensor, sscd: torch.jit.ScriptModule | None) -> torch.Tensor:
    return sscd_descriptors(images, sscd, autocast=False)  # full precision: these vectors are what the metrics measure


SIMILARITIES: Registry[SimilarityMeasure] = Registry("similarity")
SIMILARITIES.register(
    "pixels",
    SimilarityMeasure(
        _pixel_correlation,
        "pixel correlation",
        "Pearson correlation of pixels (each image standardized to mean 0, std 1)",
    ),
)
SIMILARITIES.register(
    "sscd",
    SimilarityMeasure(
        _sscd_cosine,
        "cosine of SSCD descriptors (the paper's), from its TorchScript file",
        "SSCD descriptor cosine; images resized to 320x320, ImageNet mean/std",
        needs_sscd_file=True,
    ),
)


@dataclass
class Similarity:
    name: str  # in SIMILARITIES
    preprocessing: str
    sscd_path: str | None = None
    # SSCD, loaded once (on the run's device) by make_similarity and reused for every call
    sscd: torch.jit.ScriptModule | None = field(default=None, repr=False, compare=False)

    def vectors(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> (N, D) float32 unit vectors, on the CPU."""
        measure = SIMILARITIES.get(self.name)
        if measure.needs_sscd_file and self.sscd is None:
            self.sscd = load_sscd(self.sscd_path)
        return measure.vectors(images, self.sscd)

    def to_dict(self) -> dict:
        # Stored stages (the training set's reference) are keyed by this dict, and the pixels similarity
        # was stored as "pixel": it keeps that name here, so that they keep their keys.
        name = "pixel" if self.name == "pixels" else self.name
        return {"name": name, "preprocessing": self.preprocessing}


def make_similarity(
    name: str = "pixels", sscd_path: str | Path | None = None, device: str | torch.device = "cpu"
) -> Similarity:
    """The similarity ``name`` (in :data:`SIMILARITIES`); one that needs the SSCD file loads it now (a
    missing file fails before any generation), once, onto ``device``."""
    measure = SIMILARITIES.get(name)
    if not measure.needs_sscd_file:
        return Similarity(name, measure.preprocessing)
    return Similarity(name, measure.preprocessing, str(sscd_path), load_sscd(sscd_path, device))


@dataclass(frozen=True)
class QueryBlocks:
    """Queries that arrive block by block (e.g. one block per store shard), loaded only when searched."""

    sizes: tuple[int, ...]  # rows of each block
    load: Callable[[int], torch.Tensor]  # block index -> (sizes[i], D) float32 unit vectors

    @classmethod
    def split(cls, queries: torch.Tensor, rows: int) -> QueryBlocks:
        """Blocks of ``rows`` rows of a tensor already in memory."""
        sizes = tuple(min(rows, len(queries) - s) for s in range(0, len(queries), rows))
        return cls(sizes, lambda i: queries[i * rows : i * rows + sizes[i]])


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
    queries: torch.Tensor | QueryBlocks,
    train: torch.Tensor,
    k: int = 1,
    bands: Bands | None = None,
    chunk: int = 1024,
    device: str | torch.device | None = None,
    world: World | None = None,
) -> NeighbourResult:
    """Top-k training neighbours of every query, from (N, D) queries and (M, D) training unit vectors.

    ``world``: the launched processes, which all call this with the same arguments; each searches a
    contiguous run of blocks and every process gets the whole result.
    """
    if len(train) == 0:
        raise SideError("The training set is empty: give at least one training image.")
    if chunk < 1:
        raise SideError(f"The search chunk must be at least 1 row (got {chunk}).")
    world = world or World()
    if isinstance(queries, torch.Tensor):
        device = torch.device(device) if device is not None else queries.device
        queries = QueryBlocks.split(queries, chunk)
    else:
        device = torch.device(device) if device is not None else torch.device("cpu")
    n = sum(queries.sizes)
    offsets = [0, *accumulate(queries.sizes)]
    k = min(k, len(train))
    train = train.to(device)
    # first query in the band with each training image; n (past the end) until one is found
    first_hit = {name: torch.full((len(train),), n, dtype=torch.long, device=device) for name, _ in _items(bands)}
    sims, idxs = [torch.zeros((0, k))], [torch.zeros((0, k), dtype=torch.long)]
    groups = _groups(queries.sizes, chunk)
    # One set of (chunk, M) buffers for the whole search: fresh blocks of tens of MB per chunk would
    # fragment the heap, and memory would grow with N (measured by benchmarks/scale.py).
    s_buffer = torch.empty((chunk, len(train)), device=device)
    inside_buffer = torch.empty((chunk, len(train)), dtype=torch.bool, device=device)
    below_buffer = torch.empty_like(inside_buffer)
    for first, last in (groups[g] for g in world.rows(len(groups))):
        q_group = torch.cat([queries.load(block) for block in range(first, last)])
        for start in range(0, len(q_group), chunk):
            q = q_group[start : start + chunk].to(device, torch.float32)
            s = torch.matmul(q, train.T, out=s_buffer[: len(q)])  # (chunk, M)
            top = s.topk(k, dim=1)
            sims.append(top.values.cpu())
            idxs.append(top.indices.cpu())
            for name, (lo, hi) in _items(bands):
                inside = torch.ge(s, lo, out=inside_buffer[: len(q)])  # metrics.in_band, in place
                if hi is not None:
                    inside &= torch.lt(s, hi, out=below_buffer[: len(q)])
                # argmax of a bool column is its first True; earlier chunks already hold smaller indices
                first_here = inside.view(torch.uint8).argmax(dim=0) + offsets[first] + start
                hit = inside.any(dim=0)
                first_hit[name][hit] = torch.minimum(first_hit[name][hit], first_here[hit])
    similarity, index = torch.cat(sims), torch.cat(idxs)
    if world.size > 1:
        similarity, index = all_gather_rows(similarity), all_gather_rows(index)
        first_hit = {name: all_reduce_min(f) for name, f in first_hit.items()}
    return NeighbourResult(
        similarity.numpy(),
        index.numpy(),
        {name: torch.where(f < n, f, -1).cpu().numpy() for name, f in first_hit.items()},
    )


def _groups(sizes: tuple[int, ...], rows: int) -> list[tuple[int, int]]:
    """Consecutive blocks [first, last) holding at least ``rows`` rows each (the last group may hold
    fewer). Searching whole groups keeps each similarity block about ``rows`` x M, whatever the
    block size: many small blocks would fragment the heap and let memory grow with N (measured),
    and the groups do not depend on the number of processes, so neither do the results."""
    groups, first, held = [], 0, 0
    for block, size in enumerate(sizes):
        held += size
        if held >= rows:
            groups.append((first, block + 1))
            first, held = block + 1, 0
    if first < len(sizes):
        groups.append((first, len(sizes)))
    return groups


def _items(bands: Bands | None) -> list[tuple[str, tuple[float, float | None]]]:
    return bands.items() if bands else []


def similarities_to_others(vectors: torch.Tensor, chunk: int = 1024) -> Iterator[tuple[int, torch.Tensor]]:
    """(start, (rows, N) similarities) of ``chunk`` rows of (N, D) unit vectors at a time to all N, each
    row's similarity to itself set to -inf: what "the nearest other vector" is taken over."""
    for start in range(0, len(vectors), chunk):
        s = vectors[start : start + chunk] @ vectors.T
        rows = torch.arange(len(s), device=s.device)
        s[rows, rows + start] = -float("inf")
        yield start, s


def nearest_others(
    vectors: torch.Tensor, chunk: int = 1024, device: str | torch.device | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each vector's similarity to, and index of, its nearest *other* vector (training images, or a pool's
    samples)."""
    if len(vectors) < 2:
        raise SideError("Need at least 2 training images to compare them with each other.")
    vectors = vectors.to(device) if device is not None else vectors
    sims, idxs = [], []
    for _, s in similarities_to_others(vectors, chunk):
        top = s.max(dim=1)
        sims.append(top.values.cpu())
        idxs.append(top.indices.cpu())
    return torch.cat(sims).numpy(), torch.cat(idxs).numpy()
