"""Richness estimates (how many images sampling reaches) and the labels that steer away from what the
pool already found."""

from __future__ import annotations

import numpy as np
import pytest

from side_core.allocation import core_labels, near_miss_labels, unfound_labels
from side_core.cluster import l2_normalise
from side_core.errors import SideError
from side_core.richness import attacker_reach, chao1, frequency_counts, missing_mass, scorer_reach


def draws(p: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n,) species drawn with probabilities p (the last entry: 'no copy', returned as -1)."""
    picked = np.random.default_rng(seed).choice(len(p), size=n, p=p)
    return np.where(picked == len(p) - 1, -1, picked)


def test_chao1_and_missing_mass_follow_their_formulas():
    counts = np.array([5, 3, 2, 2, 1, 1, 1, 0])
    assert frequency_counts(counts)[:4].tolist() == [0, 3, 2, 1]
    assert chao1(counts) == pytest.approx(7 + 3 * 3 / (2 * 2))
    assert missing_mass(counts) == pytest.approx(3 / 15)
    assert chao1(np.array([1, 1, 3])) == pytest.approx(3 + 2 * 1 / 2)  # no doubletons: the bias-corrected form
    assert missing_mass(np.zeros(4, dtype=int)) == 0.0


def test_scorer_chao1_reaches_past_what_was_seen_toward_the_truth():
    """200 images of unequal memorization strength, a sample copies one 10% of the time: a few thousand
    samples see fewer images than exist, and Chao1 lands closer to the 200 than what was seen."""
    rng = np.random.default_rng(0)
    strength = rng.lognormal(0, 1, size=200)
    p = np.append(0.1 * strength / strength.sum(), 0.9)
    copied = draws(p, 4000, seed=1)
    reach = scorer_reach(copied, len(copied))
    assert reach.found == len(np.unique(copied[copied >= 0])) < 200
    assert abs(reach.estimate - 200) < abs(reach.found - 200)
    assert reach.new_per_1000 == pytest.approx(1000 * (np.bincount(copied[copied >= 0]) == 1).sum() / 4000)


def test_the_attacker_counts_images_from_three_draws_and_chance_pairs_do_not_move_it():
    """Groups are what near-identical samples show: every image drawn twice or more, plus pairs of
    unrelated samples that met by chance. The attacker counts an image once three samples land on it,
    so the chance pairs change nothing; its estimate adds the images just below that edge."""
    rng = np.random.default_rng(3)
    strength = rng.lognormal(0, 0.7, size=150)
    p = np.append(0.15 * strength / strength.sum(), 0.85)
    copied = draws(p, 3000, seed=4)
    counts = np.bincount(copied[copied >= 0], minlength=150)
    groups = np.where(counts[np.maximum(copied, 0)] >= 2, copied, -1)
    with_chance = groups.copy()
    with_chance[np.flatnonzero(copied < 0)[:100]] = 1000 + np.arange(100) // 2  # 50 chance pairs
    attacker = attacker_reach(with_chance)
    assert attacker == attacker_reach(groups)
    f3, f4 = (counts == 3).sum(), (counts == 4).sum()
    assert attacker.found == int((counts >= 3).sum())
    assert attacker.estimate == pytest.approx(attacker.found + f3 * f3 / (2 * f4))
    assert attacker.found < attacker.estimate <= chao1(counts)  # images drawn once or twice stay partly unseen
    assert attacker.new_per_1000 == pytest.approx(1000 * 3 * f3 / 3000)
    assert attacker_reach(np.full(10, -1)).estimate == 0


def test_unfound_labels_are_the_complement_of_core_labels():
    labels = np.array([0, 0, 1, 1, 2, 3, 3])  # 3 kept classes; 3 is background
    partner = np.array([1, 0, -1, -1, -1, 6, 5])
    core, unfound = core_labels(labels, 3, partner), unfound_labels(labels, 3, partner)
    assert core.tolist() == [0, 0, 3, 3, 3, 3, 3]
    assert unfound.tolist() == [3, 3, 1, 1, 2, 3, 3]
    in_class = labels < 3
    assert ((core < 3) ^ (unfound < 3) == in_class).all()  # each class member is in exactly one of the two
    with pytest.raises(SideError, match="nothing is left unfound"):
        unfound_labels(np.array([0, 1]), 2, np.array([1, 0]))


def test_near_miss_labels_keep_samples_almost_alike_that_no_pair_has_found():
    rng = np.random.default_rng(0)
    spread = rng.normal(size=(40, 16))  # samples alike to nothing
    found = np.repeat(rng.normal(size=(1, 16)), 3, axis=0) + 0.001 * rng.normal(size=(3, 16))  # a found image
    variant = found[:1] + 0.6 * rng.normal(size=(1, 16))  # closest to the found image
    missed = np.repeat(rng.normal(size=(1, 16)), 4, axis=0) + 0.25 * rng.normal(size=(4, 16))  # near misses
    features = l2_normalise(np.concatenate([spread, found, variant, missed]))
    partner = np.full(len(features), -1)
    partner[40:43] = [41, 40, 40]  # the pool's one near-identical group
    labels = np.zeros(len(features), dtype=np.int64)
    near = near_miss_labels(labels, 1, partner, features)
    assert (near[44:48] == 0).all()  # the image the pool almost drew again
    assert (near[40:44] == 1).all()  # the found image and its variant are background
    assert (near[:40] == 1).sum() >= 35  # and almost all samples alike to nothing
    with pytest.raises(SideError, match="near miss"):
        near_miss_labels(labels, 1, np.zeros(len(features), dtype=np.int64), features)  # all found
