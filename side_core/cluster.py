"""K-means clustering of sample features into surrogate classes, the cohesion filter, and 2-D maps.

Cohesion of cluster k: the mean cosine similarity of its members' (L2-normalised) features to the
normalised centroid. The most cohesive fraction ``keep_top`` of the clusters are kept (or, with the
paper's rule, those with cohesion >= tau): they are the surrogate classes 0..n-1, most cohesive first.
Samples of the dropped clusters are either relabelled with their nearest kept centroid (the
paper's rule, ``unkept="nearest"``) or given one extra background label n that is never a target
(``unkept="background"``). With "nearest", each class also absorbs the loose samples around it, so
p(class | x) stays broad and guidance toward it yields them too; the background label keeps the
classes as tight as the filter made them.

The classes are ranked as targets two ways: by the copies the pool's samples make (:func:`rank_classes`,
which reads the training set: for inspection) and by the pool's own evidence (:func:`rank_by_pool`,
which reads none: what an attacker can do).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from side_core.allocation import flagged_share
from side_core.config import ClusterConfig
from side_core.errors import SideError
from side_core.metrics import BAND_NAMES, Bands, in_band

log = logging.getLogger(__name__)


@dataclass
class Clustering:
    """A fitted clustering: its K-means clusters, the kept ones (the surrogate classes), each sample's
    label, and the rule that labels any later sample (:meth:`predict`)."""

    ARRAYS: ClassVar[tuple[str, ...]] = ("kmeans_labels", "centroids", "cohesion", "sizes", "kept", "labels")

    kmeans_labels: np.ndarray  # (N,) int64, K-means cluster of each sample, in [0, K)
    centroids: np.ndarray  # (K, D) float32, L2-normalised
    cohesion: np.ndarray  # (K,) float32 mean member-to-centroid cosine
    sizes: np.ndarray  # (K,) int64 members per K-means cluster
    kept: np.ndarray  # (K_kept,) int64 ids of the kept clusters, most cohesive first
    labels: np.ndarray  # (N,) int64 surrogate class in [0, K_kept), or K_kept for background samples
    unkept: str = "background"  # what the samples of dropped clusters are labelled (ClusterConfig.unkept)

    @property
    def n_classes(self) -> int:
        """Surrogate classes: the targets guidance can aim at."""
        return len(self.kept)

    @property
    def background(self) -> bool:
        """Whether some samples carry the extra background label (``n_classes``)."""
        return bool((self.labels == self.n_classes).any())

    @property
    def n_labels(self) -> int:
        """Outputs the classifier needs: the surrogate classes plus background, if any."""
        return self.n_classes + int(self.background)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.ARRAYS}

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(N,) int64: the surrogate label of each of these samples' (N, D) features, by the rule that
        labelled the clustered ones (:func:`surrogate_labels`; ``n_classes``: background)."""
        return surrogate_labels(features, self.centroids, self.cohesion, self.kept, self.unkept)


