"""How a guided budget is spread over the surrogate classes, and which samples nearly coincide.

Allocations (``ExtractionConfig.allocation``): "uniform" draws each sample's class at random (the
paper's protocol, SIDE section 4); "stratified" gives the next sample to the least-aimed class (each
class once per round, in a random order per shard). Either way shard i's classes are a function of
(seed, i) alone, so any process can make any shard.

Near-identical samples are the training-free evidence of memorization (Carlini et al. 2023, "Extracting
Training Data from Diffusion Models"): a model that copies a training image draws it again and again,
so two of its samples land almost on top of each other. "Almost" is set by the model's own pool of
N_syn plain samples: two samples are near-identical when their feature cosine is at least the
``NEAR_IDENTICAL_QUANTILE`` quantile of the pool's nearest-neighbour similarities, i.e. as close as
the closest 5% of the pool's neighbour pairs. The Filter baseline reports the pool samples that have a
near-identical partner in the pool.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from side_core.config import ALLOCATIONS
from side_core.errors import SideError
from side_core.neighbours import similarities_to_others
from side_core.stages import Sharding

NEAR_IDENTICAL_QUANTILE = 0.95


@dataclass(frozen=True)
class Target:
    """What a guided generation aims at: a classifier stage, and one class or all of them spread by
    an allocation."""

    classifier: str  # the classifier stage folder name (its inputs key)
    n_classes: int
    cls: int | None = None  # None: every class, spread by ``allocation``
    allocation: str = "uniform"

    def __post_init__(self) -> None:
        if self.cls is not None and (isinstance(self.cls, bool) or not 0 <= self.cls < self.n_classes):
            raise SideError(f"Class {self.cls!r} does not exist: the surrogate classes are 0 to {self.n_classes - 1}.")
        if self.allocation not in ALLOCATIONS:
            raise SideError(f"Unknown allocation {self.allocation!r}: use one of {', '.join(ALLOCATIONS)}.")

    def key(self) -> dict[str, Any]:
        """The target's part of a generation stage's inputs. The two null entries are fixed: stored
        generations were keyed with them (fields of an allocation since removed), and keep their keys."""
        return {**asdict(self), "near_identical": None, "feature": None}

    def classes(self, seed: int, sharding: Sharding, i: int) -> np.ndarray:
        """(sharding.size(i),) int64: the target class of each sample of shard ``i``."""
        size = sharding.size(i)
        if self.cls is not None:
            return np.full(size, self.cls, dtype=np.int64)
        if self.allocation == "uniform":
            return np.random.default_rng([seed, i, 1]).integers(0, self.n_classes, size)
        counts = np.zeros(self.n_classes, dtype=np.int64)
        active = np.arange(self.n_classes)
        for j in range(i):  # replay the earlier shards' choices: they are pure functions of (seed, j)
            balanced_targets(counts, active, sharding.size(j), np.random.default_rng([seed, j, 2]))
        return balanced_targets(counts, active, size, np.random.default_rng([seed, i, 2]))


def pool_neighbours(features: np.ndarray, quantile: float = NEAR_IDENTICAL_QUANTILE, chunk: int = 1024):
    """For (N, D) L2-normalised features: each sample's nearest-other similarity (N,), the
    near-identical threshold (that quantile of them), and each sample's first near-identical partner
    (N,) int64: the lowest index k != i with cosine >= threshold, or -1."""
    z = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    nn = np.empty(len(z), dtype=np.float32)
    for start, s in similarities_to_others(z, chunk):
        nn[start : start + len(s)] = s.max(dim=1).values.numpy()
    threshold = float(np.quantile(nn, quantile))
    partner = np.full(len(z), -1, dtype=np.int64)
    for start, s in similarities_to_others(z, chunk):
        close = (s >= threshold).numpy()
        has = close.any(axis=1)
        partner[start : start + len(s)][has] = close[has].argmax(axis=1)
    return nn, threshold, partner


def near_identical_groups(partner: np.ndarray) -> np.ndarray:
    """(N,) int64 group of each sample (-1: no near-identical partner): samples linked through
    near-identical partners share a group."""
    parent = np.arange(len(partner))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in enumerate(partner):
        if j >= 0:
            parent[root(i)] = root(int(j))
    roots = np.array([root(i) for i in range(len(partner))])
    groups = np.full(len(partner), -1, dtype=np.int64)
    flagged = partner >= 0
    _, groups[flagged] = np.unique(roots[flagged], return_inverse=True)
    return groups


def balanced_targets(counts: np.ndarray, active: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` classes, each the active class aimed at least so far (ties in a random order drawn
    from ``rng``). ``counts`` (n_classes,) is updated in place."""
    tie_order = rng.permutation(len(counts))
    out = np.empty(size, dtype=np.int64)
    for j in range(size):
        c = active[np.lexsort((tie_order[active], counts[active]))[0]]
        out[j] = c
        counts[c] += 1
    return out
