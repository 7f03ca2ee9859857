"""Surrogate class selection, near-identical groups and the allocation of guided samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from side_core.allocation import balanced_targets, near_identical_groups, pool_neighbours, retired_classes
from side_core.cluster import kept_clusters, l2_normalise
from side_core.config import ClusterConfig
from side_core.errors import SideError


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


def test_a_converged_class_is_retired_and_so_is_one_landing_on_its_image():
    z = spread(6)
    image = z[0]
    z[1] = image  # class 0 drew the same image twice: converged
    z[4] = image  # class 2 landed on class 0's image: already found
    targets = np.array([0, 0, 1, 1, 2, 3])
    retired = retired_classes(z, targets, threshold=0.99, n_classes=4)
    assert retired.tolist() == [True, False, True, False]


def test_adaptive_generation_stops_aiming_at_a_retired_class(tiny_model_dir, tmp_path):
    """Shard 1's targets come from shard 0's samples: a class whose two samples coincide there is no
    longer aimed at; the others are, in stratified rounds."""
    from side_core.models import load_model
    from side_core.pipeline import Run, Target

    run = Run(tmp_path / "store", load_model(tiny_model_dir, device="cpu"))
    target = Target("classifier-x", 4, allocation="adaptive", near_identical=0.999, feature="pixels")
    stage = run.stage("generate", {"test": "adaptive"})
    stage.begin()
    images = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    images[5] = images[1]  # two samples of class 1 coincide
    stage.write_shard(0, {"images": images, "targets": torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])})
    aimed = run.aim(stage, 1, n=16, seed=0, batch=8, target=target)
    assert 1 not in aimed and sorted(set(aimed.tolist())) == [0, 2, 3]
    assert np.bincount(aimed, minlength=4)[[0, 2, 3]].tolist() in ([3, 3, 2], [3, 2, 3], [2, 3, 3])
    # uniform and stratified targets are functions of (seed, shard) alone: any process can make any shard
    for allocation in ("uniform", "stratified"):
        plain = Target("classifier-x", 4, allocation=allocation)
        again = run.aim(stage, 1, n=16, seed=0, batch=8, target=plain)
        assert np.array_equal(again, run.aim(stage, 1, n=16, seed=0, batch=8, target=plain))
    stratified = [
        run.aim(stage, i, n=16, seed=0, batch=8, target=Target("c", 4, allocation="stratified")) for i in (0, 1)
    ]
    assert np.bincount(np.concatenate(stratified), minlength=4).tolist() == [4, 4, 4, 4]


def test_filter_reports_the_pool_samples_that_repeat_a_training_image(tiny_model_dir, tiny_data_dir, tmp_path):
    """A pool in which two training images are each drawn twice: Filter flags those four samples
    and reports the two images as extracted; an image drawn once is not flagged."""
    from side_core.data import load_training_set
    from side_core.models import load_model
    from side_core.pipeline import Run, Surrogate, filter_baseline

    model = load_model(tiny_model_dir, device="cpu")
    run = Run(tmp_path / "store", model, load_training_set(tiny_data_dir, 1, 8))
    train = run.data.images
    noise = torch.rand(36, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pool = torch.cat([train[[2, 2, 5, 5, 7]], noise])  # images 2 and 5 twice, image 7 once
    synthetic = run.stage("generate", {"n": len(pool), "sample": {"batch_size": len(pool)}, "test": "pool"})
    synthetic.begin()
    synthetic.write_shard(0, {"images": pool})
    synthetic.finish({"n": len(pool), "n_shards": 1, "seconds": 0.0})
    features = run.features(synthetic, "pixels")
    found = filter_baseline(run, Surrogate(synthetic, features, None, run.pool(features, quantile=0.92), {}))
    assert found["flagged"] == 4 and found["groups"] == 2 and found["precision_high"] == 100.0
    assert found["extracted"] == [2, 5]
    assert found["curve"][1] == 1 and found["curve"][3] == 2  # an image counts once both its draws exist
    assert found["plain_curve"][-1] >= 3  # read as plain samples, the pool also holds image 7
