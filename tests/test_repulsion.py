"""Sparse repellency: guided samples pushed off the images the pool has already found."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from side_core.allocation import Target
from side_core.config import SampleConfig
from side_core.errors import SideError
from side_core.models import load_model
from side_core.repulsion import RADIUS_QUANTILE, found_references, sparse_repellency
from side_core.sampling import sample


def test_a_point_inside_a_ball_moves_to_its_surface_and_one_outside_stays_put():
    references = torch.zeros(1, 4)
    repel = sparse_repellency(references, radius=2.0)
    x0 = torch.tensor([[0.5, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]]).view(2, 1, 2, 2)
    moved = repel(x0).flatten(1)
    assert torch.allclose(moved[0], torch.tensor([2.0, 0.0, 0.0, 0.0]))  # along its own direction
    assert torch.equal(moved[1], x0.flatten(1)[1])  # outside every ball: bit-identical
    with pytest.raises(SideError, match="positive radius"):
        sparse_repellency(references, radius=0.0)


def test_references_are_the_flagged_samples_and_the_radius_their_pair_distances():
    images = torch.zeros(6, 1, 2, 2)
    images[1] += 0.1  # pair (0, 1) at distance 0.2
    images[2] += 1.0
    images[3] += 1.5  # pair (2, 3) at distance 1.0
    images[4:] = 5.0
    partner = np.array([1, 0, 3, 2, -1, -1])
    references, radius = found_references(images, partner)
    assert references.shape == (4, 4)
    assert radius == pytest.approx(float(np.quantile([0.2, 0.2, 1.0, 1.0], RADIUS_QUANTILE)))
    with pytest.raises(SideError, match="no pool sample has a near-identical partner"):
        found_references(images, np.full(6, -1))


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir, device="cpu")


CONFIG = SampleConfig(num_steps=5, batch_size=4)


def test_repelled_samples_leave_the_images_they_would_have_drawn(model):
    """References = the plain samples of the same noise: without repulsion each sample lands on its
    reference; with it, none does; references far away change nothing at all."""
    plain = sample(model, 8, CONFIG, torch.Generator().manual_seed(1)).images
    radius = 1.0
    repelled = sample(
        model, 8, CONFIG, torch.Generator().manual_seed(1), repel=sparse_repellency(plain.flatten(1), radius)
    ).images
    assert ((repelled - plain).flatten(1).norm(dim=1) > 0.5 * radius).all()
    far = sparse_repellency(plain.flatten(1) + 100.0, radius)
    assert torch.equal(sample(model, 8, CONFIG, torch.Generator().manual_seed(1), repel=far).images, plain)


def test_a_repelling_target_keys_its_pool_and_leaves_other_keys_alone(
    tiny_model_dir, tiny_data_dir, tiny_extraction, tmp_path
):
    from side_core.data import load_training_set
    from side_core.kinds.generation import Generation
    from side_core.pipeline import build_surrogate
    from side_core.run import Run

    run = Run(tmp_path / "store", load_model(tiny_model_dir, "cpu"), load_training_set(tiny_data_dir, 1, 8))
    config = dataclasses.replace(tiny_extraction, n_samples=8, repel=True)
    surrogate = build_surrogate(run, config, ("side",))
    target = surrogate.target("side")
    assert target.avoid == surrogate.near_identical.name
    assert "avoid" not in Target("c", 3).key() and "avoid" not in surrogate.target("side", cls=0).key()
    repel = surrogate.near_identical.repulsion
    repelled = Generation.make(run, config.n_samples, config.seed, config.sample, target, repel=repel)
    free = Generation.make(run, config.n_samples, config.seed, config.sample, dataclasses.replace(target, avoid=None))
    assert repelled.path != free.path and repelled.inputs["target"]["avoid"] == target.avoid
    assert repelled.targets().equal(free.targets())  # the same classes; only the repulsion differs
    assert not repelled.images().equal(free.images())
