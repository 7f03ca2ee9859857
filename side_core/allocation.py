"""How a guided budget is spread over the surrogate classes, and which samples nearly coincide.

Allocations (``ExtractionConfig.allocation``, the entries of :data:`ALLOCATIONS`): "flagged" draws each
sample's class with probability proportional to the class's flagged share, the share of its pool
samples that have a near-identical partner (below), so the budget goes where the model repeats itself
and classes with no such sample get none; "missing" draws it in proportion to the class's Good-Turing
discovery rate (:func:`missing_share`), so the budget goes where images are about to be found rather
than where they already were;
"uniform" draws each sample's class at random (the paper's protocol);
"stratified" gives the next sample to the least-aimed class (each class once per round, in a random
order per shard). In every case shard i's classes are a function of (seed, i) alone, so any process
can make any shard.

Near-identical samples are the training-free evidence of memorization (Carlini et al. 2023, "Extracting
Training Data from Diffusion Models"): a model that copies a training image draws it again and again,
so two of its samples land almost on top of each other. "Almost" is set by the model's own pool of
N_syn plain samples: two samples are near-identical when their feature cosine is at least the
``NEAR_IDENTICAL_QUANTILE`` quantile of the pool's nearest-neighbour similarities, i.e. as close as
the closest 5% of the pool's neighbour pairs. The Filter baseline reports the pool samples that have a
near-identical partner in the pool; "core" labels (:func:`core_labels`) keep only those samples in
each class, so the classifier learns the repeated images rather than everything near them; "near"
labels (:func:`near_miss_labels`) keep each class's near misses instead, to find what the pool has not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from side_core.config import POOL_LABELS
from side_core.errors import SideError
from side_core.neighbours import nearest_others, similarities_to_others
from side_core.registry import Registry
from side_core.stages import Sharding

NEAR_IDENTICAL_QUANTILE = 0.95
NEAR_MISS_QUANTILE = 0.80  # a near miss is at least as close to another sample as the closest 20% of pairs


@dataclass(frozen=True)
class Target:
    """What a guided generation aims at: a classifier stage, and one class or all of them spread by
    an allocation; and, optionally, the images it steers clear of."""

    classifier: str  # the classifier stage folder name (its inputs key)
    n_classes: int
    cls: int | None = None  # None: every class, spread by ``allocation``
    allocation: str = "uniform"  # a name in ALLOCATIONS
    # the class weights of an allocation that weighs the pool's evidence (:func:`allocation_weights`); None otherwise
    weights: tuple[float, ...] | None = field(default=None)
    # a pool stage (folder name) whose near-identical samples guided samples are pushed off (side_core.repulsion)
    avoid: str | None = None

    def __post_init__(self) -> None:
        if self.cls is not None and (isinstance(self.cls, bool) or not 0 <= self.cls < self.n_classes):
            raise SideError(f"Class {self.cls!r} does not exist: the surrogate classes are 0 to {self.n_classes - 1}.")
        if ALLOCATIONS.get(self.allocation).weighted != (self.weights is not None):
            weighted = [name for name, allocation in ALLOCATIONS.items() if allocation.weighted]
            raise SideError(f"Class weights go with the {' and '.join(weighted)} allocations, and only with them.")
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=np.float64)
            if w.shape != (self.n_classes,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise SideError(
                    f"Class weights {self.weights!r}: give {self.n_classes} finite weights >= 0, not all 0."
                )
            object.__setattr__(self, "weights", tuple(float(v) for v in w))

    def key(self) -> dict[str, Any]:
        """The target's part of a generation stage's inputs. The two null entries are fixed: stored
        generations were keyed with them (fields of an allocation since removed), and keep their keys;
        ``weights`` and ``avoid`` appear only when set, for the same reason."""
        key = {**asdict(self), "near_identical": None, "feature": None}
        for later in ("weights", "avoid"):
            if key[later] is None:
                del key[later]
        return key

    def classes(self, seed: int, sharding: Sharding, i: int) -> np.ndarray:
        """(sharding.size(i),) int64: the target class of each sample of shard ``i``."""
        if self.cls is not None:
            return np.full(sharding.size(i), self.cls, dtype=np.int64)
        return ALLOCATIONS.get(self.allocation).draw(self, seed, sharding, i)


@dataclass(frozen=True)
class Allocation:
    """How one allocation spreads a guided budget over the classes: ``draw(target, seed, sharding, i)``
    gives shard i's classes as a function of (seed, i) alone; ``weigh(labels, n_classes, partner, kept)``
    gives its class weights from the pool's evidence (:func:`allocation_weights`), None if it uses none."""

    draw: Callable[[Target, int, Sharding, int], np.ndarray]
    help: str
    weigh: Callable[[np.ndarray, int, np.ndarray, np.ndarray | None], np.ndarray] | None = None

    @property
    def weighted(self) -> bool:
        """Its targets carry class weights."""
        return self.weigh is not None


