"""Surrogate classifier: p_phi(class | x_t, t), trained on noised copies of the labelled samples (SIDE step 5)."""

from dataclasses import replace

import plotly.graph_objects as go
import streamlit as st

import app_support as app

st.title("Surrogate classifier")
st.markdown(
    "SIDE's classifier sees noisy images x_t and the timestep t, so its gradient can steer sampling from the first "
    "step. The **Cond** baseline's classifier sees clean images only. Accuracy per timestep quartile shows where "
    "along the trajectory the class can be read from x_t, which is where guidance carries information."
)

run = app.require_run()
settings = app.surrogate_settings()
surrogate = app.stored_surrogate(run, settings)
if surrogate is None:
    st.info("There are no surrogate classes for the current settings yet: generate and cluster first.")
    app.page_link(app.CLUSTER_PAGE, "Generate and cluster")
    st.stop()

clusters = surrogate.clusters.summary()
st.caption(
    f"{clusters['n_classes']} surrogate classes from {settings.n_syn} samples (K = {settings.k}, "
    f"tau = {settings.tau:g})."
    + (
        f" {settings.n_syn - clusters.get('in_classes', settings.n_syn)} samples of dropped clusters carry the "
        "background label: the classifier learns it too, but guidance never aims at it, and accuracy below is "
        "measured on class members only. A classifier that often answers 'background' still has a gradient "
        "toward each class, which is what guidance uses."
        if clusters.get("background")
        else ""
    )
)

with st.form("train"):
    left, right = st.columns([1, 2])
    steps = left.number_input(
        "Training steps", min_value=1, max_value=200_000, value=settings.classifier_steps, step=100, key="steps"
    )
    with_cond = right.checkbox(
        "Also train the time-blind classifier (the report's Cond baseline)",
        value=app.stored_surrogate(run, replace(settings, classifier_steps=int(steps)), ("cond",)) is not None,
        key="with_cond",
    )
    submitted = st.form_submit_button("Train", type="primary")
if submitted:
    new_settings = replace(settings, classifier_steps=int(steps))
    with app.job():
        app.train_classifiers(run, new_settings, ("side", "cond") if with_cond else ("side",), app.Progress())
        app.set_surrogate_settings(new_settings)
        st.rerun()  # draw the new stages, sidebar included

trained = {
    method: found.classifiers[method]
    for method in ("side", "cond")
    if (found := app.stored_surrogate(run, settings, (method,))) is not None
}
if "side" not in trained:
    st.info(f"No classifier is stored for these classes at {settings.classifier_steps} steps: press **Train**.")
    st.stop()

names = {"side": "SIDE (time-dependent)", "cond": "Cond (time-blind)"}
summaries = {method: stage.summary() for method, stage in trained.items()}
side = summaries["side"]
cols = st.columns(4)
cols[0].metric("Clean accuracy (t = 0)", f"{side['clean_accuracy']:.0%}")
cols[1].metric("Chance", f"{side['chance']:.0%}")
cols[2].metric("Noisiest quartile", f"{side['accuracy'][-1]:.0%}")
cols[3].metric("Training time", f"{side['seconds']:.0f} s")

st.subheader("Held-out accuracy per timestep quartile")
figure = go.Figure()
for method, summary in summaries.items():
    figure.add_trace(
        go.Bar(
            x=[f"t {low}-{high}" for low, high in summary["quartiles"]],
            y=summary["accuracy"],
            name=names[method],
            text=[f"{a:.0%}" for a in summary["accuracy"]],
        )
    )
figure.add_hline(y=side["chance"], line_dash="dash", annotation_text="chance")
figure.update_layout(
    barmode="group", yaxis={"range": [0, 1], "tickformat": ".0%"}, height=360, margin={"t": 20}, legend_title=None
)
st.plotly_chart(figure)
st.caption(
    "Accuracy on held-out samples noised at t drawn inside each quartile of the schedule (the time-blind classifier "
    "gets the same x_t without t). Where it falls to chance, guidance is noise: the guided page lets you restrict "
    "guidance to a timestep window."
)

st.subheader("Training loss")
figure = go.Figure()
for method, summary in summaries.items():
    history = summary["loss_history"]
    figure.add_trace(go.Scatter(x=[s for s, _ in history], y=[loss for _, loss in history], name=names[method]))
figure.update_layout(xaxis_title="step", yaxis_title="cross-entropy (smoothed)", height=300, margin={"t": 20})
st.plotly_chart(figure)

app.page_link(app.GUIDED_PAGE, "Guide sampling toward a class")
