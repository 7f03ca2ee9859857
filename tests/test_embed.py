"""Features for clustering: UNet mid-block, pixels, and an SSCD-style TorchScript file."""

import numpy as np
import pytest
import torch

from side_core.cluster import cluster, map_2d
from side_core.config import ClusterConfig
from side_core.embed import embed
from side_core.errors import SideError
from side_core.models import load_model
from side_core.neighbours import make_similarity


class TinyDescriptor(torch.nn.Module):
    """Stands in for SSCD: 3x320x320 ImageNet-normalised input -> 8-d descriptor."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 4, stride=4)

    def forward(self, x):
        if x.shape[1] != 3 or x.shape[2] != 320 or x.shape[3] != 320:  # SSCD_SIZE
            raise RuntimeError("expected 3x320x320 input")
        return self.conv(x).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def sscd_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sscd") / "tiny.torchscript.pt"
    torch.manual_seed(0)
    torch.jit.script(TinyDescriptor()).save(str(path))
    return path


def test_sscd_descriptors_are_unit_vectors(sscd_file):
    images = torch.rand(5, 1, 8, 8) * 2 - 1
    features = embed(images, "sscd", sscd_path=sscd_file)
    assert features.shape == (5, 8)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)
    similarity = make_similarity("sscd", sscd_file)
    vectors = similarity.vectors(images)
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(5))
    assert "320x320" in similarity.preprocessing


def test_missing_sscd_file(tmp_path):
    with pytest.raises(SideError, match="needs an SSCD TorchScript file"):
        embed(torch.zeros(1, 1, 8, 8), "sscd")
    with pytest.raises(SideError, match="does not exist"):
        make_similarity("sscd", tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(SideError, match="not a TorchScript model"):
        embed(torch.zeros(1, 1, 8, 8), "sscd", sscd_path=tmp_path / "bad.pt")


def test_unet_and_pixel_features(tiny_model_dir):
    model = load_model(tiny_model_dir, device="cpu")
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    unet = embed(images, "unet", model)
    assert unet.shape[0] == 6 and unet.ndim == 2
    np.testing.assert_array_equal(unet, embed(images, "unet", model))  # fixed noise seed
    pixels = embed(images, "pixels")
    np.testing.assert_allclose(pixels.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(pixels.std(axis=1), 1, atol=1e-4)
    with pytest.raises(SideError, match="Unknown feature"):
        embed(images, "clip")


def test_clusters_labels_and_cohesion_filter():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    features = np.concatenate([c + 0.05 * rng.normal(size=(10, 16)) for c in centres])
    clustering = cluster(features, ClusterConfig(k=3, tau=0.9))
    assert clustering.n_classes == 3
    assert len(set(clustering.labels[:10])) == 1 and len(set(clustering.labels)) == 3
    assert (clustering.cohesion > 0.9).all() and clustering.sizes.tolist() == [10, 10, 10]
    with pytest.raises(SideError, match="lower tau"):
        cluster(rng.normal(size=(30, 16)), ClusterConfig(k=3, tau=0.99))
    assert map_2d(features, "pca").shape == (30, 2)


def test_dropped_clusters_become_background_or_join_the_nearest_class():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    tight = np.concatenate([c + 0.05 * rng.normal(size=(10, 16)) for c in centres[:3]])
    loose = centres[3] + 0.8 * rng.normal(size=(10, 16))  # a fourth, spread-out group: cohesion below tau
    features = np.concatenate([tight, loose])
    background = cluster(features, ClusterConfig(k=4, tau=0.9, unkept="background"))
    assert background.n_classes == 3 and background.background and background.n_labels == 4
    assert (background.labels[30:] == 3).all()  # the loose group: the background label, never a class
    assert sorted(np.unique(background.labels[:30]).tolist()) == [0, 1, 2]
    nearest = cluster(features, ClusterConfig(k=4, tau=0.9, unkept="nearest"))
    assert not nearest.background and nearest.n_labels == 3
    assert (nearest.labels[:30] == background.labels[:30]).all()  # tight members keep their class
    assert nearest.labels[30:].max() < 3
    with pytest.raises(SideError, match="Unknown unkept"):
        cluster(features, ClusterConfig(k=4, tau=0.9, unkept="drop"))
