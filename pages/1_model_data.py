"""Model and data: what is loaded, a look at the training images, and what "similar" means here."""

import plotly.graph_objects as go
import streamlit as st

import app_support as app
from side_core.store import read_array

st.title("Model and data")
st.markdown(
    "SIDE extracts training images from an **unconditional** diffusion model: it clusters the model's own "
    "samples into surrogate classes, trains a noise-aware classifier on them, and guides sampling toward one "
    "class. The training set is needed only to *score* what comes out."
)

with st.form("open"):
    left, middle, right = st.columns([3, 3, 1])
    model_spec = left.text_input(
        "Model",
        value=st.session_state[app.MODEL],
        help="'default' (bundled, 100 LFW faces), 'faces40' (40 faces), a local diffusers folder "
        "(DDPMPipeline.save_pretrained or a UNet2DModel folder), or a hub id such as google/ddpm-cifar10-32 "
        "(online only).",
        key="open_model",
    )
    data_spec = middle.text_input(
        "Training set",
        value=st.session_state[app.DATA],
        help="'default' (the bundled LFW faces) or a folder of images; they are converted to the model's "
        "channels and size.",
        key="open_data",
    )
    n_data = right.number_input(
        "First N images",
        min_value=0,
        value=st.session_state[app.N_DATA] or 0,
        help="Keep only the first N training images (0: all). The faces40 model was trained on the first 40.",
        key="open_n_data",
    )
    if st.form_submit_button("Open", type="primary"):
        with app.errors_shown():
            model = app.cached_model(model_spec.strip())
            app.cached_training_set(data_spec.strip(), model.channels, model.size, n_data or None)
            st.session_state[app.MODEL] = model_spec.strip()
            st.session_state[app.DATA] = data_spec.strip()
            st.session_state[app.N_DATA] = n_data or None
            st.rerun()

run = app.require_run()
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
st.image(app.mosaic(shown, n_cols=20, size=data.size, target_px=56), caption=f"The first {len(shown)} training images")

st.subheader("What counts as a copy")
with app.errors_shown(stop=True):
    reference = run.reference()
bands = run.bands()
nn_similarity = read_array(reference.file("nn_similarity.npy"))
figure = go.Figure(go.Histogram(x=nn_similarity, nbinsx=40, name="train vs train", marker_color="#7f8c8d"))
positions = {"low": "top left", "mid": "top left", "high": "top right"}  # mid and high are often close
for name, (low, _high) in bands.items():
    figure.add_vline(
        x=low, line_dash="dash", annotation_text=f"{name} ≥ {low:.3f}", annotation_position=positions[name]
    )
figure.update_layout(
    xaxis_title=f"similarity of each training image to its nearest other training image ({run.similarity.name})",
    yaxis_title="training images",
    height=320,
    margin={"t": 40, "b": 40},
    showlegend=False,
)
st.plotly_chart(figure)
st.caption(
    f"Similarity: {run.similarity.preprocessing}. The bands come from this distribution: **high** is closer than any "
    "two distinct training images are to each other (a copy), **mid** closer than 95% of them, **low** closer than "
    "the median. A generated image counts as extracted when its nearest training image is in the high band."
)
