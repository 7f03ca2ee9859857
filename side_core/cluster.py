"""K-means clustering of sample features into surrogate classes, the cohesion filter, and 2-D maps.

Cohesion of cluster k: the mean cosine similarity of its members' (L2-normalised) features to the
normalised centroid. Clusters with cohesion >= tau are kept: they are the surrogate classes 0..n-1.
Samples of the dropped clusters are either relabelled with their nearest kept centroid (SIDE.md
step 4, ``unkept="nearest"``) or given one extra background label n that is never a target
(``unkept="background"``). With "nearest", each class also absorbs the loose samples around it, so
p(class | x) stays broad and guidance toward it yields them too; the background label keeps the
classes as tight as the filter made them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from side_core.config import ClusterConfig
from side_core.errors import SideError

log = logging.getLogger(__name__)

UNKEPT = ("background", "nearest")  # what happens to samples of clusters below tau


@dataclass
class Clustering:
    kmeans_labels: np.ndarray  # (N,) int64, K-means cluster of each sample, in [0, K)
    centroids: np.ndarray  # (K, D) float32, L2-normalised
    cohesion: np.ndarray  # (K,) float32 mean member-to-centroid cosine
    sizes: np.ndarray  # (K,) int64 members per K-means cluster
    kept: np.ndarray  # (K_kept,) int64 ids of the clusters with cohesion >= tau
    labels: np.ndarray  # (N,) int64 surrogate class in [0, K_kept), or K_kept for background samples

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
        return {k: getattr(self, k) for k in ("kmeans_labels", "centroids", "cohesion", "sizes", "kept", "labels")}


def l2_normalise(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def validate(config: ClusterConfig, n_samples: int) -> None:
    if n_samples < 2:
        raise SideError(f"Clustering needs at least 2 samples (got {n_samples}): generate more.")
    if not 2 <= config.k <= n_samples:
        raise SideError(
            f"K = {config.k} clusters for {n_samples} samples: K must be between 2 and the number of "
            "samples; lower K or generate more samples."
        )
    if not 0.0 <= config.tau <= 1.0:
        raise SideError(f"tau = {config.tau} is outside [0, 1]: cohesion is a cosine in that range.")
    if config.unkept not in UNKEPT:
        raise SideError(f"Unknown unkept = '{config.unkept}': use one of {', '.join(UNKEPT)}.")


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
    kept = np.flatnonzero((cohesion >= config.tau) & (sizes > 0)).astype(np.int64)
    if len(kept) < 2:
        raise SideError(
            f"Only {len(kept)} of {config.k} clusters have cohesion >= tau = {config.tau} "
            f"(cohesion ranges {cohesion.min():.2f}-{cohesion.max():.2f}): lower tau so that at least two "
            "clusters remain."
        )
    if config.unkept == "nearest":
        labels = np.argmax(z @ centroids[kept].T, axis=1).astype(np.int64)
    else:
        class_of_cluster = np.full(config.k, len(kept), dtype=np.int64)
        class_of_cluster[kept] = np.arange(len(kept))
        labels = class_of_cluster[kmeans_labels]
    log.info(
        "K-means K=%d: %d clusters kept at tau=%.2f (%d of %d samples in them)",
        config.k,
        len(kept),
        config.tau,
        int(np.isin(kmeans_labels, kept).sum()),
        len(z),
    )
    return Clustering(kmeans_labels, centroids, cohesion, sizes.astype(np.int64), kept, labels)


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
