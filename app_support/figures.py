"""The app's Plotly figures: the cluster map, histograms, accuracy, copies, sweep and whole-run curves.

Pure functions from the engine's typed results to figures; the pages lay them out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from side_core.classifier import ClassifierReport
from side_core.cluster import ClassEvidence, Clustering
from side_core.inspection import ClassCopies, Scored
from side_core.metrics import Bands
from side_core.report import SweepPoint
from side_core.whole_run import WholeRun


def class_colours(n: int) -> list[str]:
    """n colours that stay apart for 40-100 classes: hues a golden angle apart, lightness in three
    steps, so that neighbouring class ids never share a look."""
    return [f"hsl({i * 137.508 % 360:.0f}, {(75, 55, 90)[i % 3]}%, {(45, 62, 32)[i % 3]}%)" for i in range(n)]


def label_name(c: Clustering, label: int) -> str:
    """'class 3', or 'background' for the label of samples whose cluster was dropped."""
    return "background" if label == c.n_classes else f"class {label}"


def cluster_map(
    xy: np.ndarray, c: Clustering, scores: Scored, highlight: int | None = None, selected: Sequence[int] = ()
) -> go.Figure:
    """The samples' 2-D map coloured by surrogate class (background grey, behind); copies are
    diamonds. ``highlight`` draws one class on top, larger and outlined; ``selected`` samples get a
    red ring on top of everything. Nothing is faded. custom_data holds [sample id, nearest
    similarity] of every point, for selections."""
    colours = class_colours(c.n_classes)
    groups = []  # (sample ids, trace name, marker)
    if c.background:
        groups.append((np.flatnonzero(c.labels == c.n_classes), "background", {"color": "lightgrey", "opacity": 0.6}))
    in_class = np.flatnonzero((c.labels < c.n_classes) & (c.labels != (-1 if highlight is None else highlight)))
    groups.append((in_class, "surrogate classes", {"color": [colours[c.labels[i]] for i in in_class]}))
    if highlight is not None:
        ids = np.flatnonzero(c.labels == highlight)
        marker = {"color": colours[highlight], "size": 12, "line": {"width": 1.5, "color": "black"}}
        groups.append((ids, f"class {highlight}", marker))
    if len(selected):
        few = len(selected) <= 3  # a click: a wide ring; a lasso of many: rings that leave the points visible
        ring = {"color": "rgba(0,0,0,0)", "size": 30 if few else 14, "opacity": 1.0}
        ring["line"] = {"width": 4 if few else 1.5, "color": "#e4002b"}  # red: apart from the outlined class
        groups.append((np.asarray(selected, dtype=np.int64), "selected", {**ring, "symbol": "circle"}))
    figure = go.Figure()
    for ids, name, marker in groups:
        figure.add_trace(
            go.Scatter(
                x=xy[ids, 0],
                y=xy[ids, 1],
                mode="markers",
                name=name,
                # Plain lists: numpy arrays travel as typed-array dicts and come back that way in selections.
                customdata=[[int(i), float(scores.nearest[i])] for i in ids],
                text=[f"{label_name(c, int(c.labels[i]))}{' · a copy' if scores.is_copy[i] else ''}" for i in ids],
                marker={
                    "size": 8,
                    "opacity": 0.9,
                    "symbol": ["diamond" if scores.is_copy[i] else "circle" for i in ids],
                    "line": {"width": 0},
                    **marker,
                },
                # Plotly fades what a selection leaves out; the page rings the selection instead.
                unselected={"marker": {"opacity": 0.9}},
                hovertemplate="sample #%{customdata[0]} · %{text}<br>nearest training image %{customdata[1]:.3f}"
                "<extra></extra>",
            )
        )
    figure.update_layout(
        height=520,
        margin={"t": 10, "b": 10, "l": 10, "r": 10},
        # Pan, not lasso: in lasso mode Plotly sends no click, so a single point could not be picked.
        # The lasso and box tools stay in the modebar.
        dragmode="pan",
        showlegend=False,  # 40-100 classes: the hover names the class, and "highlight" picks one out
    )
    figure.update_xaxes(showticklabels=False, title=None)
    figure.update_yaxes(showticklabels=False, title=None)
    return figure


def band_histogram(train_similarity: np.ndarray, bands: Bands, similarity_name: str) -> go.Figure:
    """The train-vs-train nearest-neighbour similarities with the band thresholds drawn on."""
    figure = go.Figure(go.Histogram(x=train_similarity, nbinsx=40, name="train vs train", marker_color="#7f8c8d"))
    positions = {"low": "top left", "mid": "top left", "high": "top right"}  # mid and high are often close
    for name, (low, _high) in bands.items():
        figure.add_vline(
            x=low, line_dash="dash", annotation_text=f"{name} ≥ {low:.3f}", annotation_position=positions[name]
        )
    figure.update_layout(
        xaxis_title=f"similarity of each training image to its nearest other training image ({similarity_name})",
        yaxis_title="training images",
        height=320,
        margin={"t": 40, "b": 40},
        showlegend=False,
    )
    return figure


def sampler_accuracy_figure(
    reports: dict[str, ClassifierReport], names: dict[str, str], chance: float, window: tuple[int, int]
) -> go.Figure:
    """Held-out accuracy among the target classes at each timestep the sampler visits (where guidance
    acts), t falling left to right as sampling runs; ``chance`` (1 in the number of target classes)
    drawn, and the timestep ``window`` the page sums up shaded."""
    figure = go.Figure()
    for (method, report), symbol in zip(reports.items(), ("circle", "diamond"), strict=False):
        figure.add_trace(
            go.Scatter(
                x=report.timesteps,
                y=report.timestep_accuracy,
                mode="lines+markers",
                name=names[method],
                marker={"symbol": symbol},
                line={"dash": "solid" if symbol == "circle" else "dot"},
                hovertemplate="t = %{x}: %{y:.0%}<extra>" + names[method] + "</extra>",
            )
        )
    figure.add_vrect(
        x0=window[0],
        x1=window[1],
        fillcolor="grey",
        opacity=0.12,
        line_width=0,
        annotation_text=f"t {window[0]}-{window[1]}",
        annotation_position="top left",
    )
    figure.add_hline(
        y=chance, line_dash="dash", annotation_text=f"chance {chance:.1%}", annotation_position="bottom right"
    )
    top = max([chance, *(a for r in reports.values() for a in r.timestep_accuracy if a == a)])
    figure.update_layout(
        xaxis={"title": "sampler timestep t (sampling runs left to right)", "autorange": "reversed"},
        yaxis={"tickformat": ".0%", "title": "top-1 accuracy among the target classes", "range": [0, top * 1.15]},
        height=340,
        margin={"t": 30},
        legend={"orientation": "h", "y": 1.12},
        legend_title=None,
    )
    return figure


def class_copies_figure(
    ranked: list[ClassEvidence], per_class: ClassCopies | None, plain_rate: float | None
) -> go.Figure:
    """Per class, most promising first: its expected copy rate from its members (dots) and, from a
    comparison, the share of guided samples aimed at it that are copies (bars) and plain sampling's
    rate (dashed)."""
    x = [str(e.cls) for e in ranked]
    figure = go.Figure()
    if per_class is not None:
        figure.add_trace(
            go.Bar(
                x=x,
                y=[per_class.rate(e.cls) for e in ranked],
                name="guided samples that are copies",
                customdata=[[int(per_class.aimed[e.cls]), int(per_class.copies[e.cls])] for e in ranked],
                hovertemplate="class %{x}: %{customdata[1]} of %{customdata[0]} guided samples are copies"
                "<extra></extra>",
            )
        )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=[e.copy_rate for e in ranked],
            mode="markers",
            name="expected: members that are copies",
            marker_color="black",
        )
    )
    if plain_rate is not None:
        figure.add_hline(y=plain_rate, line_dash="dash", annotation_text=f"plain sampling {plain_rate:.0%}")
    figure.update_layout(
        xaxis={"title": "surrogate class, most promising first", "type": "category"},
        yaxis={"range": [0, 1.05], "tickformat": ".0%", "title": "copies"},
        height=340,
        margin={"t": 20},
        legend={"orientation": "h", "y": 1.12},
    )
    return figure


def sweep_figure(points: list[SweepPoint]) -> go.Figure:
    """AMS and UMS (mid and high band) and the distinct faces (bars, right axis) at each guidance
    scale; the scales are evenly spaced categories, so every bar is whole, and the right axis ends
    above the highest bar, whose count is written on it."""
    figure = go.Figure()
    x = [f"{p.scale:g}" for p in points]
    for band in ("high", "mid"):
        figure.add_trace(go.Scatter(x=x, y=[p.ams[band] for p in points], name=f"AMS {band} (%)"))
        figure.add_trace(go.Scatter(x=x, y=[p.ums[band] for p in points], name=f"UMS {band} (%)", line_dash="dot"))
    distinct = [p.distinct for p in points]
    figure.add_trace(
        go.Bar(
            x=x,
            y=distinct,
            name="distinct training images (high)",
            yaxis="y2",
            opacity=0.3,
            text=distinct,
            textposition="outside",
        )
    )
    figure.update_layout(
        xaxis={"title": "guidance scale λ", "type": "category"},
        yaxis={"title": "percent of N_G", "rangemode": "tozero"},
        yaxis2={
            "title": "distinct training images (high)",
            "overlaying": "y",
            "side": "right",
            "range": [0, max(distinct, default=0) * 1.25 + 1],
            "tickmode": "auto",  # its own ticks (whole faces), not the percent axis's
            "showgrid": False,
        },
        legend={"orientation": "h", "y": 1.12},
        height=400,
        margin={"t": 40},
    )
    return figure


def whole_run_figure(whole: WholeRun) -> go.Figure:
    """Distinct training images (high band) against samples drawn: the SIDE run (its pool, then its
    guided samples) and UnCond (the same pool, then plain samples), and UnCond at the SIDE run's wall
    time. The two runs share the pool, so their curves coincide up to it: UnCond is drawn wide and
    light under SIDE's narrow line, so both stay visible where they overlap."""
    x = list(range(1, whole.n_total + 1))
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=x,
            y=whole.uncond_curve,
            name="UnCond: pool, then plain samples",
            line={"width": 7, "color": "rgba(255, 127, 14, 0.45)"},
        )
    )
    side = {"width": 2, "color": "#1f3b73"}
    figure.add_trace(go.Scatter(x=x, y=whole.side_curve, name="SIDE run: pool, then guided samples", line=side))
    if whole.uncond_same_time is not None:
        figure.add_trace(
            go.Scatter(
                x=[whole.n_same_time],
                y=[whole.uncond_same_time],
                mode="markers",
                marker={"size": 10, "symbol": "x"},
                name=f"UnCond at the SIDE run's wall time ({whole.n_same_time} samples)",
            )
        )
    figure.add_vline(
        x=whole.n_syn + 0.5,
        line_dash="dash",
        annotation_text="the shared pool ends, guided samples begin",
        annotation_position="top left",
    )
    figure.update_layout(
        xaxis_title="samples drawn",
        yaxis={"title": "distinct training images (high band)", "rangemode": "tozero"},
        legend={"orientation": "h", "y": 1.15},
        height=360,
        margin={"t": 40},
    )
    return figure


def loss_figure(reports: dict[str, ClassifierReport], names: dict[str, str]) -> go.Figure:
    figure = go.Figure()
    for method, report in reports.items():
        history = report.loss_history
        figure.add_trace(go.Scatter(x=[s for s, _ in history], y=[loss for _, loss in history], name=names[method]))
    figure.update_layout(xaxis_title="step", yaxis_title="cross-entropy (smoothed)", height=300, margin={"t": 20})
    return figure
