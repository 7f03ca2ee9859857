"""Report: UnCond vs Cond vs SIDE at equal N_G, a guidance-scale sweep, the best extractions, downloads."""

from dataclasses import asdict

import plotly.graph_objects as go
import streamlit as st

import app_support as app
from side_core.report import markdown_table

st.title("Report")
st.markdown(
    "The paper's comparison at the same budget N_G, model and sampler: **UnCond** (plain sampling), **Cond** "
    "(guidance by a time-blind classifier) and **SIDE** (the time-dependent classifier). AMS: percent of samples "
    "whose nearest training image is in a band; UMS: distinct training images reached in that band, per sample."
)

run = app.require_run()
settings = app.surrogate_settings()
if app.stored_surrogate(run, settings) is None:
    st.info("The report needs surrogate classes for the current settings: generate and cluster first.")
    app.page_link(app.CLUSTER_PAGE, "Generate and cluster")
    st.stop()
last = app.CompareRequest(**st.session_state.get(app.COMPARE, {}))

st.subheader("UnCond vs Cond vs SIDE")
with st.form("compare"):
    cols = st.columns(3)
    n_samples = cols[0].number_input("N_G (samples per method)", 1, 100_000, last.n_samples, step=64, key="n_g")
    scale = cols[1].number_input(
        "Guidance scale λ", 0.0, 100.0, float(last.guidance_scale), step=0.5, key="compare_scale"
    )
    num_steps = cols[2].number_input("Sampler steps", 1, 10_000, last.num_steps, key="compare_steps")
    submitted = st.form_submit_button(
        "Compare",
        type="primary",
        help="Trains the missing classifiers (both), then generates N_G samples per method and scores them.",
    )
if submitted:
    request = app.CompareRequest(int(n_samples), float(scale), int(num_steps))
    with app.job():
        app.run_compare(run, settings, request, app.Progress())
        st.session_state[app.COMPARE] = asdict(request)
        st.rerun()  # draw the new stages, sidebar included

report = app.stored_compare(run, settings, last)
if report is None:
    st.info(
        f"No comparison is stored at N_G = {last.n_samples}, λ = {last.guidance_scale:g}, {last.num_steps} steps "
        "for the current classes: press **Compare**."
    )
else:
    st.markdown(markdown_table(report))
    st.caption(
        "AMS and UMS in percent of N_G; bands: "
        + ", ".join(f"{name} ≥ {low:.3f}" for name, (low, _) in report["similarity"]["bands"].items())
        + f" ({report['similarity']['name']} similarity). Distinct: training images with a sample in the high band."
    )
    st.caption(app.ratio_text(report))

    st.subheader("Best extractions")
    st.caption("Each pair: a generated sample and its nearest training image, distinct training images, best first.")
    bands = run.bands()
    for tab, method in zip(st.tabs(["SIDE", "Cond", "UnCond"]), ("side", "cond", "uncond"), strict=True):
        with tab:
            generated, training, sims, train_idx = app.best_pairs(run, report, method)
            images, captions = [], []
            for g, t, s, j in zip(
                app.tiles(generated, run.model.size), app.tiles(training, run.model.size), sims, train_idx, strict=True
            ):
                images += [g, t]
                captions += [f"{method} · {s:.3f} ({app.band_label(bands, s)})", f"train #{int(j)}"]
            st.image(images, caption=captions, width=images[0].shape[1])

    report_json, report_csv, pairs_zip = app.report_downloads(run, report)
    cols = st.columns(3)
    cols[0].download_button("Report (JSON)", report_json, "side_report.json", "application/json")
    cols[1].download_button("Table (CSV)", report_csv, "side_report.csv", "text/csv")
    cols[2].download_button("Image pairs (ZIP)", pairs_zip, "side_extractions.zip", "application/zip")

st.subheader("Guidance-scale sweep")
st.caption("SIDE at each λ with the N_G, steps and seeds above. Extraction rises, then falls as artifacts appear.")
sweep = st.session_state.get(app.SWEEP, {"scales": "0, 1, 2, 4, 8"})
with st.form("sweep"):
    scales_text = st.text_input("Guidance scales", sweep["scales"], key="scales")
    sweep_submitted = st.form_submit_button("Sweep")
if sweep_submitted:
    with app.job():
        scales = app.parse_scales(scales_text)
        app.run_sweep(run, settings, last, scales, app.Progress())
        st.session_state[app.SWEEP] = {"scales": scales_text}
        st.rerun()

with app.errors_shown(stop=True):
    rows = app.stored_sweep(run, settings, last, app.parse_scales(sweep["scales"]))
if rows is None:
    st.info("Press **Sweep** to run SIDE at each scale.")
    st.stop()
figure = go.Figure()
x = [row["scale"] for row in rows]
for band in ("high", "mid"):
    figure.add_trace(go.Scatter(x=x, y=[row["ams"][band] for row in rows], name=f"AMS {band} (%)"))
    figure.add_trace(go.Scatter(x=x, y=[row["ums"][band] for row in rows], name=f"UMS {band} (%)", line_dash="dot"))
figure.add_trace(go.Bar(x=x, y=[row["distinct"] for row in rows], name="distinct (high)", yaxis="y2", opacity=0.3))
figure.update_layout(
    xaxis_title="guidance scale λ",
    yaxis={"title": "percent of N_G", "rangemode": "tozero"},
    yaxis2={
        "title": "distinct training images (high)",
        "overlaying": "y",
        "side": "right",
        "rangemode": "tozero",
        "tickmode": "auto",
        "showgrid": False,
    },
    legend={"orientation": "h", "y": 1.12},
    height=400,
    margin={"t": 40},
)
st.plotly_chart(figure)
