"""Report: UnCond vs Cond vs SIDE at equal N_G, where guided samples landed, the whole SIDE run against UnCond, a
guidance-scale sweep, the best extractions, downloads."""

import streamlit as st

from app_support import figures, forms, jobs, resources, state, views
from side_core.inspection import pair_image
from side_core.report_files import markdown_table
from side_core.whole_run import whole_run_text

st.title("Report")
st.markdown(
    "The paper's comparison at the same budget N_G (samples generated per method), model and sampler: **UnCond** "
    "(plain sampling), **Cond** (guidance by a time-blind classifier) and **SIDE** (the time-dependent "
    "classifier). AMS: percent of samples whose nearest training image is in a band; UMS: distinct training "
    "images reached in that band, as a percent of N_G. A **copy** is a sample in the high band."
)

run = resources.require_run()
config = state.CONFIG.get()
surrogate = jobs.surrogate(config).stored(run)
if surrogate is None:
    st.info("The report needs surrogate classes for the current settings: generate and cluster first.")
    views.page_link(state.CLUSTER_PAGE, "Generate and cluster")
    st.stop()
t_max = run.model.scheduler.config.num_train_timesteps - 1

st.subheader("UnCond vs Cond vs SIDE")
with views.errors_shown():
    request = forms.compare(state.COMPARE.get(), t_max)
    if request is not None and jobs.do(jobs.compare(request.config(config)), run) is not None:
        state.COMPARE.set(request)
        st.rerun()  # draw the new stages, sidebar included
last = state.COMPARE.get()
compared = last.config(config)

report = jobs.compare(compared).stored(run)
if report is None:
    st.info(
        f"No comparison is stored at N_G = {last.n_samples}, λ = {last.guidance_scale:g}, {last.num_steps} steps "
        "for the current classes: press **Compare**."
    )
else:
    st.markdown(markdown_table(report))
    st.caption(
        "AMS and UMS in percent of N_G; bands: "
        + ", ".join(f"{name} ≥ {low:.3f}" for name, (low, _) in report.bands.items())
        + f" ({report.similarity['name']} similarity). Distinct: training images with a sample in the high band. "
        "Samples drawn in all: N_G, plus the N_syn pool for Cond and SIDE; filter: the pool's near-identical "
        "samples, no guidance. Landed: guided samples the pool's clustering puts in the class they were aimed at."
    )
    st.caption(views.ratio_text(report))
    if landed := views.landed_text(report):
        st.caption(landed)

    if report.whole_run is not None:
        st.subheader("The whole SIDE run against UnCond")
        st.caption(
            "What a user gets from all SIDE drew: the N_syn plain samples of its pool, then its N_G guided samples, "
            "against plain sampling with as many samples (the same pool, then UnCond's) and with the same wall time. "
            "Both runs start with the same pool, so their curves coincide up to the dashed line: UnCond is the wide, "
            "light line under SIDE's."
        )
        st.plotly_chart(figures.whole_run_figure(report.whole_run))
        st.caption(whole_run_text(report.whole_run))
        beyond = report.whole_run.beyond_pool()
        rate = beyond["per_1000"]
        views.reach_metrics(
            resources.reach(surrogate, resources.pool_score(run, surrogate)),
            (
                "Beyond pool: SIDE / UnCond",
                f"{beyond['side']} / {beyond['uncond']}",
                f"Training images copied that the pool had not: by SIDE's {beyond['samples']['side']} guided samples "
                f"({rate['side']:.1f} per 1,000) and by the {beyond['samples']['uncond']} plain samples UnCond draws "
                "after the pool"
                + ("" if rate["uncond"] is None else f" ({rate['uncond']:.1f} per 1,000)")
                + ". What SIDE adds over generate-and-filter.",
            ),
        )

    st.subheader("Best extractions")
    st.caption(
        "Each image is a pair: a generated sample (left) and its nearest training image (right), distinct training "
        "images, best first; each caption gives the similarity and its band (a copy: high)."
    )
    pairs = resources.report_pairs(run, report)
    scale = views.scale_for(run.model.size, 96)
    for tab, method in zip(st.tabs(["SIDE", "Cond", "UnCond"]), ("side", "cond", "uncond"), strict=True):
        p = pairs[method]
        images = [views.squeeze(pair_image(p.generated[i], p.training[i], scale)) for i in range(len(p))]
        tab.image(
            images,
            caption=[
                f"{method} · {s:.3f} ({report.bands.name_of(float(s)) or 'below'}) · train #{int(j)}"
                for s, j in zip(p.similarity, p.train_index, strict=True)
            ],
            width=images[0].shape[1] if images else "content",
        )

    report_json, report_csv, pairs_zip = resources.report_files(run, report)
    cols = st.columns(3)
    cols[0].download_button("Report (JSON)", report_json, "side_report.json", "application/json")
    cols[1].download_button(
        "Table (CSV)", report_csv, "side_report.csv", "text/csv", help="The table above, Filter's row included."
    )
    cols[2].download_button(
        "Copies, high band (ZIP)",
        pairs_zip,
        "side_copies_high_band.zip",
        "application/zip",
        help="Each method's best distinct extractions in the high band (up to 16), as sample | training image PNGs "
        "named method/rank_simS_trainI.png. Pairs below the high band are left out.",
    )

st.subheader("Guidance-scale sweep")
with views.errors_shown():
    scales = forms.sweep(state.SWEEP.get())
    if scales is not None and jobs.do(jobs.sweep(compared, scales), run) is not None:
        state.SWEEP.set(scales)
        st.rerun()
points = jobs.sweep(compared, state.SWEEP.get()).stored(run)
if points is None:
    st.info("Press **Sweep** to run SIDE at each scale.")
    st.stop()
st.plotly_chart(figures.sweep_figure(points))
st.caption(views.sweep_caption(points))