def _uniform(target: Target, seed: int, sharding: Sharding, i: int) -> np.ndarray:
    return np.random.default_rng([seed, i, 1]).integers(0, target.n_classes, sharding.size(i))


def _by_weights(target: Target, seed: int, sharding: Sharding, i: int) -> np.ndarray:
    p = np.asarray(target.weights) / sum(target.weights)
    rng = np.random.default_rng([seed, i, 1])
    return rng.choice(target.n_classes, size=sharding.size(i), p=p).astype(np.int64)


def _stratified(target: Target, seed: int, sharding: Sharding, i: int) -> np.ndarray:
    counts = np.zeros(target.n_classes, dtype=np.int64)
    active = np.arange(target.n_classes)
    for j in range(i):  # replay the earlier shards' choices: they are pure functions of (seed, j)
        balanced_targets(counts, active, sharding.size(j), np.random.default_rng([seed, j, 2]))
    return balanced_targets(counts, active, sharding.size(i), np.random.default_rng([seed, i, 2]))


def _flagged_weights(labels: np.ndarray, n_classes: int, partner: np.ndarray, kept: np.ndarray | None) -> np.ndarray:
    """Where the classifier's pool labels keep samples, if they are pool labels; else the flagged share."""
    return flagged_share(labels, n_classes, partner) if kept is None else kept_share(labels, n_classes, kept)


def _missing_weights(labels: np.ndarray, n_classes: int, partner: np.ndarray, kept: np.ndarray | None) -> np.ndarray:
    return missing_share(labels, n_classes, partner)


ALLOCATIONS: Registry[Allocation] = Registry("allocation")
ALLOCATIONS.register(
    "flagged",
    Allocation(
        _by_weights,
        "in proportion to each class's share of pool samples with a near-identical partner",
        _flagged_weights,
    ),
)
ALLOCATIONS.register("uniform", Allocation(_uniform, "each sample's class drawn at random (the paper's)"))
ALLOCATIONS.register("stratified", Allocation(_stratified, "rounds that aim at every class once per round"))
ALLOCATIONS.register(
    "missing",
    Allocation(_by_weights, "in proportion to each class's Good-Turing chance of a new find", _missing_weights),
)


def allocation_weights(
    allocation: str, labels: np.ndarray, n_classes: int, partner: np.ndarray, kept: np.ndarray | None
) -> tuple[float, ...] | None:
    """The class weights of ``allocation``'s targets, from the pool's evidence alone (no training data);
    None for an allocation that uses none. ``labels`` (N,): the clustering's surrogate labels of the pool;
    ``partner`` (N,): each pool sample's near-identical partner (-1: none, :func:`pool_neighbours`);
    ``kept`` (N,): the classifier's pool labels (:func:`pool_labels`) when it learns those, else None."""
    weigh = ALLOCATIONS.get(allocation).weigh
    return None if weigh is None else tuple(float(w) for w in weigh(labels, n_classes, partner, kept))


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


def flagged_share(labels: np.ndarray, n_classes: int, partner: np.ndarray) -> np.ndarray:
    """(n_classes,) float64: the share of each class's pool samples that have a near-identical partner.

    ``labels`` (N,) surrogate labels of the pool (``n_classes``: background), ``partner`` (N,) from
    :func:`pool_neighbours`. Raises when no class holds such a sample: there is no evidence to aim by."""
    labels, flagged = np.asarray(labels), np.asarray(partner) >= 0
    if not (flagged & (labels < n_classes)).any():
        raise SideError(
            f"None of the {n_classes} surrogate classes holds a pool sample with a near-identical partner "
            f"({int(flagged.sum())} flagged in all): use --allocation uniform and --labels clusters, or raise N_syn."
        )
    return kept_share(labels, n_classes, np.where(flagged, labels, n_classes))


def kept_share(labels: np.ndarray, n_classes: int, kept: np.ndarray) -> np.ndarray:
    """(n_classes,) float64: the share of each class's pool samples that the pool labels ``kept`` (N,)
    (:func:`pool_labels`) keep in it; the flagged allocation's weights."""
    labels, kept = np.asarray(labels), np.asarray(kept)
    sizes = np.bincount(labels, minlength=n_classes + 1)[:n_classes]
    counts = np.bincount(labels[(kept == labels) & (labels < n_classes)], minlength=n_classes + 1)[:n_classes]
    return counts / np.maximum(sizes, 1)


