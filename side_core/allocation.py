"""How a guided budget is spread over the surrogate classes, and which samples nearly coincide.

Near-identical samples are the training-free evidence of memorization (Carlini et al. 2023, "Extracting
Training Data from Diffusion Models"): a model that copies a training image draws it again and again,
so two of its samples land almost on top of each other. "Almost" is set by the model's own pool of
N_syn plain samples: two samples are near-identical when their feature cosine is at least the
``NEAR_IDENTICAL_QUANTILE`` quantile of the pool's nearest-neighbour similarities, i.e. as close as
the closest 5% of the pool's neighbour pairs. The same threshold drives

- the Filter baseline: the pool samples that have a near-identical partner in the pool;
- the adaptive allocation: a class whose guided samples nearly coincide has given up its image, and is
  retired, as is a class that lands on an image another class already gave.

Allocations (``ExtractionConfig.allocation``): "uniform" draws each sample's class at random (the
paper's protocol, SIDE section 4); "stratified" gives the next sample to the least-aimed class (each
class once per round, in a random order per shard); "adaptive" is stratified over the classes not
yet retired (all of them again once every class is retired).
"""

from __future__ import annotations

import numpy as np
import torch

NEAR_IDENTICAL_QUANTILE = 0.95


def pool_neighbours(features: np.ndarray, quantile: float = NEAR_IDENTICAL_QUANTILE, chunk: int = 1024):
    """For (N, D) L2-normalised features: each sample's nearest-other similarity (N,), the
    near-identical threshold (that quantile of them), and each sample's first near-identical partner
    (N,) int64: the lowest index k != i with cosine >= threshold, or -1."""
    z = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    nn = np.empty(len(z), dtype=np.float32)
    for start in range(0, len(z), chunk):
        s = z[start : start + chunk] @ z.T
        rows = torch.arange(len(s))
        s[rows, rows + start] = -float("inf")
        nn[start : start + len(s)] = s.max(dim=1).values.numpy()
    threshold = float(np.quantile(nn, quantile))
    partner = np.full(len(z), -1, dtype=np.int64)
    for start in range(0, len(z), chunk):
        s = z[start : start + chunk] @ z.T
        rows = torch.arange(len(s))
        s[rows, rows + start] = -float("inf")
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


def retired_classes(features: np.ndarray, targets: np.ndarray, threshold: float, n_classes: int) -> np.ndarray:
    """(n_classes,) bool: classes whose guided samples gave up one image, judged without the training
    set. Class c is retired when two of its samples are near-identical (cosine >= threshold), or when
    one of its samples is near-identical to a sample of a class retired before it (the image is
    found already). ``features`` (N, D) L2-normalised, ``targets`` (N,) class of each sample."""
    retired = np.zeros(n_classes, dtype=bool)
    if len(features) < 2:
        return retired
    s = features @ features.T
    np.fill_diagonal(s, -np.inf)
    close = s >= threshold
    same = targets[:, None] == targets[None, :]
    for c in np.unique(targets[(close & same).any(axis=1)]):
        retired[c] = True
    found = retired[targets]  # samples of the classes that converged: images already found
    for c in np.unique(targets[close[:, found].any(axis=1)]):
        retired[c] = True
    return retired
