"""AMS, UMS, bands and the nearest-neighbour search, against hand-computed answers."""

import numpy as np
import pytest
import torch

from side_core.errors import SideError
from side_core.metrics import Bands, ams, bands_from_train, in_band, p95, summarize, ums
from side_core.neighbours import make_similarity, nearest_others, search

BAND = (0.5, 0.8)

# 4 generated x 3 training similarities
SIM = np.array(
    [
        [0.9, 0.6, 0.55],  # max 0.9: above the band, but two training images are inside it
        [0.7, 0.1, 0.2],  # max 0.7: in band
        [0.3, 0.4, 0.2],  # max 0.4: below
        [0.1, 0.79, 0.5],  # max 0.79: in band (0.5 is also in band: lower edge included)
    ]
)


def test_ams_by_hand():
    assert ams(SIM.max(axis=1), BAND) == pytest.approx(100 * 2 / 4)


def test_ums_counts_every_training_image_in_the_band():
    # in band: (0,1) (0,2) (1,0) (3,1) (3,2) -> training images {0, 1, 2}: all three
    assert ums(SIM, BAND) == pytest.approx(100 * 3 / 4)
    # UMS can exceed AMS because non-nearest images count too
    assert ums(SIM, BAND) > ams(SIM.max(axis=1), BAND)


def test_band_edges_and_open_top():
    assert list(in_band(np.array([0.5, 0.8, 0.79]), BAND)) == [True, False, True]
    assert in_band(np.array([5.0]), (0.9, None)).all()


def test_p95_and_empty_inputs():
    assert p95(np.arange(101) / 100) == pytest.approx(0.95)
    with pytest.raises(SideError):
        ams(np.array([]), BAND)
    with pytest.raises(SideError):
        ums(np.zeros((0, 3)), BAND)


def test_bands_from_train_distribution():
    bands = bands_from_train(np.array([0.1, 0.2, 0.3, 0.4, 0.9]))
    assert bands.low[0] == pytest.approx(0.3)
    assert bands.high[0] > 0.9 and bands.high[1] is None
    assert bands.low[1] == bands.mid[0] and bands.mid[1] == bands.high[0]
    with pytest.raises(SideError, match="increase"):
        Bands.from_thresholds(0.5, 0.4, 0.9)


def test_copy_scores_high_and_noise_does_not():
    torch.manual_seed(0)
    train = torch.rand(20, 1, 8, 8) * 2 - 1
    similarity = make_similarity("pixels")
    train_vectors = similarity.vectors(train)
    nn_sim, _ = nearest_others(train_vectors)
    bands = bands_from_train(nn_sim)
    copy = train[7:8].clone()  # an exact copy; its similarity to others equals the original's
    noise = torch.randn(1, 1, 8, 8)
    result = search(similarity.vectors(torch.cat([copy, noise])), train_vectors, k=2, bands=bands)
    assert result.index[0, 0] == 7
    assert bands.name_of(result.max_similarity[0]) == "high"
    assert bands.name_of(result.max_similarity[1]) != "high"
    summary = summarize(result.max_similarity, result.band_hits, bands)
    assert summary["extracted"] == [7]
    assert summary["ams"]["high"] == pytest.approx(50.0)


def test_chunked_search_matches_full_matrix():
    rng = np.random.default_rng(0)
    q = torch.from_numpy(rng.normal(size=(37, 5)).astype(np.float32))
    t = torch.from_numpy(rng.normal(size=(11, 5)).astype(np.float32))
    bands = Bands.from_thresholds(-1.0, 0.0, 1.0)
    chunked = search(q, t, k=3, bands=bands, chunk=4)
    full = (q @ t.T).numpy()
    np.testing.assert_allclose(chunked.similarity, -np.sort(-full, axis=1)[:, :3], rtol=1e-5)
    for name, band in bands.items():
        np.testing.assert_array_equal(chunked.band_hits[name], in_band(full, band).any(axis=0))


def test_first_hits_give_the_distinct_curve():
    from side_core.metrics import distinct_curve, samples_to_k

    # samples 0..3 against training images 0..2 (SIM above): in BAND first at samples 0, 0, 0
    q = torch.eye(4)
    t = torch.tensor([[0.0, 0.7, 0.0, 0.0], [0.0, 0.0, 0.0, 0.6], [0.9, 0.0, 0.0, 0.0]])
    result = search(q, t, bands=Bands.from_thresholds(0.1, 0.5, 0.8), chunk=3)
    np.testing.assert_array_equal(result.first_hit["mid"], [1, 3, -1])
    np.testing.assert_array_equal(result.first_hit["high"], [-1, -1, 0])
    curve = distinct_curve(result.first_hit["mid"], 4)
    np.testing.assert_array_equal(curve, [0, 1, 1, 2])
    assert samples_to_k(curve, 2) == 4 and samples_to_k(curve, 3) is None
