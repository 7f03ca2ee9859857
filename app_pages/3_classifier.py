"""Surrogate classifier: p_phi(class | x_t, t), trained on noised copies of the labelled samples (SIDE step 5)."""

import streamlit as st

from app_support import figures, forms, jobs, resources, state, views
from side_core.classifier import ClassifierReport
from side_core.config import ExtractionConfig, SampleConfig
from side_core.inspection import class_copies
from side_core.kinds.classifier import Evaluation
from side_core.run import Run
from side_core.surrogate import Surrogate


def evaluation(found: dict[str, Surrogate], sample: SampleConfig) -> jobs.Work[tuple[dict[str, ClassifierReport], int]]:
    """Each classifier's held-out accuracy among the target classes at the timesteps of ``sample``'s
    sampler (a stage of its own, which a comparison with that sampler makes too), and
    the number of held-out samples it is measured on."""

    def make(run: Run, ui: object) -> tuple[dict[str, ClassifierReport], int]:
        stages = {m: Evaluation.make(run, f.classifiers[m], sample) for m, f in found.items()}
        reports = {m: found[m].classifier_report(m, stage) for m, stage in stages.items()}
        return reports, stages["side"].summary()["n_held_out"]

    return jobs.Work("Evaluate the classifiers", len(found) * sample.num_steps, make)


def trained_classifiers(run: Run, config: ExtractionConfig) -> dict[str, Surrogate]:
    """Method -> the surrogate with that classifier, for each one stored."""
    return {
        method: found
        for method in ("side", "cond")
        if (found := jobs.surrogate(config, (method,)).stored(run)) is not None
    }


st.title("Surrogate classifier")
st.markdown(
    "SIDE's classifier sees noisy images x_t and the timestep t; guidance follows the **gradient** of "
    "log p(class | x_t, t), so what matters is whether that gradient leads to the class's faces, not whether the "
    "classifier's top guess is right. The **Cond** baseline's classifier sees clean images only."
)

run = resources.require_run()
config = state.CONFIG.get()
surrogate = jobs.surrogate(config).stored(run)
if surrogate is None:
    st.info("There are no surrogate classes for the current settings yet: generate and cluster first.")
    views.page_link(state.CLUSTER_PAGE, "Generate and cluster")
    st.stop()

clusters = surrogate.clusters.summary()
if config.labels == "core":
    labelled = sum(e.flagged for e in resources.pool_evidence(surrogate))
    labels_text = (
        f" Core labels: only the {labelled} samples of those classes with a near-identical partner in the pool "
        "carry their class; every other sample carries the background label, which the classifier learns too but "
        "guidance never aims at. Accuracy below is measured on the labelled samples."
    )
elif clusters.get("background"):
    labels_text = (
        f" {config.n_syn - clusters['in_classes']} samples of dropped clusters carry the background label: the "
        "classifier learns it too, but guidance never aims at it, and accuracy below is measured on class members."
    )
else:
    labels_text = ""
st.caption(
    f"{clusters['n_classes']} surrogate classes from {config.n_syn} samples (K = {config.cluster.k}, "
    f"{config.cluster.keep_rule})." + labels_text
)

with views.errors_shown():
    asked = forms.classifier(config, cond_stored=jobs.surrogate(config, ("cond",)).stored(run) is not None)
    if asked is not None:
        new, methods = asked
        if jobs.do(jobs.surrogate(new, methods), run) is not None:
            jobs.do(
                evaluation(trained_classifiers(run, new), new.sample), run
            )  # seconds: the accuracy is there at once
            state.CONFIG.set(new)
            st.rerun()  # draw the new stages, sidebar included

trained = trained_classifiers(run, config)
if "side" not in trained:
    st.info(f"No classifier is stored for these classes at {config.classifier_train.steps} steps: press **Train**.")
    st.stop()

st.subheader("How well guidance toward each class extracts")
ranked = resources.ranked_classes(surrogate, resources.pool_score(run, surrogate))
compared = state.COMPARE.get()
report = jobs.compare(compared.config(config)).stored(run)
if report is None:
    st.info(
        "The dots are each class's expected copy rate, from its members. Run the comparison on the Report page to "
        "measure what SIDE's guidance toward each class gives."
    )
    views.page_link(state.REPORT_PAGE, "Compare UnCond, Cond and SIDE")
    per_class = plain_rate = None
