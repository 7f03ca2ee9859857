"""Page 2, generate and cluster: the button generates and clusters; map, cluster table, and
samples next to their nearest training images; out-of-range input is refused with a message."""

import numpy as np

from app_support import figures, state
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
    assert metrics(at)["Samples"] == "24"
    assert len(at.get("plotly_chart")) == 1  # the PCA map (no UMAP stored)
    assert any(b.label == "Compute UMAP map" for b in at.button)
    assert len(at.dataframe) == 1
    captions = captions_of_images(at)
    assert any(c.startswith("sample #") for c in captions)
    assert any(c.startswith("train #") for c in captions)


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
    import side_core.run
    from side_core.cluster import map_2d

    monkeypatch.setattr(side_core.run, "map_2d", lambda f, method, seed: map_2d(f, "pca", seed))
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


def test_the_map_lets_a_click_select_and_tells_many_classes_apart():
    """Plotly sends no click in lasso mode, so the map must open in another drag mode; a palette of
    100 classes has 100 different colours."""
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
    scores = Scored(None, similarity, np.zeros((n, 1), np.int64), Bands.from_thresholds(0.2, 0.5, 0.8))
    figure = figures.cluster_map(np.random.default_rng(0).normal(size=(n, 2)), c, scores, highlight=1)
    assert figure.layout.dragmode not in ("lasso", "select")
    assert not figure.layout.showlegend
    ids = sorted(int(d[0]) for trace in figure.data for d in trace.customdata)
    assert ids == list(range(n))  # every sample once, whatever the highlight
    outlined = figure.data[-1]
    assert [int(d[0]) for d in outlined.customdata] == [1, 5, 9]
    assert len(set(figures.class_colours(100))) == 100
