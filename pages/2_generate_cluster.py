"""Generate and cluster: the model's own samples, grouped into surrogate classes (SIDE steps 1-4)."""

from collections import Counter
from dataclasses import replace

import streamlit as st

import app_support as app
from side_core.cluster import UNKEPT

st.title("Generate and cluster")
st.markdown(
    "The model's plain samples fall into groups. K-means on their features makes those groups explicit; "
    "clusters whose members agree (cohesion ≥ tau) become **surrogate classes**. Samples of the other clusters "
    "get a **background** label that guidance never aims at (or, as in the paper, their nearest class)."
)

run = app.require_run()
settings = app.surrogate_settings()

with st.form("generate"):
    cols = st.columns(5)
    n_syn = cols[0].number_input(
        "Samples N_syn", min_value=2, max_value=100_000, value=settings.n_syn, step=64, key="n_syn"
    )
    feature = cols[1].selectbox(
        "Feature",
        ("unet", "pixels"),
        index=("unet", "pixels").index(settings.feature) if settings.feature in ("unet", "pixels") else 0,
        help="unet: the model's own mid-block activations; pixels: standardized pixels (the scoring similarity).",
    )
    k = cols[2].number_input("Clusters K", min_value=2, max_value=2000, value=settings.k, key="k")
    tau = cols[3].slider("Cohesion tau", min_value=0.0, max_value=1.0, value=float(settings.tau), step=0.01, key="tau")
    unkept = cols[4].selectbox(
        "Samples of dropped clusters",
        UNKEPT,
        index=UNKEPT.index(settings.unkept),
        help="background: one extra label, never a target, so classes stay tight; nearest: the paper's "
        "relabelling with the nearest kept cluster.",
    )
    submitted = st.form_submit_button("Generate and cluster", type="primary")
if submitted:
    new_settings = replace(
        settings, n_syn=int(n_syn), feature=feature, k=int(k), tau=round(float(tau), 2), unkept=unkept
    )
    with app.job():
        app.generate_and_cluster(run, new_settings, app.Progress())
        app.set_surrogate_settings(new_settings)
        st.rerun()  # draw the new stages, sidebar included

surrogate = app.stored_surrogate(run, settings)
if surrogate is None:
    st.info(
        f"No samples are stored for N_syn = {settings.n_syn}, {settings.feature} features, K = {settings.k}, "
        f"tau = {settings.tau:g}: press **Generate and cluster**."
    )
    st.stop()

clustering = run.clustering(surrogate.clusters)
with app.errors_shown(stop=True), st.spinner("Finding the samples' nearest training images..."):
    similarity, index = run.neighbours(run.score(surrogate.synthetic))
bands = run.bands()
max_similarity = similarity[:, 0]

cols = st.columns(4)
cols[0].metric("Surrogate classes", f"{clustering.n_classes} of {settings.k}")
cols[1].metric("Silhouette (cosine)", f"{surrogate.clusters.summary()['silhouette']:.3f}")
cols[2].metric("Near-copies among samples", int((max_similarity >= bands.high[0]).sum()))
cols[3].metric("Samples", len(clustering.labels))

st.subheader("Map of the samples")
umap_xy = app.stored_map(run, surrogate, "umap")
views = ["UMAP", "PCA"] if umap_xy is not None else ["PCA"]
# Keyed by the views on offer, so that a freshly computed UMAP map is shown at once.
view = st.segmented_control("Map", views, default=views[0], required=True, key=f"map_view_{len(views)}")
if umap_xy is None:
    left, right = st.columns([3, 1])
    left.caption("No UMAP map is stored for these samples yet, so PCA is shown (instant).")
    if right.button("Compute UMAP map"):
        with app.job(), st.spinner("UMAP: importing umap-learn and compiling take about a minute the first time..."):
            app.compute_umap(run, surrogate)
            st.rerun()
xy = umap_xy if view == "UMAP" else app.pca_map(run, surrogate)
event = st.plotly_chart(
    app.cluster_map(xy, clustering, max_similarity, bands),
    on_select="rerun",
    selection_mode=("points", "box", "lasso"),
    key="cluster_map",
)
st.caption(
    "Click, box- or lasso-select points to compare them with their nearest training images below. "
    "Diamonds are near-copies (high band)."
)

st.subheader("Clusters")
st.dataframe(app.cluster_table(clustering, max_similarity, bands), hide_index=True)
st.caption(
    "Cohesion: mean cosine of members to their centroid. Clusters below tau are dropped; their samples get "
    "the background label (or the nearest class). Band columns count members whose nearest training image is "
    "in that band."
)

st.subheader("Samples next to their nearest training images")
ids = app.ids_from_selection(event)
if ids:
    st.caption(f"Selected in the map: {len(ids)} (up to 12 are shown).")
else:
    sizes = Counter(clustering.labels.tolist())
    inspect = st.selectbox(
        "Nothing selected in the map: show the most typical members of",
        range(clustering.n_classes),
        format_func=lambda c: f"class {c} ({sizes[c]} samples)",
        key="inspect_class",
    )
    ids = app.class_examples(run, surrogate, per_class=6)[inspect].tolist()
ids = ids[:12]
captions = [f"sample #{i} · {app.label_name(clustering, clustering.labels[i])}" for i in ids]
app.show_with_neighbours(
    run,
    [("sample", run.images(surrogate.synthetic)[ids], captions)],
    similarity[ids],
    index[ids],
    bands,
)
classes = Counter(int(clustering.labels[i]) for i in ids if clustering.labels[i] < clustering.n_classes)
if not classes:
    st.caption("These samples are all background: select members of a surrogate class to guide toward it.")
    st.stop()
target = classes.most_common(1)[0][0]
if st.button(f"Guide toward class {target}", type="primary", icon=":material/explore:"):
    st.session_state[app.TARGET] = target
    st.switch_page(f"pages/{app.GUIDED_PAGE}")