else:
    per_class = class_copies(run, report)
    plain_rate = report.methods["uncond"].ams["high"] / 100
    cols = st.columns(3)
    cols[0].metric("Copies, SIDE-guided", f"{report.methods['side'].ams['high']:.0f}%")
    cols[1].metric("Copies, plain sampling", f"{plain_rate:.0%}")
    above, aimed_at = per_class.n_above(plain_rate)
    cols[2].metric("Classes above plain sampling", f"{above} of {aimed_at}")
    if landed := views.landed_text(report):
        st.caption(landed)
st.plotly_chart(figures.class_copies_figure(ranked, per_class, plain_rate))
if report is not None:
    st.caption(
        f"Bars: the share of the comparison's {report.methods['side'].n_generated} SIDE samples aimed at each class "
        f"(λ = {compared.guidance_scale:g}, about {report.methods['side'].n_generated // len(ranked)} "
        "per class) whose nearest training image is in the high band. Dots: the share of the class's own plain "
        "samples that are copies (this reads the training set, for teaching; the guided page ranks classes by "
        "the pool's near-identical samples instead)."
    )

names = {"side": "SIDE (time-dependent)", "cond": "Cond (time-blind)"}
n_targets = clusters["n_classes"]
chance = 1 / n_targets
st.subheader(f"Held-out accuracy among the {n_targets} target classes")
evaluated = evaluation(trained, config.sample).stored(run)
if evaluated is None and st.button("Measure accuracy at the sampler's timesteps", icon=":material/speed:"):
    evaluated = jobs.do(evaluation(trained, config.sample), run)
if evaluated is None:
    st.info(
        f"Accuracy is measured at the {config.sample.num_steps} timesteps of the {config.sample.sampler.upper()} "
        "sampler, where guidance acts: press the button (seconds). Training and comparing measure it too."
    )
else:
    reports, n_held_out = evaluated
    low, high = reports["side"].quartiles[0]  # the last quarter of sampling, where the faces are decided
    window = {m: r.timestep_mean(low, high) for m, r in reports.items()}
    if n_held_out == 0:
        st.info("No held-out sample carries a target class, so there is no accuracy to show: use more samples.")
    else:
        cols = st.columns(4)
        for col, (method, accuracy) in zip(cols, window.items(), strict=False):
            col.metric(
                f"{'SIDE' if method == 'side' else 'Cond'}, t {low}-{high}",
                f"{accuracy:.0%}",
                f"{accuracy / chance:.1f}x chance",
                delta_color="off",
                delta_arrow="off",
                help=f"The mean of the chart's {names[method]} points at t {low}-{high} (shaded).",
            )
        cols[2].metric("Chance", f"{chance:.1%}", f"1 in {n_targets} classes", delta_color="off", delta_arrow="off")
        cols[3].metric(
            "Held-out samples",
            n_held_out,
            help="Samples kept out of training that carry a target class: every accuracy here is over them.",
        )
        st.plotly_chart(figures.sampler_accuracy_figure(reports, names, chance, (low, high)))
        side = reports["side"]
        st.caption(
            f"Top-1 accuracy at each of the {len(side.timesteps)} timesteps of the {config.sample.sampler.upper()} "
            f"sampler, from the first (pure noise, t = {side.timesteps[0]}) to the last (t = {side.timesteps[-1]}): "
            f"the {n_held_out} held-out samples are noised to x_t, and the prediction is the likeliest of the "
            f"{n_targets} target classes (guidance never aims at the background label, so it is left out of both). "
            f"Chance is 1 in {n_targets}. The time-blind classifier gets the same x_t without t. At t = "
            f"{side.timesteps[-1]} SIDE's classifier names the class of {side.timestep_accuracy[-1]:.0%} of them, "
            f"at the first step {side.timestep_accuracy[0]:.0%}: early on x_t is mostly noise, and guidance there "
            "only nudges the sample. The guided page can restrict guidance to a timestep window."
        )

st.subheader("Training loss")
trained_reports = {method: found.classifier_report(method) for method, found in trained.items()}
st.plotly_chart(figures.loss_figure(trained_reports, names))
st.caption(
    "Training took "
    + ", ".join(f"{found.seconds(m)['classifier']:.0f} s ({names[m]})" for m, found in trained.items())
    + "."
)
views.page_link(state.GUIDED_PAGE, "Guide sampling toward a class")