def l2_normalise(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def validate(config: ClusterConfig, n_samples: int) -> None:
    """What a ClusterConfig cannot check by itself: K against the number of samples."""
    if n_samples < 3:
        raise SideError(f"Clustering needs at least 3 samples (got {n_samples}): generate more.")
    if config.k >= n_samples:
        raise SideError(
            f"K = {config.k} clusters for {n_samples} samples: K must be smaller than the number of samples; "
            "lower K or generate more samples."
        )


def cluster(features: np.ndarray, config: ClusterConfig) -> Clustering:
    """Cluster (N, D) features into K groups and derive surrogate labels."""
    from sklearn.cluster import KMeans

    validate(config, len(features))
    z = l2_normalise(features)
    kmeans = KMeans(n_clusters=config.k, n_init=4, random_state=config.seed).fit(z)
    kmeans_labels = kmeans.labels_.astype(np.int64)
    centroids = l2_normalise(kmeans.cluster_centers_)
    member_cos = np.einsum("nd,nd->n", z, centroids[kmeans_labels])
    sizes = np.bincount(kmeans_labels, minlength=config.k)
    cohesion = (np.bincount(kmeans_labels, weights=member_cos, minlength=config.k) / np.maximum(sizes, 1)).astype(
        np.float32
    )
    kept = kept_clusters(cohesion, sizes, config)
    labels = surrogate_labels(z, centroids, cohesion, kept, config.unkept, kmeans_labels)
    log.info(
        "K-means K=%d: %d clusters kept, cohesion >= %.4f (%d of %d samples in them)",
        config.k,
        len(kept),
        float(cohesion[kept].min()),
        int(np.isin(kmeans_labels, kept).sum()),
        len(z),
    )
    return Clustering(kmeans_labels, centroids, cohesion, sizes.astype(np.int64), kept, labels, config.unkept)


def surrogate_labels(
    features: np.ndarray,
    centroids: np.ndarray,
    cohesion: np.ndarray,
    kept: np.ndarray,
    unkept: str,
    kmeans_labels: np.ndarray | None = None,
) -> np.ndarray:
    """(N,) int64 surrogate label of each sample: the one rule for the clustered pool and for any later
    sample (e.g. a guided one, to see whether it landed in the class it was aimed at).

    ``features`` (N, D); ``centroids``, ``cohesion``, ``kept`` are a :class:`Clustering`'s. With
    ``unkept="nearest"`` the label is the nearest kept centroid (cosine). Otherwise it is the class of
    the sample's K-means cluster, or the background label ``len(kept)`` if that cluster was dropped;
    ``kmeans_labels`` are the clusters when known (the pool K-means was fitted on), else K-means' own
    rule gives them: the nearest centre in Euclidean distance, where centre k, the mean of its
    members' unit features, is ``cohesion[k] * centroids[k]`` (its length is the cohesion)."""
    z = l2_normalise(features)
    if unkept == "nearest":
        return np.argmax(z @ centroids[kept].T, axis=1).astype(np.int64)
    if kmeans_labels is None:
        # argmin_k |z - r_k c_k|^2 = argmax_k (2 r_k z.c_k - r_k^2) for unit z and unit c_k
        kmeans_labels = np.argmax(2 * cohesion * (z @ centroids.T) - cohesion**2, axis=1)
    class_of_cluster = np.full(len(centroids), len(kept), dtype=np.int64)
    class_of_cluster[kept] = np.arange(len(kept))
    return class_of_cluster[kmeans_labels]


def shuffled_labels(labels: np.ndarray, seed: int) -> np.ndarray:
    """(N,) the same labels over the same samples, permuted by a permutation drawn from ``seed``: the
    shuffled-label control keeps every class's size and loses what the clusters mean."""
    return np.random.default_rng(seed).permutation(np.asarray(labels))


def kept_clusters(cohesion: np.ndarray, sizes: np.ndarray, config: ClusterConfig) -> np.ndarray:
    """Ids of the clusters that become surrogate classes, most cohesive first (ties: lower id).

    Default: the ``keep_top`` fraction of the non-empty clusters (at least two). Cohesion is a cosine
    whose typical values depend on the feature and the data, so a fraction means the same on any
    model; ``tau`` (the paper's rule) keeps every cluster at or above an absolute cohesion."""
    order = np.lexsort((np.arange(len(cohesion)), -cohesion))
    order = order[sizes[order] > 0]
    if config.tau is None:
        kept = order[: max(2, round(config.keep_top * len(order)))]
    else:
        kept = order[cohesion[order] >= config.tau]
    if len(kept) < 2:
        raise SideError(
            f"Only {len(kept)} of {config.k} clusters have cohesion >= tau = {config.tau} "
            f"(cohesion ranges {cohesion.min():.2f}-{cohesion.max():.2f}): lower tau, or leave it unset to keep "
            f"the most cohesive fraction (keep_top = {config.keep_top})."
        )
    return kept.astype(np.int64)


def silhouette(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """Cosine silhouette of a labelling (on at most 2,000 samples): how separated clusters are."""
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2:
        return float("nan")
    n = min(len(features), 2000)
    return float(silhouette_score(l2_normalise(features), labels, metric="cosine", sample_size=n, random_state=seed))


def map_2d(features: np.ndarray, method: str = "umap", seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2) float32 map for display: UMAP (cosine), or PCA as an instant fallback."""
    z = l2_normalise(features)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(z).astype(np.float32)
    if method == "umap":
        import umap  # imported late: about 30 s cold

        n_neighbors = max(2, min(15, len(z) - 1))
        reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, metric="cosine", random_state=seed, n_jobs=1)
        return reducer.fit_transform(z).astype(np.float32)
    raise SideError(f"Unknown map method '{method}': use 'umap' or 'pca'.")


def band_counts(labels: np.ndarray, max_similarity: np.ndarray, bands: Bands, n_labels: int) -> np.ndarray:
    """(n_labels, 3) int64: for each label, how many of its samples have their nearest training image
    in the low, mid and high band (columns in BAND_NAMES order).

    ``labels`` (N,) int in [0, n_labels) and ``max_similarity`` (N,) float are per sample: K-means
    clusters of the synthetic samples, or the target classes of a guided generation."""
    labels = np.asarray(labels)
    max_similarity = np.asarray(max_similarity)
    return np.stack(
        [np.bincount(labels[in_band(max_similarity, getattr(bands, b))], minlength=n_labels) for b in BAND_NAMES],
        axis=1,
    ).astype(np.int64)


def representatives(features: np.ndarray, clustering: Clustering, per_class: int = 4) -> list[np.ndarray]:
    """For each surrogate class, the ids of its ``per_class`` members closest to its centroid (most
    cosine-similar first): what the class looks like. ``features`` (N, D) are the clustered ones."""
    z = l2_normalise(features)
    cos = z @ clustering.centroids[clustering.kept].T  # (N, n_classes)
    out = []
    for k in range(clustering.n_classes):
        members = np.flatnonzero(clustering.labels == k)
        out.append(members[np.argsort(-cos[members, k], kind="stable")][:per_class])
    return out


@dataclass(frozen=True)
class ClassEvidence:
    """How well guidance toward one surrogate class can be expected to extract, from the stored plain
    samples alone: no guided sampling needed."""

    cls: int  # surrogate class id
    cluster: int  # its K-means cluster
    size: int  # member samples
    cohesion: float  # mean member-to-centroid cosine
    copy_rate: float  # fraction of members whose nearest training image is in the high band
    faces: int  # distinct training images those member copies are of


def rank_classes(
    clustering: Clustering, max_similarity: np.ndarray, nearest_index: np.ndarray, bands: Bands
) -> list[ClassEvidence]:
    """The surrogate classes, the most promising target first.

    Guidance pulls samples toward a class's members, so the share of members that already are copies
    is the class's expected copy rate. On the bundled model (lambda 4, 8 samples, seed 0) the two top
    classes (98% of members copies) gave 8 copies of 8 and the lowest (6%) 5, against 4 unguided; over
    the default comparison's 256 SIDE samples the guided copy rates follow this ranking (Spearman 0.55
    over 46 classes; the ten top classes 94% copies, the ten lowest 45%). Ties go to the tighter
    cluster. ``max_similarity`` and ``nearest_index`` (N,) are the synthetic samples' nearest training
    similarity and index."""
    nearest_index = np.asarray(nearest_index)
    copies = band_counts(clustering.labels, max_similarity, bands, clustering.n_labels)[:, BAND_NAMES.index("high")]
    is_copy = in_band(np.asarray(max_similarity), bands.high)
    evidence = []
    for cls, cluster_id in enumerate(clustering.kept):
        members = clustering.labels == cls
        size = int(members.sum())
        evidence.append(
            ClassEvidence(
                cls=cls,
                cluster=int(cluster_id),
                size=size,
                cohesion=float(clustering.cohesion[cluster_id]),
                copy_rate=float(copies[cls]) / max(size, 1),
                faces=len(np.unique(nearest_index[members & is_copy])),
            )
        )
    return sorted(evidence, key=lambda e: (-e.copy_rate, -e.cohesion, e.cls))


@dataclass(frozen=True)
class PoolEvidence:
    """What an attacker knows of one surrogate class from the pool of plain samples alone, with no
    training image: a model draws what it memorized again and again, so a class whose pool samples
    have near-identical partners in the pool is where guidance can be expected to copy."""

    cls: int  # surrogate class id
    size: int  # pool samples in the class
    cohesion: float  # mean member-to-centroid cosine of its cluster
    flagged: int  # of them with a near-identical partner in the pool (the Filter signal)

    @property
    def flagged_share(self) -> float:
        return self.flagged / max(self.size, 1)


def rank_by_pool(clustering: Clustering, partner: np.ndarray) -> list[PoolEvidence]:
    """The surrogate classes, the most promising target first, by evidence that reads no training
    image: the share of a class's pool samples with a near-identical partner (the flagged allocation's
    weight, side_core.allocation), ties by cohesion. ``clustering``: the pool's; ``partner`` (N,)
    int64 from the pool's near-identical pairs (-1: none)."""
    n_classes = clustering.n_classes
    sizes = np.bincount(clustering.labels, minlength=n_classes + 1)[:n_classes]
    try:
        share = flagged_share(clustering.labels, n_classes, partner)
    except SideError:  # no class holds a flagged sample: cohesion alone ranks
        share = np.zeros(n_classes)
    evidence = [
        PoolEvidence(
            cls=cls,
            size=int(sizes[cls]),
            cohesion=float(clustering.cohesion[cluster_id]),
            flagged=int(round(share[cls] * sizes[cls])),
        )
        for cls, cluster_id in enumerate(clustering.kept)
    ]
    return sorted(evidence, key=lambda e: (-e.flagged_share, -e.cohesion, e.cls))
