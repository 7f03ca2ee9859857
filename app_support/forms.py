"""The pages' input forms. Each returns what the user asked for once the form is submitted (None
before), and refuses every out-of-range value with a SideError that names the value and the range,
which the page shows: a browser's red field alone says nothing, and Streamlit then ignores the
submit silently. So number fields carry no min/max; the range is checked here."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from app_support import access, state
from side_core.config import UNKEPT, ExtractionConfig
from side_core.embed import FEATURES
from side_core.errors import SideError
from side_core.models import bundled_models_help

# Upper limits that keep a click in the app to minutes on a CPU; the CLI takes any size.
MAX_N_SYN = 65_536
MAX_K = 2_000
MAX_CLASSIFIER_STEPS = 200_000
MAX_GUIDED = 256
MAX_N_G = 10_000
MAX_SCALE = 100.0
# Fewer sampler steps than this leave visible noise. Measured on faces100-memorized (DDPM, 64 plain
# samples): 1 step gives pure noise (mean nearest similarity 0.08), 3 steps 17% copies, 10 steps 38%,
# 25 steps (the default) 44%.
FEW_STEPS = 10


def within(name: str, value: float, low: float, high: float, hint: str = "") -> None:
    """Refuse ``value`` outside [low, high] with a message that names both (and a hint)."""
    if not low <= value <= high:
        raise SideError(f"{name} = {value:g} is out of range: use {low:g} to {high:g}{hint}.")


def steps_hint(num_steps: int) -> str | None:
    """A warning for sampler step counts that leave the samples noisy, or None."""
    if num_steps >= FEW_STEPS:
        return None
    return (
        f"{num_steps} sampler step{'s' if num_steps > 1 else ''} leave{'s' if num_steps == 1 else ''} the samples "
        f"noisy: on the memorized bundled model 1 step gives pure noise, 3 steps 17% copies, 10 steps 38% and 25 "
        f"steps (the default) 44%. Use at least {FEW_STEPS}."
    )


MODEL_HELP = (
    f"Bundled: {bundled_models_help()}. Or a local diffusers folder (DDPMPipeline.save_pretrained or a UNet2DModel "
    "folder), or a hub id such as google/ddpm-cifar10-32 (online only)."
)
DATA_HELP = (
    "'default' (the bundled LFW faces) or a folder of images; they are converted to the model's channels and size."
)
LOCKED_HELP = " On this shared server: the bundled ones and the folders the operator allows (see the sidebar)."


def _spec_field(where, label: str, value: str, help: str, key: str, offered: list[str] | None) -> str:
    """A model or data spec: typed freely, or (``offered``: a locked visitor) picked from what the
    server offers, where anything typed in is checked when the form is submitted (access.Access.allow)."""
    if offered is None:
        return where.text_input(label, value=value, help=help, key=key)
    options = list(dict.fromkeys([value, *offered]))
    return where.selectbox(
        label, options, index=0, help=help + LOCKED_HELP, key=f"{key}_offered", accept_new_options=True
    )


def open_model(visitor: access.Access) -> tuple[str, str, int | None] | None:
    """(model spec, training-set spec, first N images or None) to open; a locked ``visitor`` picks
    among what the server offers."""
    with st.form("open"):
        left, middle, right = st.columns([3, 3, 1])
        locked = visitor.locked
        model_spec = _spec_field(
            left, "Model", state.MODEL.get(), MODEL_HELP, "open_model", visitor.choices("model") if locked else None
        )
        data_spec = _spec_field(
            middle,
            "Training set",
            state.DATA.get(),
            DATA_HELP,
            "open_data",
            visitor.choices("data") if locked else None,
        )
        n_data = right.number_input(
            "First N images",
            value=state.N_DATA.get() or 0,
            step=1,
            help="Keep only the first N training images (0: all). The faces40 model was trained on the first 40.",
            key="open_n_data",
        )
        if not st.form_submit_button("Open", type="primary"):
            return None
    within("First N images", n_data, 0, 10**9, " (0 keeps all)")
    return (model_spec or "").strip(), (data_spec or "").strip(), int(n_data) or None


def surrogate(config: ExtractionConfig) -> ExtractionConfig | None:
    """N_syn, feature, K, the kept fraction and what dropped clusters become (SIDE steps 1-4)."""
    # the app takes no SSCD file: the features that need one are the CLI's
    features = [name for name, feature in FEATURES.items() if not feature.needs_sscd_file]
    if config.cluster.feature not in features:
        raise SideError(
            f"The {config.cluster.feature} feature needs the SSCD TorchScript file, which the app does not take: "
            f"use {' or '.join(features)}, or the command line (--feature {config.cluster.feature} --sscd FILE)."
        )
    with st.form("generate"):
        cols = st.columns(5)
        n_syn = cols[0].number_input(
            "Samples N_syn",
            value=config.n_syn,
            step=64,
            help="The pool: plain samples of the model that SIDE draws first and clusters into classes.",
            key="n_syn",
        )
        feature = cols[1].selectbox(
            "Feature",
            features,
            index=features.index(config.cluster.feature),
            help="; ".join(f"{name}: {FEATURES.get(name).help}" for name in features) + ".",
            key="feature",
        )
        k = cols[2].number_input(
            "Clusters K", value=config.cluster.k, step=1, help="K-means clusters of the pool.", key="k"
        )
        keep_top = cols[3].slider(
            "Kept fraction",
            0.05,
            1.0,
            float(config.cluster.keep_top),
            step=0.05,
            help="The most cohesive clusters kept as surrogate classes, as a fraction of K (cohesion: the mean "
            "cosine of a cluster's samples to its centre).",
            key="keep_top",
        )
        unkept = cols[4].selectbox(
            "Samples of dropped clusters",
            UNKEPT,
            index=UNKEPT.index(config.cluster.unkept),
            help="background: one extra label, never a target, so classes stay tight; nearest: the paper's "
            "relabelling with the nearest kept cluster.",
            key="unkept",
        )
        if not st.form_submit_button("Generate and cluster", type="primary"):
            return None
    within("Samples N_syn", n_syn, 2, MAX_N_SYN, " in the app (the CLI takes more)")
    within("Clusters K", k, 2, min(MAX_K, n_syn - 1), " (K must be smaller than N_syn)")
    cluster = replace(
        config.cluster, feature=feature, k=int(k), keep_top=round(float(keep_top), 2), tau=None, unkept=unkept
    )
    return replace(config, n_syn=int(n_syn), cluster=cluster)


def classifier(config: ExtractionConfig, cond_stored: bool) -> tuple[ExtractionConfig, tuple[str, ...]] | None:
    """Training steps, and whether to train the time-blind (Cond) classifier too."""
    with st.form("train"):
        left, right = st.columns([1, 2])
        steps = left.number_input("Training steps", value=config.classifier_train.steps, step=100, key="steps")
        with_cond = right.checkbox(
            "Also train the time-blind classifier (the report's Cond baseline)", value=cond_stored, key="with_cond"
        )
        if not st.form_submit_button("Train", type="primary"):
            return None
    within("Training steps", steps, 1, MAX_CLASSIFIER_STEPS)
    new = replace(config, classifier_train=replace(config.classifier_train, steps=int(steps)))
    return new, ("side", "cond") if with_cond else ("side",)


def guided(defaults: state.GuidedRequest, target: int, t_max: int) -> state.GuidedRequest | None:
    """Guidance scale, timestep window, sampler steps, samples and seed, toward ``target``."""
    sample = defaults.sample
    with st.form("guide"):
        scale = st.slider("Guidance scale λ", 0.0, 50.0, float(sample.guidance_scale), step=0.5, key="scale")
        window = st.slider(
            "Guide only while the timestep t is in",
            0,
            t_max,
            tuple(sample.guidance_window) if sample.guidance_window else (0, t_max),
            help="Sampling runs from t = T-1 (noise) down to 0. Outside the window the step is plain.",
            key="window",
        )
        cols = st.columns(3)
        num_steps = cols[0].number_input(
            f"Sampler steps ({sample.sampler.upper()})", value=sample.num_steps, step=1, key="num_steps"
        )
        n = cols[1].number_input("Samples", value=defaults.n, step=1, key="n")
        seed = cols[2].number_input("Seed", value=defaults.seed, step=1, key="seed")
        if not st.form_submit_button("Generate", type="primary", icon=":material/play_arrow:"):
            return None
    within("Sampler steps", num_steps, 1, t_max + 1, " (the model's training timesteps)")
    within("Samples", n, 1, MAX_GUIDED, " in the app; the Report page compares larger budgets")
    within("Seed", seed, 0, 2**31 - 1)
    window = None if tuple(window) == (0, t_max) else tuple(int(t) for t in window)
    new_sample = replace(sample, guidance_scale=float(scale), guidance_window=window, num_steps=int(num_steps))
    return state.GuidedRequest(cls=int(target), sample=new_sample, n=int(n), seed=int(seed))


def compare(last: state.CompareRequest, t_max: int) -> state.CompareRequest | None:
    """N_G, guidance scale and sampler steps of the three-method comparison."""
    with st.form("compare"):
        cols = st.columns(3)
        n_samples = cols[0].number_input("N_G (samples per method)", value=last.n_samples, step=64, key="n_g")
        scale = cols[1].number_input(
            "Guidance scale λ", value=float(last.guidance_scale), step=0.5, key="compare_scale"
        )
        num_steps = cols[2].number_input("Sampler steps", value=last.num_steps, step=1, key="compare_steps")
        submitted = st.form_submit_button(
            "Compare",
            type="primary",
            help="Trains the missing classifiers (both), then generates N_G samples per method and scores them.",
        )
    if not submitted:
        return None
    within("N_G", n_samples, 1, MAX_N_G, " in the app (the CLI takes more)")
    within("Guidance scale λ", scale, 0, MAX_SCALE, "; 0 is plain sampling")
    within("Sampler steps", num_steps, 1, t_max + 1, " (the model's training timesteps)")
    return state.CompareRequest(int(n_samples), float(scale), int(num_steps))


def parse_scales(text: str) -> tuple[float, ...]:
    """'0, 1, 2.5' -> (0.0, 1.0, 2.5), sorted and distinct; anything else is a SideError."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        scales = tuple(float(p) for p in parts)
    except ValueError as err:
        raise SideError(f"Guidance scales must be numbers separated by commas, e.g. '0, 1, 2, 4' ({err}).") from err
    if not scales:
        raise SideError("Give at least one guidance scale, e.g. '0, 1, 2, 4'.")
    for scale in scales:
        within("Guidance scale", scale, 0, MAX_SCALE, "; 0 is plain sampling")
    return tuple(sorted(set(scales)))


def sweep(scales: tuple[float, ...]) -> tuple[float, ...] | None:
    """The guidance scales of a sweep."""
    with st.form("sweep"):
        text = st.text_input("Guidance scales", ", ".join(f"{s:g}" for s in scales), key="scales")
        if not st.form_submit_button("Sweep"):
            return None
    return parse_scales(text)
