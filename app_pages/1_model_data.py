"""Model and data: what is loaded, a look at the training images, and what "similar" means here."""

import streamlit as st

from app_support import access, figures, forms, resources, views
from side_core.kinds.scoring import Reference

st.title("Model and data")
st.markdown(
    "SIDE extracts training images from an **unconditional** diffusion model: it clusters the model's own "
    "samples into surrogate classes, trains a noise-aware classifier on them, and guides sampling toward one "
    "class. The training set is needed only to *score* what comes out."
)

with views.errors_shown():
    opened = forms.open_model(access.current())
    if opened is not None:
        resources.open_specs(*opened)
        st.rerun()

run = resources.require_run()
facts = run.model.facts()

st.subheader("Model")
cols = st.columns(4)
cols[0].metric("Image size", f"{facts['channels']} x {facts['size']} x {facts['size']}")
cols[1].metric("Parameters", f"{facts['parameters'] / 1e6:.2f} M")
cols[2].metric("Training timesteps", facts["scheduler"]["num_train_timesteps"])
cols[3].metric("Beta schedule", facts["scheduler"]["beta_schedule"])
st.caption(
    f"Source: `{facts['source']}` ({facts['layout']} layout) · prediction: {facts['scheduler']['prediction_type']} · "
    f"betas {facts['scheduler']['beta_start']:g} to {facts['scheduler']['beta_end']:g} · "
    f"fingerprint `{run.model.fingerprint}`"
)

st.subheader("Training set")
data = run.data
st.caption(f"{len(data)} images from {data.source}. Preprocessing: {'; '.join(data.preprocessing) or 'none'}.")
shown = data.images[:100]
st.image(
    views.mosaic(shown, n_cols=20, size=data.size, target_px=56), caption=f"The first {len(shown)} training images"
)

st.subheader("What counts as a copy")
with views.errors_shown(stop=True):
    reference = Reference.make(run)
    train_similarity = reference.nearest_other()
st.plotly_chart(figures.band_histogram(train_similarity, reference.bands(), run.similarity.name))
st.caption(
    f"Similarity: {run.similarity.preprocessing}. The bands come from this distribution: **high** is closer than any "
    "two distinct training images are to each other (a copy), **mid** closer than 95% of them, **low** closer than "
    "the median. A generated image counts as extracted when its nearest training image is in the high band."
)
