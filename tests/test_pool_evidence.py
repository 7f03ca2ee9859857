"""The attacker-side ranking of surrogate classes (side_core.cluster.rank_by_pool): from the pool's
clusters and near-identical partners alone, the class whose samples repeat most comes first."""

import numpy as np

from side_core.cluster import Clustering, rank_by_pool


def clustering(labels: list[int], kept: list[int], cohesion: list[float]) -> Clustering:
    labels = np.asarray(labels, dtype=np.int64)
    k = len(cohesion)
    return Clustering(
        kmeans_labels=labels.copy(),
        centroids=np.eye(k, dtype=np.float32),
        cohesion=np.asarray(cohesion, dtype=np.float32),
        sizes=np.bincount(labels, minlength=k),
        kept=np.asarray(kept, dtype=np.int64),
        labels=labels,
    )


def test_flagged_share_first_then_cohesion():
    # classes 0, 1, 2 are clusters 2, 0, 1 (cohesion 0.7, 0.5, 0.9); label 3 is background
    c = clustering([0, 0, 0, 0, 1, 1, 2, 2, 3, 3], kept=[2, 0, 1], cohesion=[0.5, 0.9, 0.7])
    partner = np.array([4, -1, -1, -1, 0, 9, 7, 6, 2, 5])  # classes 1, 2 all flagged, class 0 a quarter
    ranked = rank_by_pool(c, partner)
    assert [e.cls for e in ranked] == [2, 1, 0]
    by_cls = {e.cls: e for e in ranked}
    assert (by_cls[0].size, by_cls[0].flagged, by_cls[0].flagged_share) == (4, 1, 0.25)
    assert (by_cls[1].flagged, by_cls[2].flagged) == (2, 2)
    assert by_cls[0].cohesion == np.float32(0.7) and by_cls[1].cohesion == np.float32(0.5)
    # background samples with partners count for no class
    assert sum(e.flagged for e in ranked) == 5


def test_no_flagged_sample_ranks_by_cohesion():
    c = clustering([0, 1, 1, 2], kept=[0, 1, 2], cohesion=[0.2, 0.8, 0.5])
    ranked = rank_by_pool(c, np.full(4, -1))
    assert [e.cls for e in ranked] == [1, 2, 0]
    assert all(e.flagged == 0 for e in ranked)
