"""Generate and cluster: the model's own samples, grouped into surrogate classes (SIDE steps 1-4)."""

import functools

import streamlit as st

from app_support import figures, forms, jobs, resources, state, views
from side_core.kinds.features import Map2D

st.title("Generate and cluster")
st.markdown(
    "The model's plain samples fall into groups. K-means on their features makes those groups explicit; "
    "the clusters whose members agree most (the most cohesive fraction) become **surrogate classes**. "
    "Samples of the other clusters get a **background** label that guidance never aims at (or, as in the "
    "paper, their nearest class)."
)

run = resources.require_run()
config = state.CONFIG.get()
with views.errors_shown():
    new = forms.surrogate(config)
    if new is not None and jobs.do(jobs.clusters_with_scores(new), run) is not None:
        state.CONFIG.set(new)
        views.clear_map_selection()  # its ids are of the former samples
        st.rerun()  # draw the new stages, sidebar included

found = jobs.clusters_with_scores(config).stored(run)
if found is None:
    st.info(
        f"No samples are stored for N_syn = {config.n_syn}, {config.cluster.feature} features, K = {config.cluster.k}, "
        f"{config.cluster.keep_rule}: press **Generate and cluster**."
    )
    st.stop()
surrogate, scores = found
clustering = surrogate.clusters.clustering()
evidence = resources.pool_evidence(surrogate)

cols = st.columns(4)
cols[0].metric(
    "Surrogate classes",
    f"{clustering.n_classes} of {config.cluster.k}",
    help="The kept clusters, numbered 0 to "
    f"{clustering.n_classes - 1}, most cohesive first; the others were dropped and their samples are background.",
)
silhouette = surrogate.clusters.summary()["silhouette"]  # None where it is not a finite number
cols[1].metric(
    "Silhouette",
    "n/a" if silhouette is None else f"{silhouette:.3f}",
    help="How much closer samples are to their own cluster than to the next one (cosine; -1 to 1, 0: the "
    "clusters overlap). Plain samples of a face model overlap a lot; SIDE needs only a few tight classes. "
    "n/a: it is not a finite number for these samples (e.g. samples all alike).",
)
cols[2].metric(
    "Copies",
    scores.n_copies,
    help="Samples whose nearest training image is in the high band (a copy). This reads the training set, for "
    "teaching: an attacker sees only the near-identical samples.",
)
cols[3].metric("Samples N_syn", len(clustering.labels))

st.subheader("Map of the samples")
umap = jobs.umap_map(surrogate, config)
umap_stage = umap.stored(run)
left, middle, right = st.columns([1, 2, 1])
views_on_offer = ["UMAP", "PCA"] if umap_stage is not None else ["PCA"]
# Keyed by the views on offer, so that a freshly computed UMAP map is shown at once.
view = left.segmented_control(
    "Map", views_on_offer, default=views_on_offer[0], required=True, key=f"map_view_{len(views_on_offer)}"
)
highlight = views.target_picker(
    "Class: outlined in the map, its samples below",
    evidence,
    "inspect_class",
    where=middle,
    on_change=views.clear_map_selection,  # a class picked here: its typical members, not the old selection
)
if umap_stage is None:
    right.caption("No UMAP map is stored for these samples yet, so PCA is shown (instant).")
    if right.button("Compute UMAP map") and jobs.do(umap, run) is not None:
        st.rerun()
xy = (umap_stage if view == "UMAP" else Map2D.make(run, surrogate.features, "pca", config.seed)).points()
ids = [i for i in views.map_selection() if i < len(clustering.labels)]  # picked under these settings
st.plotly_chart(
    figures.cluster_map(xy, clustering, scores, highlight, ids),
    on_select=functools.partial(views.select_in_map, "cluster_map", "inspect_class", clustering),
    selection_mode=("points", "box", "lasso"),
    key="cluster_map",
)
st.caption(
    "Click a point, or pick the box or lasso tool at the top right of the map and draw: the selected samples get a "
    "red ring, the class picker follows them, and they appear below next to their nearest training images. "
    "Diamonds are copies (nearest training image in the high band); grey points are background; hover names the "
    "class."
)

st.subheader("Samples next to their nearest training images")
if ids:
    st.caption(f"Selected in the map: {len(ids)} (up to 12 are shown).")
    st.button("Clear the selection", on_click=views.clear_map_selection, icon=":material/deselect:")
else:
    st.caption(f"Nothing selected in the map: the most typical members of class {highlight}.")
    ids = resources.class_representatives(surrogate, per_class=6)[highlight].tolist()
ids = ids[:12]
captions = [f"sample #{i} · {figures.label_name(clustering, clustering.labels[i])}" for i in ids]
selected = scores.take(ids)
views.show_with_neighbours(run, [("sample", selected.images, captions)], selected)
target = views.majority_class(clustering, ids)
if target is not None:
    if st.button(f"Guide toward class {target}", type="primary", icon=":material/explore:"):
        state.TARGET.set(target)
        st.switch_page(f"app_pages/{state.GUIDED_PAGE}")
else:
    st.caption("These samples are all background: select members of a surrogate class to guide toward it.")

st.subheader("Clusters")
st.dataframe(views.cluster_rows(clustering, scores), hide_index=True)
st.caption(
    "One row per K-means cluster: its class (empty: dropped, its samples are background), its samples, its "
    "cohesion (the mean cosine of its members' features to their centre: how alike they are) and how many of its "
    "members have their nearest training image in each band."
)
