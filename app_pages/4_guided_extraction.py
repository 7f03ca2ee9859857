"""Guided extraction: sample toward one surrogate class and compare with the training set (SIDE step 6)."""

import streamlit as st

from app_support import forms, jobs, resources, state, views

st.title("Guided extraction")
st.caption(
    "At every step inside the window the model's noise prediction is shifted along the classifier's gradient: "
    "eps_hat = eps - λ·sqrt(1 - ᾱ_t)·∇ log p(class | x_t, t). Samples pulled into a small, dense class land on "
    "memorized training images more often than plain samples from the same seeds."
)

run = resources.require_run()
config = state.CONFIG.get()
surrogate = jobs.surrogate(config, ("side",)).stored(run)
if surrogate is None:
    st.info("Guidance needs surrogate classes and a trained SIDE classifier for the current settings.")
    views.page_link(state.CLUSTER_PAGE, "Generate and cluster")
    views.page_link(state.CLASSIFIER_PAGE, "Train the surrogate classifier")
    st.stop()

size = run.model.size
t_max = run.model.scheduler.config.num_train_timesteps - 1
ranked = resources.ranked_classes(run, surrogate)
state.default_target([e.cls for e in ranked])
last = state.GUIDED.get()
samples = resources.images(run, surrogate.synthetic)
examples = resources.class_representatives(run, surrogate, per_class=4)

controls, panel = st.columns([2, 3], gap="large")
with controls:
    # bound to the session's target, which the cluster page's button and the buttons below set too;
    # kept while the user is on other pages
    target = views.class_picker("Target class", ranked, state.TARGET.name, persist_state="session")
    weakest = ranked[-1]
    left, right = st.columns([1, 2])
    left.image(views.mosaic(samples[examples[target]], n_cols=4, size=size, target_px=40), caption=f"class {target}")
    if target != weakest.cls:
        right.button(
            f"Try a weak class: class {weakest.cls} ({weakest.copy_rate:.0%})",
            on_click=state.TARGET.set,
            args=(weakest.cls,),
            help="Compare: guidance toward a class whose samples are rarely copies extracts little.",
        )
    else:
        right.button(
            f"Back to the best class: class {ranked[0].cls} ({ranked[0].copy_rate:.0%})",
            on_click=state.TARGET.set,
            args=(ranked[0].cls,),
        )
    request = None  # stays None when the form refuses a value
    with views.errors_shown():
        request = forms.guided(last or state.GuidedRequest(cls=target), target, t_max)

with panel:
    result = jobs.do(jobs.guided(surrogate, request, size), run) if request is not None else None
    if result is not None:
        state.GUIDED.set(request)
        last = request
    elif last is not None:
        result = jobs.guided(surrogate, last, size).stored(run)
    if result is None:
        st.info(
            "Press **Generate**: the guided samples form here, next to the same seeds unguided, then their nearest "
            "training images appear below."
        )
        st.stop()
    st.subheader(f"Class {last.cls} at λ = {last.sample.guidance_scale:g}: guided vs unguided")
    cols = st.columns(4)
    cols[0].metric("Copies, guided", f"{result.guided.n_copies} / {len(result.guided.nearest)}")
    cols[1].metric("Copies, unguided", f"{result.plain.n_copies} / {len(result.plain.nearest)}")
    nearest = "Mean similarity of the samples to their nearest training images"
    cols[2].metric("Similarity, guided", f"{result.guided.nearest.mean():.3f}", help=nearest)
    cols[3].metric("Similarity, unguided", f"{result.plain.nearest.mean():.3f}", help=nearest)
    if hint := forms.steps_hint(last.sample.num_steps):
        st.warning(hint, icon=":material/blur_on:")
    timesteps = sorted(result.guided_frames, reverse=True)
    t = st.select_slider(
        "Scrub through sampling: predicted x0 at timestep",
        options=timesteps,
        value=timesteps[-1],
        format_func=lambda t: f"t = {t}",
        key=f"scrub_{result.key}",  # one slider per generation: its timesteps
    )
    n_cols = min(4, last.n)
    left, right = st.columns(2)
    left.image(
        views.mosaic(result.guided_frames[t], n_cols, size),
        caption=f"guided to class {last.cls}, predicted x0 at t = {t}",
    )
    right.image(views.mosaic(result.plain_frames[t], n_cols, size), caption=f"unguided, predicted x0 at t = {t}")

st.subheader("Each sample next to its nearest training images")
st.caption(
    "Each row: the guided sample and the unguided sample from the same seed, each with its nearest training "
    "similarity and band, then the guided sample's nearest training images (high: a copy)."
)
views.show_with_neighbours(
    run,
    [
        (
            f"guided toward class {last.cls}",
            result.guided.images,
            [views.sample_caption("guided", result.guided, i) for i in range(last.n)],
        ),
        (
            "unguided (same seed)",
            result.plain.images,
            [views.sample_caption("unguided", result.plain, i) for i in range(last.n)],
        ),
    ],
    result.guided,
)

with st.expander("All classes, most promising first"):
    st.image(
        [views.mosaic(samples[examples[e.cls]], n_cols=2, size=size, target_px=48) for e in ranked],
        caption=[f"class {e.cls} · {e.copy_rate:.0%}" for e in ranked],
    )
