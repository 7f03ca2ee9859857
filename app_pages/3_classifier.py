"""Surrogate classifier: p_phi(class | x_t, t), trained on noised copies of the labelled samples (SIDE step 5)."""

import streamlit as st

from app_support import figures, forms, jobs, resources, state, views
from side_core.inspection import class_copies

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
    labelled = sum(e.flagged for e in resources.pool_evidence(run, surrogate))
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
            state.CONFIG.set(new)
            st.rerun()  # draw the new stages, sidebar included

trained = {  # method -> the surrogate with that classifier, for each one stored
    method: found for method in ("side", "cond") if (found := jobs.surrogate(config, (method,)).stored(run)) is not None
}
if "side" not in trained:
    st.info(f"No classifier is stored for these classes at {config.classifier_train.steps} steps: press **Train**.")
    st.stop()

st.subheader("How well guidance toward each class extracts")
ranked = resources.ranked_classes(run, surrogate)
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

st.subheader("Held-out accuracy on the target classes, per timestep quartile")
names = {"side": "SIDE (time-dependent)", "cond": "Cond (time-blind)"}
reports = {method: found.classifier_report(method) for method, found in trained.items()}
side = reports["side"]
cols = st.columns(4)
cols[0].metric(
    f"Accuracy, t {side.quartiles[0][0]}-{side.quartiles[0][1]}",
    f"{side.accuracy[0]:.0%}",
    f"{side.accuracy[0] / side.chance:.1f}x chance",
    delta_color="off",
    delta_arrow="off",
)
cols[1].metric("Clean accuracy (t = 0)", f"{side.clean_accuracy:.0%}")
cols[2].metric(
    "Chance", f"{side.chance:.1%}", f"1 in {round(1 / side.chance)} labels", delta_color="off", delta_arrow="off"
)
cols[3].metric("Training time", f"{trained['side'].seconds('side')['classifier']:.0f} s")
st.plotly_chart(figures.accuracy_figure(reports, names))
st.caption(
    "Top-1 accuracy on held-out class members noised at t drawn inside each quartile (the time-blind classifier gets "
    "the same x_t without t). At large t, x_t is mostly noise and no classifier can name the class; guidance there "
    "still nudges the sample, and the faces are decided in the last quartile, where the classifier reads the class "
    "several times better than chance. The guided page can restrict guidance to a timestep window."
)

# accuracy at the sampler's own timesteps, where guidance acts: evaluated by a comparison with this sampler
evaluated = {
    method: found.classifier_report(method, stage)
    for method, found in trained.items()
    if (stage := run.stored(lambda r, f=found, m=method: r.evaluation(f.classifiers[m], config.sample))) is not None
}
if evaluated:
    st.subheader("Held-out accuracy at the sampler's timesteps")
    st.plotly_chart(figures.sampler_accuracy_figure(evaluated, names))
    st.caption(
        f"The {config.sample.num_steps} timesteps of the {config.sample.sampler.upper()} sampler, "
        "from the first (pure noise) to the last. Accuracy among the target classes: with core labels most samples "
        "are background, which is left out here, both from the scored samples and from the prediction (guidance "
        "never aims at it), so only the few repeated samples of each class are scored."
    )

st.subheader("Training loss")
st.plotly_chart(figures.loss_figure(reports, names))
views.page_link(state.GUIDED_PAGE, "Guide sampling toward a class")
