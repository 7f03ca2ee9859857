"""Page 2, generate and cluster: the button generates and clusters; map, cluster table, and
samples next to their nearest training images; bad K is the engine's error."""

import app_support
from app_support import CLUSTER_PAGE

from .helpers import button, captions_of_images


def test_generate_and_cluster_from_the_form(open_app, monkeypatch, tmp_path):
    monkeypatch.setenv("SIDE_STORE", str(tmp_path / "empty-store"))  # nothing precomputed
    at = open_app(CLUSTER_PAGE)
    assert not at.exception
    assert "press **Generate and cluster**" in at.info[0].value

    at.number_input[0].set_value(24)  # N_syn
    at.number_input[1].set_value(3)  # K
    at.slider[0].set_value(0.0)  # tau: keep every cluster of the untrained tiny model
    button(at, "Generate and cluster").click().run()
    assert not at.exception
    assert not at.error
    assert at.session_state[app_support.SETTINGS]["n_syn"] == 24
    assert {m.label: m.value for m in at.metric}["Samples"] == "24"
    assert len(at.get("plotly_chart")) == 1  # the PCA map (no UMAP stored)
    assert any(b.label == "Compute UMAP map" for b in at.button)
    assert len(at.dataframe) == 1
    captions = captions_of_images(at)
    assert any(c.startswith("sample #") for c in captions)
    assert any(c.startswith("train #") for c in captions)


def test_bad_k_shows_the_engine_message(open_app):
    at = open_app(CLUSTER_PAGE)
    at.number_input[1].set_value(40)  # K > N_syn = 32
    button(at, "Generate and cluster").click().run()
    assert not at.exception
    assert "K = 40 clusters for 32 samples" in at.error[0].value
    assert at.session_state[app_support.SETTINGS]["k"] == 3  # the last good settings stay
    assert len(at.get("plotly_chart")) == 1


def test_inspect_a_class_and_guide_toward_it(open_app):
    at = open_app(CLUSTER_PAGE)
    assert not at.exception
    assert not at.info  # the tiny store has these stages: nothing to press
    at.selectbox(key="inspect_class").select(2).run()
    assert not at.exception
    assert all("class 2" in c for c in captions_of_images(at) if c.startswith("sample #"))
    button(at, "Guide toward class 2").click().run()
    assert not at.exception
    assert at.session_state[app_support.TARGET] == 2
    assert at.title[0].value == "Guided extraction"


def test_umap_button_stores_the_map_and_offers_it(open_app, monkeypatch):
    """The button makes the UMAP stage; here a PCA stands in for UMAP (its import and JIT take a minute)."""
    import side_core.pipeline
    from side_core.cluster import map_2d

    monkeypatch.setattr(side_core.pipeline, "map_2d", lambda f, method, seed: map_2d(f, "pca", seed))
    at = open_app(CLUSTER_PAGE)
    assert at.segmented_control[0].options == ["PCA"]
    button(at, "Compute UMAP map").click().run()
    assert not at.exception
    assert at.segmented_control[0].options == ["UMAP", "PCA"]
    assert at.segmented_control[0].value == "UMAP"
    assert not any(b.label == "Compute UMAP map" for b in at.button)
    at.segmented_control[0].set_value("PCA").run()
    assert not at.exception
