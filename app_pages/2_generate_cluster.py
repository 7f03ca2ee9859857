"""Generate and cluster: the model's own samples, grouped into surrogate classes (SIDE steps 1-4)."""

import streamlit as st

from app_support import figures, forms, jobs, resources, state, views

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
        st.rerun()  # draw the new stages, sidebar included

found = jobs.clusters_with_scores(config).stored(run)
if found is None:
    st.info(
        f"No samples are stored for N_syn = {config.n_syn}, {config.cluster.feature} features, K = {config.cluster.k}, "
        f"{config.cluster.keep_rule}: press **Generate and cluster**."
    )
    st.stop()
surrogate, scores = found
clustering = run.clustering(surrogate.clusters)
evidence = resources.pool_evidence(run, surrogate)

cols = st.columns(4)
cols[0].metric("Surrogate classes", f"{clustering.n_classes} of {config.cluster.k}")
cols[1].metric("Silhouette (cosine)", f"{surrogate.clusters.summary()['silhouette']:.3f}")
cols[2].metric("Near-copies among samples", scores.n_copies)
cols[3].metric("Samples", len(clustering.labels))

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
    "Class: highlighted in the map, and its most typical members below", evidence, "inspect_class", where=middle
)
if umap_stage is None:
    right.caption("No UMAP map is stored for these samples yet, so PCA is shown (instant).")
    if right.button("Compute UMAP map") and jobs.do(umap, run) is not None:
        st.rerun()
xy = run.map_points(umap_stage if view == "UMAP" else run.map2d(surrogate.features, "pca", config.seed))
event = st.plotly_chart(
    figures.cluster_map(xy, clustering, scores, highlight),
    on_select="rerun",
    selection_mode=("points", "box", "lasso"),
    key="cluster_map",
)
st.caption(
    "Click a point, or pick the box or lasso tool at the top right of the map and draw, to compare samples with their "
    "nearest training images below (double-click clears). Diamonds are near-copies (high band); hover names the class."
)

st.subheader("Samples next to their nearest training images")
ids = views.ids_from_selection(event)
if ids:
    st.caption(f"Selected in the map: {len(ids)} (up to 12 are shown).")
else:
    st.caption(f"Nothing selected in the map: the most typical members of class {highlight}.")
    ids = resources.class_representatives(run, surrogate, per_class=6)[highlight].tolist()
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
    "Cohesion: mean cosine of members to their centroid. Clusters outside the kept fraction are dropped; "
    "their samples get the background label (or the nearest class). Band columns count members whose "
    "nearest training image is in that band."
)
