"""Guided extraction: sample toward one surrogate class and compare with the training set (SIDE step 6)."""

import streamlit as st

from app_support import forms, jobs, resources, state, views

st.title("Guided extraction")
st.markdown(
    "At every step inside the timestep window the model's noise prediction is shifted along the gradient of the "
    "surrogate classifier's log-probability of the target class, scaled by the guidance scale λ:"
)
st.latex(
    r"\hat\epsilon = \epsilon_\theta(x_t, t) - \lambda \sqrt{1 - \bar\alpha_t}\;\nabla_{x_t} \log p_\phi(y \mid x_t, t)"
)
st.caption(
    "Samples pulled into a small, dense class land on memorized training images more often than plain samples "
    "from the same seeds. λ = 0 is plain sampling."
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
# The attacker's ranking reads no training image and sets the default target; the ranking by copies
# (scored against the training set) is shown beside it for teaching only.
evidence = resources.pool_evidence(surrogate)
pool = resources.pool_score(run, surrogate)  # looked up once: every rerun (a slider scrub) runs this
by_copies = resources.ranked_classes(surrogate, pool)
state.default_target([e.cls for e in evidence])
last = state.GUIDED.get()
samples = resources.scored_samples(pool).images
members = resources.class_representatives(surrogate, per_class=8)

controls, panel = st.columns([2, 3], gap="large")
with controls:
    # bound to the session's target, which the cluster page's button and the buttons below set too;
    # kept while the user is on other pages
    target = views.target_picker("Target class", evidence, state.TARGET.name, persist_state="session")
    chosen = next(e for e in evidence if e.cls == target)
    cols = st.columns([0.9, 0.9, 1.2])
    cols[0].metric("Samples", chosen.size, help="Plain samples of the pool (N_syn) that fell in this class.")
    cols[1].metric(
        "Cohesion",
        f"{chosen.cohesion:.3f}",
        help="The mean cosine of its samples' features to their centre: how alike they are (1: identical).",
    )
    cols[2].metric(
        "Near-identical",
        f"{chosen.flagged_share:.0%}",
        help=f"{chosen.flagged} of its {chosen.size} pool samples have a near-identical partner in the pool (as "
        "close as the closest 5% of the pool's nearest-neighbour pairs): a model draws what it memorized again "
        "and again. No training image is read.",
    )
    weakest = evidence[-1]
    left, right = st.columns([1, 2])
    left.image(
        views.mosaic(samples[members[target][:4]], n_cols=4, size=size, target_px=40),
        caption=f"class {target}: pool samples",
    )
    if target != weakest.cls:
        right.button(
            f"Try the weakest class ({weakest.cls})",
            on_click=state.TARGET.set,
            args=(weakest.cls,),
            help="The class last in the ranking above, for contrast.",
        )
        right.caption(
            f"Class {weakest.cls}: {weakest.flagged_share:.0%} of its {weakest.size} pool samples near-identical. "
            "Guidance cannot place samples in a class the classifier cannot recognise: few land in it. Strong "
            "guidance then pulls them into the model's deepest memorized basins instead, the faces it draws most "
            "often, so they can still be copies, of a few faces."
        )
    else:
        right.button(
            f"Back to the best class ({evidence[0].cls})",
            on_click=state.TARGET.set,
            args=(evidence[0].cls,),
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
    landed = int((result.landed == last.cls).sum())
    cols = st.columns(3)  # two rows of metrics: five in one row cut their labels short
    cols[0].metric(
        f"Landed in class {last.cls}",
        f"{landed} / {last.n}",
        help="Guided samples whose surrogate class, by the pool's features and clustering, is the target: "
        "whether the classifier pulled them where it aimed. No training image is read.",
    )
    cols[1].metric("Copies, guided", f"{result.guided.n_copies} / {len(result.guided.nearest)}")
    cols[2].metric("Copies, unguided", f"{result.plain.n_copies} / {len(result.plain.nearest)}")
    nearest = "Mean similarity of the samples to their nearest training images"
    cols = st.columns(3)
    cols[0].metric("Similarity, guided", f"{result.guided.nearest.mean():.3f}", help=nearest)
    cols[1].metric("Similarity, unguided", f"{result.plain.nearest.mean():.3f}", help=nearest)
    faces = views.copied_faces(result.guided)
    cols[2].metric(
        "Faces copied, guided",
        len(faces),
        help="Distinct training images that the guided copies copy: "
        + (", ".join(f"train #{i} ({n}x)" for i, n in faces.items()) or "none"),
    )
    beyond = sorted(set(faces) - resources.pool_copied(pool))
    views.reach_metrics(
        resources.reach(surrogate, pool),
        (
            "Beyond the pool",
            len(beyond),
            "Faces the guided copies copy that no sample of the pool copies: what this run found that plain "
            "sampling had not. " + (", ".join(f"train #{i}" for i in beyond) or "None here."),
        ),
    )
    st.caption(views.guided_reading(last.cls, landed, last.n, faces))
    if hint := forms.steps_hint(last.sample.num_steps):
        st.warning(hint, icon=":material/blur_on:")
    timesteps = sorted(result.guided.frames, reverse=True)
    t = st.select_slider(
        "Scrub through sampling: predicted x0 at timestep",
        options=timesteps,
        value=timesteps[-1],
        format_func=lambda t: f"t = {t}",
        key=f"scrub_{result.key}",  # one slider per generation: its timesteps
    )
    n_cols = min(4, last.n)
    shown_members, left, right = st.columns(3)
    shown_members.image(
        views.mosaic(samples[members[last.cls][: last.n]], n_cols, size),
        caption=f"class {last.cls}: its pool samples, what guidance aims at",
    )
    left.image(
        views.mosaic(result.guided.frames[t], n_cols, size),
        caption=f"guided to class {last.cls}, predicted x0 at t = {t}",
    )
    right.image(views.mosaic(result.plain.frames[t], n_cols, size), caption=f"unguided, predicted x0 at t = {t}")

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
        [views.mosaic(samples[members[e.cls][:4]], n_cols=2, size=size, target_px=48) for e in evidence],
        caption=[f"class {e.cls} · {e.flagged_share:.0%} near-identical" for e in evidence],
    )
    st.caption(
        "The attacker's ranking next to the classes' copies. The last two columns score each class's pool samples "
        "against the training set, which an attacker does not have: they are here to show whether the attacker's "
        "evidence points where the copies are, and choose nothing."
    )
    st.dataframe(views.evidence_rows(evidence, by_copies), hide_index=True)
