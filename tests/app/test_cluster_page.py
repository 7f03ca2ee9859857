"""Page 2, generate and cluster: the button generates and clusters; map, cluster table, and
samples next to their nearest training images; out-of-range input is refused with a message."""

import json

import numpy as np

from app_support import figures, state, views
from app_support.state import CLUSTER_PAGE

from .helpers import button, captions_of_images, metrics, submit


def test_generate_and_cluster_from_the_form(open_app, monkeypatch, tmp_path):
    monkeypatch.setenv("SIDE_STORE", str(tmp_path / "empty-store"))  # nothing precomputed
    at = open_app(CLUSTER_PAGE)
    assert not at.exception
    assert "press **Generate and cluster**" in at.info[0].value

    at.number_input(key="n_syn").set_value(24)
    at.number_input(key="k").set_value(3)
    at.slider(key="keep_top").set_value(1.0)  # keep every cluster of the tiny model
    button(at, "Generate and cluster").click().run()
    assert not at.exception
    assert not at.error
    assert at.session_state[state.CONFIG.name].n_syn == 24
    assert metrics(at)["Samples N_syn"] == "24"
    assert len(at.get("plotly_chart")) == 1  # the PCA map (no UMAP stored)
    assert any(b.label == "Compute UMAP map" for b in at.button)
    assert len(at.dataframe) == 1
    captions = captions_of_images(at)
    assert any(c.startswith("sample #") for c in captions)
    assert any(c.startswith("train #") for c in captions)


def test_a_silhouette_that_is_not_a_number_reads_n_a(open_app, monkeypatch, tmp_path):
    """Clusters whose silhouette is not finite (stored as None) show "n/a", not a crash."""
    monkeypatch.setenv("SIDE_STORE", str(tmp_path / "empty-store"))
    monkeypatch.setattr("side_core.kinds.clusters.silhouette", lambda *args: float("nan"))
    at = open_app(CLUSTER_PAGE)
    at.number_input(key="n_syn").set_value(24)
    at.number_input(key="k").set_value(3)
    at.slider(key="keep_top").set_value(1.0)
    button(at, "Generate and cluster").click().run()
    assert not at.exception and not at.error
    assert metrics(at)["Silhouette"] == "n/a"


def test_out_of_range_input_is_refused_with_a_message(open_app):
    at = open_app(CLUSTER_PAGE)
    assert not at.exception
    submit(at, "Generate and cluster", k=40)  # K > N_syn = 32
    assert "Clusters K = 40 is out of range: use 2 to 31" in at.error[0].value
    assert at.session_state[state.CONFIG.name].cluster.k == 3  # the last good settings stay
    assert len(at.get("plotly_chart")) == 1

    submit(at, "Generate and cluster", k=3, n_syn=100_000)
    assert "Samples N_syn = 100000 is out of range" in at.error[0].value


def test_inspect_a_class_and_guide_toward_it(open_app):
    at = open_app(CLUSTER_PAGE)
    assert not at.exception
    assert not at.info  # the tiny store has these stages: nothing to press
    at.selectbox(key="inspect_class").select(2).run()
    assert not at.exception
    assert all("class 2" in c for c in captions_of_images(at) if c.startswith("sample #"))
    button(at, "Guide toward class 2").click().run()
    assert not at.exception
    assert at.session_state[state.TARGET.name] == 2
    assert at.title[0].value == "Guided extraction"


def test_umap_button_stores_the_map_and_offers_it(open_app, monkeypatch):
    """The button makes the UMAP stage; here a PCA stands in for UMAP (its import and JIT take a minute)."""
    import side_core.kinds.features
    from side_core.cluster import map_2d

    monkeypatch.setattr(side_core.kinds.features, "map_2d", lambda f, method, seed: map_2d(f, "pca", seed))
    at = open_app(CLUSTER_PAGE)
    assert not at.exception
    assert at.segmented_control[0].options == ["PCA"]
    button(at, "Compute UMAP map").click().run()
    assert not at.exception
    assert at.segmented_control[0].options == ["UMAP", "PCA"]
    assert at.segmented_control[0].value == "UMAP"
    assert not any(b.label == "Compute UMAP map" for b in at.button)
    at.segmented_control[0].set_value("PCA").run()
    assert not at.exception


def small_map() -> tuple:
    """12 samples in 3 classes and background (label 3), with scores: a Clustering and a Scored."""
    from side_core.cluster import Clustering
    from side_core.inspection import Scored
    from side_core.metrics import Bands

    n, k = 12, 3
    labels = np.arange(n) % (k + 1)  # label 3: background
    c = Clustering(
        kmeans_labels=labels,
        centroids=np.eye(4, dtype=np.float32),
        cohesion=np.ones(4, np.float32),
        sizes=np.full(4, 3),
        kept=np.arange(k),
        labels=labels,
    )
    similarity = np.linspace(0, 1, n, dtype=np.float32)[:, None]
    return c, Scored(None, similarity, np.zeros((n, 1), np.int64), Bands.from_thresholds(0.2, 0.5, 0.8))


def test_the_map_lets_a_click_select_rings_the_selection_and_tells_many_classes_apart():
    """Plotly sends no click in lasso mode, so the map must open in another drag mode; nothing is
    faded; the highlighted class is outlined and the selection ringed on top; one numbering (classes:
    no K-means cluster id in the hover); a palette of 100 classes has 100 different colours."""
    c, scores = small_map()
    xy = np.random.default_rng(0).normal(size=(12, 2))
    figure = figures.cluster_map(xy, c, scores, highlight=1, selected=[2, 6])
    assert figure.layout.dragmode not in ("lasso", "select")
    assert not figure.layout.showlegend
    outlined, ring = figure.data[-2], figure.data[-1]
    assert [int(d[0]) for d in outlined.customdata] == [1, 5, 9]
    assert [int(d[0]) for d in ring.customdata] == [2, 6] and ring.marker.size >= 2 * outlined.marker.size
    ids = sorted(int(d[0]) for trace in figure.data[:-1] for d in trace.customdata)
    assert ids == list(range(12))  # every sample once (the ring aside), whatever the highlight
    for trace in figure.data:
        assert trace.unselected.marker.opacity >= 0.9  # a selection fades nothing
        assert "cluster" not in trace.hovertemplate
    assert len(set(figures.class_colours(100))) == 100


def test_a_selection_in_the_map_moves_the_class_picker_and_is_kept(open_app):
    """A click in the map (the chart's on_select) keeps the picked samples, and the class picker
    follows them; the redrawn map rings them; clearing goes back to the class's typical members."""
    import streamlit as st

    c, _ = small_map()
    st.session_state["chart"] = {"selection": {"points": [{"customdata": [5, 0.4]}, {"customdata": [9, 0.7]}]}}
    st.session_state["picker"] = 0
    views.select_in_map("chart", "picker", c)
    assert views.map_selection() == [5, 9]
    assert st.session_state["picker"] == 1  # samples 5 and 9 are in class 1

    at = open_app(CLUSTER_PAGE)
    at.session_state[views.MAP_SELECTION] = [0, 1]
    at.run()
    assert not at.exception
    assert any(c.value.startswith("Selected in the map: 2 ") for c in at.caption)
    assert len([c for c in captions_of_images(at) if c.startswith("sample #")]) == 2
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [d[0] for d in figure["data"][-1]["customdata"]] == [0, 1]  # ringed
    button(at, "Clear the selection").click().run()
    assert not at.exception
    assert any(c.value.startswith("Nothing selected in the map") for c in at.caption)
