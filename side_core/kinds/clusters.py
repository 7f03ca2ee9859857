"""What a generation's features say about its samples: the surrogate classes (:class:`Clusters`) and
the near-identical pairs among them (:class:`NearIdentical`)."""

from __future__ import annotations

import numpy as np

from side_core.allocation import NEAR_IDENTICAL_QUANTILE, pool_labels, pool_neighbours
from side_core.cluster import Clustering, cluster, l2_normalise, silhouette
from side_core.config import ClusterConfig
from side_core.kinds.features import Features
from side_core.repulsion import Repel, found_references, sparse_repellency
from side_core.run import Run, Stored
from side_core.store import finite_or_none, write_array

LABELS = "labels.npy"


class Clusters(Stored):
    """The surrogate classes of a generation's features (side_core.cluster). Files: one ``<name>.npy``
    per array of :class:`~side_core.cluster.Clustering` (``labels.npy``: each sample's label)."""

    KIND = "cluster"

    @classmethod
    def make(cls, run: Run, features: Features, config: ClusterConfig) -> Clusters:
        clusters = run.stage(cls, {"features": features.name, **config.to_dict()})

        def make(stage) -> dict:
            f = features.vectors()
            c = cluster(f, config)
            for name, array in c.to_arrays().items():
                write_array(stage.file(f"{name}.npy"), array)
            return {
                "n_classes": c.n_classes,
                "background": c.background,
                "in_classes": int((c.labels < c.n_classes).sum()),
                "silhouette": finite_or_none(round(silhouette(f, c.kmeans_labels, config.seed), 4)),
            }

        return run.build(clusters, make)

    @property
    def features(self) -> Features:
        return self.link("features", Features)

    @property
    def n_classes(self) -> int:
        return self.summary()["n_classes"]

    def clustering(self) -> Clustering:
        return Clustering(**{k: self.array(f"{k}.npy") for k in Clustering.ARRAYS}, unkept=self.inputs["unkept"])

    def labels(self) -> np.ndarray:
        """(N,) int64: each clustered sample's surrogate label (``n_classes``: background)."""
        return self.array(LABELS)

    def pool_labels(self, kind: str, near_identical: NearIdentical) -> np.ndarray:
        """(N,) int64: the labels of ``kind`` (config.POOL_LABELS; side_core.allocation.pool_labels)
        drawn from these classes and the near-identical pairs ``near_identical`` of the same samples; the features
        are read only for the near-miss labels, which need them."""
        vectors = l2_normalise(self.features.vectors()) if kind == "near" else None
        return pool_labels(kind, self.labels(), self.n_classes, near_identical.partner(), vectors)


class NearIdentical(Stored):
    """Near-identical pairs among a generation's samples, from their features (side_core.allocation):
    each sample's nearest-other similarity and first near-identical partner, and the threshold.
    Files: ``nn_similarity.npy``, ``partner.npy``. (Its folders are named ``pool-``: stored ones keep
    their names.)"""

    KIND = "pool"

    @classmethod
    def make(cls, run: Run, features: Features, quantile: float = NEAR_IDENTICAL_QUANTILE) -> NearIdentical:
        near_identical = run.stage(cls, {"features": features.name, "quantile": quantile})

        def make(stage) -> dict:
            nn, threshold, partner = pool_neighbours(l2_normalise(features.vectors()), quantile)
            write_array(stage.file("nn_similarity.npy"), nn)
            write_array(stage.file("partner.npy"), partner)
            return {"near_identical": round(threshold, 6), "flagged": int((partner >= 0).sum())}

        return run.build(near_identical, make)

    @property
    def features(self) -> Features:
        return self.link("features", Features)

    def partner(self) -> np.ndarray:
        """(N,) int64: each sample's first near-identical partner, or -1."""
        return self.array("partner.npy")

    def repulsion(self) -> Repel:
        """Sparse repellency from these near-identical samples (side_core.repulsion)."""
        references, radius = found_references(self.features.generation.images(), self.partner())
        model = self.run.model  # on the sampler's device and dtype once, not at every denoising step
        return sparse_repellency(references.to(model.device, model.unet.dtype), radius)
