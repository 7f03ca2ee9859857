"""Guided extraction: sample toward one surrogate class and compare with the training set (SIDE step 6)."""

from dataclasses import asdict

import streamlit as st

import app_support as app

st.title("Guided extraction")
st.markdown(
    "At every step inside the window the model's noise prediction is shifted along the classifier's gradient: "
    "eps_hat = eps - λ·sqrt(1 - ᾱ_t)·∇ log p(class | x_t, t). Samples pulled into a small, dense class land on "
    "memorized training images more often than plain samples from the same seeds."
)

run = app.require_run()
settings = app.surrogate_settings()
surrogate = app.stored_surrogate(run, settings, ("side",))
if surrogate is None:
    st.info("Guidance needs surrogate classes and a trained SIDE classifier for the current settings.")
    app.page_link(app.CLUSTER_PAGE, "Generate and cluster")
    app.page_link(app.CLASSIFIER_PAGE, "Train the surrogate classifier")
    st.stop()

clustering = run.clustering(surrogate.clusters)
size = run.model.size
t_max = run.model.scheduler.config.num_train_timesteps - 1
last = app.GuidedRequest.from_dict(st.session_state[app.GUIDED]) if app.GUIDED in st.session_state else None

st.subheader("1. Pick a surrogate class")
samples = run.images(surrogate.synthetic)
examples = app.class_examples(run, surrogate, per_class=4)
st.image(
    [app.mosaic(samples[ids], n_cols=2, size=size, target_px=56) for ids in examples],
    caption=[f"class {c} · {int((clustering.labels == c).sum())}" for c in range(clustering.n_classes)],
)
target = st.pills(
    "Target class",
    range(clustering.n_classes),
    default=min(st.session_state[app.TARGET], clustering.n_classes - 1),
    format_func=lambda c: f"class {c}",
    required=True,
    key="target_pills",
)
st.session_state[app.TARGET] = target

st.subheader("2. Guidance")
defaults = last or app.GuidedRequest(cls=target)
with st.form("guide"):
    left, right = st.columns(2)
    scale = left.slider("Guidance scale λ", 0.0, 50.0, float(defaults.guidance_scale), step=0.5, key="scale")
    window = right.slider(
        "Guide only while the timestep t is in",
        0,
        t_max,
        tuple(defaults.window) if defaults.window else (0, t_max),
        help="Sampling runs from t = T-1 (noise) down to 0. Outside the window the step is plain.",
        key="window",
    )
    cols = st.columns(3)
    num_steps = cols[0].number_input(
        f"Sampler steps ({defaults.sample_config().sampler.upper()})", 1, t_max + 1, defaults.num_steps, key="num_steps"
    )
    n = cols[1].number_input("Samples", 1, 256, defaults.n, key="n")
    seed = cols[2].number_input("Seed", 0, 2**31 - 1, defaults.seed, key="seed")
    submitted = st.form_submit_button("Generate", type="primary", icon=":material/play_arrow:")
if submitted:
    request = app.GuidedRequest(
        cls=int(target),
        guidance_scale=float(scale),
        window=None if tuple(window) == (0, t_max) else tuple(window),
        num_steps=int(num_steps),
        n=int(n),
        seed=int(seed),
    )
    with app.job():
        app.generate_guided(run, surrogate, request)
        st.session_state[app.GUIDED] = asdict(request)
        last = request

result = app.stored_guided(run, surrogate, last) if last else None
if result is None:
    st.info("Press **Generate**: guided samples appear here as they form, next to the same seeds unguided.")
    st.stop()

st.subheader(f"3. Class {last.cls} at λ = {last.guidance_scale:g}: guided vs unguided")
bands = run.bands()
guided, plain = run.images(result.guided), run.images(result.plain)
guided_sim, guided_idx = run.neighbours(result.guided_score)
plain_sim, plain_idx = run.neighbours(result.plain_score)
cols = st.columns(4)
cols[0].metric("Near-copies, guided", f"{int((guided_sim[:, 0] >= bands.high[0]).sum())} / {len(guided)}")
cols[1].metric("Near-copies, unguided", f"{int((plain_sim[:, 0] >= bands.high[0]).sum())} / {len(plain)}")
cols[2].metric("Mean nearest similarity, guided", f"{guided_sim[:, 0].mean():.3f}")
cols[3].metric("Mean nearest similarity, unguided", f"{plain_sim[:, 0].mean():.3f}")

guided_frames, plain_frames = run.frames(result.guided), run.frames(result.plain)
timesteps = sorted(guided_frames, reverse=True)
t = st.select_slider(
    "Scrub through sampling: predicted x0 at timestep",
    options=timesteps,
    value=timesteps[-1],
    format_func=lambda t: f"t = {t}",
    key=f"scrub_{result.guided.path.name}",  # one slider per generation: its timesteps
)
left, right = st.columns(2)
n_cols = min(4, len(guided))
left.image(app.mosaic(plain_frames[t], n_cols, size), caption=f"unguided, predicted x0 at t = {t}")
right.image(app.mosaic(guided_frames[t], n_cols, size), caption=f"guided to class {last.cls}, predicted x0 at t = {t}")

st.caption(
    "Each row: the unguided sample and the guided sample from the same seed, then the guided sample's nearest "
    "training images with their similarity and band (high: a copy)."
)
app.show_with_neighbours(
    run,
    [
        (
            "unguided (same seed)",
            plain,
            [f"unguided #{i} · {s:.3f} · {app.band_label(bands, s)}" for i, s in enumerate(plain_sim[:, 0])],
        ),
        (f"guided toward class {last.cls}", guided, [f"guided #{i}" for i in range(len(guided))]),
    ],
    guided_sim,
    guided_idx,
    bands,
)
