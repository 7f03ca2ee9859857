"""Surrogate class selection, near-identical groups and the allocation of guided samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from side_core.allocation import (
    Target,
    balanced_targets,
    core_labels,
    flagged_share,
    kept_share,
    missing_share,
    near_identical_groups,
    pool_labels,
    pool_neighbours,
)
from side_core.cluster import kept_clusters, l2_normalise
from side_core.config import ClusterConfig
from side_core.errors import SideError
from side_core.stages import Sharding


def spread(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    return l2_normalise(np.random.default_rng(seed).normal(size=(n, d)))


def test_the_most_cohesive_fraction_is_kept_most_cohesive_first():
    cohesion = np.array([0.5, 0.9, 0.7, 0.95, 0.6, 0.8], dtype=np.float32)
    sizes = np.array([5, 5, 5, 5, 5, 5])
    assert kept_clusters(cohesion, sizes, ClusterConfig(k=6, keep_top=0.5)).tolist() == [3, 1, 5]
    # the same fraction means the same on a feature whose cosines all sit near 1
    shifted = 0.99 + 0.01 * cohesion
    assert kept_clusters(shifted, sizes, ClusterConfig(k=6, keep_top=0.5)).tolist() == [3, 1, 5]
    # the paper's absolute rule
    assert kept_clusters(cohesion, sizes, ClusterConfig(k=6, tau=0.75)).tolist() == [3, 1, 5]
    # empty clusters never become classes, and at least two are kept
    empty = np.array([5, 0, 5, 0, 5, 5])
    assert kept_clusters(cohesion, empty, ClusterConfig(k=6, keep_top=0.01)).tolist() == [5, 2]
    with pytest.raises(SideError, match="lower tau"):
        kept_clusters(cohesion, sizes, ClusterConfig(k=6, tau=0.99))


def test_near_identical_samples_form_a_group():
    z = spread(40)
    # samples 3, 17 and 29 are one image drawn three times (tiny noise); 8 and 30 another
    base = z[3].copy()
    for i in (17, 29):
        z[i] = l2_normalise((base + 1e-3 * np.random.default_rng(i).normal(size=base.shape))[None])[0]
    z[30] = l2_normalise((z[8] + 1e-3 * np.random.default_rng(1).normal(size=base.shape))[None])[0]
    nn, threshold, partner = pool_neighbours(z, quantile=0.88)  # 12% of the pool are repeats
    assert nn.shape == (40,) and np.sort(nn)[34] < threshold <= np.sort(nn)[35]
    assert set(np.flatnonzero(partner >= 0)) == {3, 8, 17, 29, 30}
    groups = near_identical_groups(partner)
    assert groups[3] == groups[17] == groups[29] != groups[8] == groups[30]
    assert (groups[partner < 0] == -1).all() and groups.max() == 1


def test_stratified_rounds_aim_at_every_class_before_any_twice():
    counts = np.zeros(5, dtype=np.int64)
    first = balanced_targets(counts, np.arange(5), 7, np.random.default_rng(0))
    assert sorted(first[:5].tolist()) == [0, 1, 2, 3, 4]
    second = balanced_targets(counts, np.arange(5), 3, np.random.default_rng(1))
    # the next round starts with the classes the first round's tail left behind
    assert len(set(first[5:]) | set(second)) == 5 and counts.tolist() == [2, 2, 2, 2, 2]


def test_targets_are_a_function_of_seed_and_shard():
    """Any process can make any shard: a shard's classes depend on (seed, shard) alone, and the
    stratified rounds replay the shards before it to continue them."""
    sharding = Sharding(16, 8)
    for allocation in ("uniform", "stratified"):
        target = Target("classifier-x", 4, allocation=allocation)
        assert np.array_equal(target.classes(0, sharding, 1), target.classes(0, sharding, 1))
        assert target.classes(0, sharding, 1).shape == (8,)
    stratified = Target("c", 4, allocation="stratified")
    both = np.concatenate([stratified.classes(0, sharding, i) for i in (0, 1)])
    assert np.bincount(both, minlength=4).tolist() == [4, 4, 4, 4]
    assert Target("c", 4, cls=2).classes(0, Sharding(5, 4), 1).tolist() == [2]


def test_a_removed_allocation_is_refused():
    with pytest.raises(SideError, match="Unknown allocation 'adaptive'"):
        Target("c", 4, allocation="adaptive")


def test_filter_reports_the_pool_samples_that_repeat_a_training_image(tiny_model_dir, tiny_data_dir, tmp_path):
    """A pool in which two training images are each drawn twice: Filter flags those four samples
    and reports the two images as extracted; an image drawn once is not flagged."""
    from side_core.data import load_training_set
    from side_core.kinds.clusters import NearIdentical
    from side_core.kinds.features import Features
    from side_core.kinds.generation import Generation
    from side_core.kinds.scoring import PoolFilter
    from side_core.models import load_model
    from side_core.run import Run

    model = load_model(tiny_model_dir, device="cpu")
    run = Run(tmp_path / "store", model, load_training_set(tiny_data_dir, 1, 8))
    train = run.data.images
    noise = torch.rand(36, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pool = torch.cat([train[[2, 2, 5, 5, 7]], noise])  # images 2 and 5 twice, image 7 once
    synthetic = run.stage(Generation, {"n": len(pool), "sample": {"batch_size": len(pool)}, "test": "pool"})
    synthetic.stage.begin()
    synthetic.stage.write_shard(0, {"images": pool})
    synthetic.stage.finish({"n": len(pool), "n_shards": 1, "seconds": 0.0})
    features = Features.make(run, synthetic, "pixels")
    found = PoolFilter.make(run, NearIdentical.make(run, features, quantile=0.92)).summary()
    assert found["flagged"] == 4 and found["groups"] == 2 and found["precision_high"] == 100.0
    assert found["extracted"] == [2, 5]
    assert found["curve"][1] == 1 and found["curve"][3] == 2  # an image counts once both its draws exist
    assert found["plain_curve"][-1] >= 3  # read as plain samples, the pool also holds image 7


def test_core_labels_keep_only_the_flagged_members_of_each_class():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3])  # 3 classes, 3 is background
    partner = np.array([1, 0, -1, -1, -1, 6, 5, 8, 7])  # pairs in class 0, class 2, and the background
    core = core_labels(labels, 3, partner)
    assert core.tolist() == [0, 0, 3, 3, 3, 2, 2, 3, 3]
    kept = core < 3
    assert (core[kept] == labels[kept]).all() and (partner[kept] >= 0).all()  # a subset of the clusters
    with pytest.raises(SideError, match="near-identical partner"):
        core_labels(labels, 3, np.where(labels == 3, partner, -1))  # only the background repeats itself


def test_flagged_allocation_aims_only_where_the_pool_repeats_itself():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 3, 3])
    partner = np.array([1, 0, -1, -1, -1, -1, 7, 6, 9, 8])
    share = flagged_share(labels, 3, partner)
    assert share.tolist() == [0.5, 0.0, 1.0]
    target = Target("c", 3, allocation="flagged", weights=tuple(share))
    sharding = Sharding(600, 200)
    drawn = np.concatenate([target.classes(7, sharding, i) for i in range(3)])
    assert not (drawn == 1).any()  # no flagged member: never a target
    assert 0.25 < (drawn == 0).mean() < 0.42  # 0.5 / 1.5 = 1/3 expected
    assert np.array_equal(target.classes(7, sharding, 2), target.classes(7, sharding, 2))
    assert not np.array_equal(target.classes(7, sharding, 2), target.classes(8, sharding, 2))
    assert target.key()["weights"] == (0.5, 0.0, 1.0)
    assert "weights" not in Target("c", 3).key()  # stored uniform generations keep their keys
    with pytest.raises(SideError, match="weights"):
        Target("c", 3, allocation="flagged")


def test_missing_allocation_favours_classes_about_to_find_over_classes_that_found():
    """Class 0 shows one image eight times (found); class 1 two pairs (images seen twice, their
    neighbours about to be found); class 2 no repeat at all."""
    labels = np.repeat([0, 1, 2], 10)
    partner = np.full(30, -1)
    partner[:8] = np.r_[1, np.zeros(7, dtype=int)]  # one group of eight in class 0
    partner[[10, 11, 12, 13]] = [11, 10, 13, 12]  # two pairs in class 1
    share = missing_share(labels, 3, partner)
    assert share.tolist() == [1 / 11, 5 / 11, 1 / 11]
    target = Target("c", 3, allocation="missing", weights=tuple(share))
    drawn = target.classes(0, Sharding(700, 700), 0)
    assert 0.6 < (drawn == 1).mean() < 0.8 and (drawn == 0).any()  # 5/7 expected; no class left out
    assert target.key()["allocation"] == "missing"


def test_kept_share_weights_classes_by_what_their_labels_keep():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 3, 3])
    partner = np.array([1, 0, -1, -1, -1, -1, 7, 6, 9, 8])
    core = pool_labels("core", labels, 3, partner)
    assert kept_share(labels, 3, core).tolist() == flagged_share(labels, 3, partner).tolist()  # the same weights
    unfound = pool_labels("unfound", labels, 3, partner)
    assert kept_share(labels, 3, unfound).tolist() == [0.5, 1.0, 0.0]  # aims away from what the pool repeats
    with pytest.raises(SideError, match="features"):
        pool_labels("near", labels, 3, partner)