def pool_labels(
    kind: str, labels: np.ndarray, n_classes: int, partner: np.ndarray, features: np.ndarray | None = None
) -> np.ndarray:
    """(N,) int64: the labels of ``kind`` (config.POOL_LABELS) drawn from cluster ``labels`` and the pool's
    near-identical partners (and, for "near", its L2-normalised features)."""
    if kind == "core":
        return core_labels(labels, n_classes, partner)
    if kind == "unfound":
        return unfound_labels(labels, n_classes, partner)
    if kind == "near":
        if features is None:
            raise SideError("Near-miss labels need the pool's features.")
        return near_miss_labels(labels, n_classes, partner, features)
    raise SideError(f"Unknown pool labels {kind!r}: use one of {', '.join(POOL_LABELS)}.")


def missing_share(labels: np.ndarray, n_classes: int, partner: np.ndarray) -> np.ndarray:
    """(n_classes,) float64: each class's chance that its next sample turns an image it showed once into
    a repeated one, a new find for the attacker (Good-Turing: images seen exactly once hold about 2 f2 / n
    of the probability, f2 the images seen exactly twice), as (2 f2 + 1) / (n + 1) over the class's n pool
    samples and its near-identical groups of two (a group counts in its first sample's class). The + 1
    keeps every class drawable; a class whose repeats all sit in one large group, an image already found
    many times, gets little."""
    labels = np.asarray(labels, dtype=np.int64)
    groups = near_identical_groups(np.asarray(partner))
    sizes = np.bincount(labels, minlength=n_classes + 1)[:n_classes]
    pairs = np.zeros(n_classes, dtype=np.int64)
    if (groups >= 0).any():
        first = np.unique(groups[groups >= 0], return_index=True)[1]  # first sample of each group
        members = np.flatnonzero(groups >= 0)[first]
        pair = np.bincount(groups[groups >= 0])[groups[members]] == 2
        pairs = np.bincount(labels[members[pair]], minlength=n_classes + 1)[:n_classes]
    return (2 * pairs + 1) / (sizes + 1)


def core_labels(labels: np.ndarray, n_classes: int, partner: np.ndarray) -> np.ndarray:
    """(N,) int64 "core" labels: a class keeps only its pool samples with a near-identical partner in
    the pool (``partner >= 0``), the samples the model repeats; every other sample is background
    (``n_classes``), which guidance never aims at. ``labels`` (N,) are the cluster labels."""
    flagged_share(labels, n_classes, partner)  # refuses a pool with no evidence in any class
    labels = np.asarray(labels, dtype=np.int64)
    return np.where(np.asarray(partner) >= 0, labels, n_classes).astype(np.int64)


def unfound_labels(labels: np.ndarray, n_classes: int, partner: np.ndarray) -> np.ndarray:
    """(N,) int64 "unfound" labels, the complement of :func:`core_labels`: a class keeps its pool
    samples with no near-identical partner, and the samples the pool already repeats (images the attacker
    has found) become background, so that guidance toward a class also steers away from what was found."""
    labels = np.asarray(labels, dtype=np.int64)
    unfound = np.where(np.asarray(partner) >= 0, n_classes, labels).astype(np.int64)
    if not (unfound < n_classes).any():
        raise SideError(
            "Every pool sample of every class has a near-identical partner: nothing is left unfound to aim at; "
            "use --labels core or clusters."
        )
    return unfound


def near_miss_labels(labels: np.ndarray, n_classes: int, partner: np.ndarray, features: np.ndarray) -> np.ndarray:
    """(N,) int64 "near" labels: a class keeps its pool samples that nearly coincide with another, at
    least the ``NEAR_MISS_QUANTILE`` quantile of the pool's nearest-other similarities, yet have no
    near-identical partner, and whose nearest sample has none either; every other sample is background.

    A model that copies an image now and then draws near misses of it more often than copies: samples
    almost alike, not yet alike enough to count as found. Samples near an image the pool already repeats
    are left out, so guidance aims at the images the pool has not found. ``features`` (N, D): the pool's
    L2-normalised features (those ``partner`` came from)."""
    labels, partner = np.asarray(labels, dtype=np.int64), np.asarray(partner)
    nn, nearest = nearest_others(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)))
    near = (nn >= np.quantile(nn, NEAR_MISS_QUANTILE)) & (partner < 0) & (partner[nearest] < 0)
    kept = np.where(near, labels, n_classes).astype(np.int64)
    if not (kept < n_classes).any():
        raise SideError(
            "No pool sample in any class is a near miss (close to another sample, not near-identical): nothing to "
            "aim at; use --labels core or clusters."
        )
    return kept


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
