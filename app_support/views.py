"""What the pages draw: errors, progress, image grids, figures, captions, the sidebar. Pure
presentation of engine results: every number shown here was computed by ``side_core``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from app_support import state
from app_support.access import Access
from side_core.classifier import ClassifierReport
from side_core.cluster import ClassEvidence, Clustering, band_counts
from side_core.config import ExtractionConfig
from side_core.errors import SideError
from side_core.images import grid, to_uint8, upscale_nearest
from side_core.inspection import ClassCopies, PoolEvidence, Scored
from side_core.metrics import BAND_NAMES, Bands
from side_core.pipeline import Run
from side_core.report import Report, SweepPoint
from side_core.sampling import SampleProgress
from side_core.whole_run import WholeRun

# -- errors ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def errors_shown(stop: bool = False) -> Iterator[None]:
    """Show a SideError (bad input) as st.error with the engine's message; anything else is a bug
    and keeps its traceback. ``stop``: end the page there."""
    try:
        yield
    except SideError as err:
        st.error(str(err), icon=":material/error:")
        if stop:
            st.stop()


# -- progress -------------------------------------------------------------------------------------


class Progress:
    """A progress bar fed by the engine's callbacks (``say``, sample and classifier progress). It is
    drawn on the first callback, so work that is already stored leaves no empty bar behind."""

    def __init__(self, text: str = "Starting..."):
        self.text = text
        self.slot = st.empty()

    def _show(self, done: float, text: str) -> None:
        self.slot.progress(min(max(done, 0.0), 1.0), text=text)

    def say(self, message: str) -> None:
        """The engine's step (e.g. "scale 2: generating 64 samples"): it prefixes every later line."""
        self.text = message[:1].upper() + message[1:]
        self._show(0.0, self.text)

    def sample(self, p: SampleProgress) -> None:
        done = (p.batch * p.n_steps + p.step) / (p.n_batches * p.n_steps)
        self._show(done, f"{self.text}: batch {p.batch + 1}/{p.n_batches}, step {p.step}/{p.n_steps}")

    def classifier(self, step: int, total: int, loss: float) -> None:
        if step % max(1, total // 100) == 0 or step == total:
            self._show(step / total, f"{self.text}: step {step}/{total}, loss {loss:.3f}")

    def hooks(self) -> dict:
        """The engine's progress callbacks, all to this bar."""
        return {"say": self.say, "sample_progress": self.sample, "classifier_progress": self.classifier}

    def clear(self) -> None:
        self.slot.empty()


class LiveGrid:
    """Generations side by side, each showing its batch's predicted x0 every few denoising steps so
    that faces visibly form. A column is drawn on its first callback (a stored twin stays empty)."""

    def __init__(self, titles: tuple[str, ...], size: int, n_cols: int = 4, updates: int = 10):
        self.titles, self.size, self.n_cols, self.updates = titles, size, n_cols, updates
        self.columns = [(column.empty(), column.empty()) for column in st.columns(len(titles))]

    def feed(self, i: int) -> Callable[[SampleProgress], None]:
        image, bar = self.columns[i]
        title = self.titles[i]

        def show(p: SampleProgress) -> None:
            every = max(1, p.n_steps // self.updates)
            if p.step % every == 0 or p.step in (1, p.n_steps):
                image.image(
                    mosaic(p.x0_pred, min(self.n_cols, len(p.x0_pred)), self.size),
                    caption=f"{title}: predicted x0 after step {p.step}/{p.n_steps} (t = {p.t})",
                )
            done = (p.batch * p.n_steps + p.step) / (p.n_batches * p.n_steps)
            bar.progress(min(done, 1.0), text=f"{title}: batch {p.batch + 1}/{p.n_batches}, step {p.step}/{p.n_steps}")

        return show

    def clear(self) -> None:
        for image, bar in self.columns:
            image.empty()
            bar.empty()


# -- images ---------------------------------------------------------------------------------------


def scale_for(size: int, target_px: int = 112) -> int:
    """Nearest-neighbour factor that shows a size x size image about target_px wide."""
    return max(1, round(target_px / size))


def squeeze(image: np.ndarray) -> np.ndarray:
    """(H, W, 1) -> (H, W) for st.image; colour images pass through."""
    return image[..., 0] if image.shape[-1] == 1 else image


def tiles(images: torch.Tensor, size: int, target_px: int = 112) -> list[np.ndarray]:
    """(N, C, H, W) float in [-1, 1] -> N blocky uint8 images about target_px wide."""
    return [squeeze(im) for im in upscale_nearest(to_uint8(images), scale_for(size, target_px))]


def mosaic(images: torch.Tensor, n_cols: int, size: int, target_px: int = 96) -> np.ndarray:
    """(N, C, H, W) float in [-1, 1] -> one blocky uint8 grid image."""
    return squeeze(grid(upscale_nearest(to_uint8(images), scale_for(size, target_px)), n_cols, pad=3))


def show_with_neighbours(
    run: Run, columns: Sequence[tuple[str, torch.Tensor, list[str]]], neighbours: Scored, max_rows: int = 32
) -> None:
    """A table of images, one row per sample: the given columns (title, (N, C, H, W) images, N
    captions), then the nearest training images of ``neighbours``' samples with similarity and band."""
    size, n, k = run.model.size, len(neighbours.index), neighbours.index.shape[1]
    titles = [title for title, _, _ in columns] + [f"nearest training image {j + 1}" for j in range(k)]
    for cell, title in zip(st.columns(len(titles)), titles, strict=True):
        cell.markdown(f"**{title}**")
    shown = [tiles(images[:max_rows], size) for _, images, _ in columns]
    for i in range(min(n, max_rows)):
        cells = st.columns(len(titles))
        for cell, images, (_, _, captions) in zip(cells, shown, columns, strict=False):
            cell.image(images[i], caption=captions[i], width=images[i].shape[1])
        row_tiles = tiles(run.data.images[torch.from_numpy(neighbours.index[i])], size)
        for cell, image, j, sim in zip(
            cells[len(columns) :], row_tiles, neighbours.index[i], neighbours.similarity[i], strict=True
        ):
            cell.image(image, caption=f"train #{int(j)} · {sim:.3f} · {neighbours.band(sim)}", width=image.shape[1])
    if n > max_rows:
        st.caption(f"The first {max_rows} of {n} samples are shown.")


def sample_caption(name: str, scores: Scored, i: int) -> str:
    """'guided #3 · 0.912 · high': a sample, its nearest training similarity and band."""
    return f"{name} #{i} · {scores.nearest[i]:.3f} · {scores.band(scores.nearest[i])}"


# -- the map of the samples --------------------------------------------------------------------------


def class_colours(n: int) -> list[str]:
    """n colours that stay apart for 40-100 classes: hues a golden angle apart, lightness in three
    steps, so that neighbouring class ids never share a look."""
    return [f"hsl({i * 137.508 % 360:.0f}, {(75, 55, 90)[i % 3]}%, {(45, 62, 32)[i % 3]}%)" for i in range(n)]


def label_name(c: Clustering, label: int) -> str:
    """'class 3', or 'background' for the label of samples whose cluster was dropped."""
    return "background" if label == c.n_classes else f"class {label}"


def cluster_map(xy: np.ndarray, c: Clustering, scores: Scored, highlight: int | None = None) -> go.Figure:
    """The samples' 2-D map coloured by surrogate class (background grey, behind); near-copies are
    diamonds; ``highlight`` draws one class on top, outlined, and fades the rest. custom_data holds
    [sample id, K-means cluster, nearest similarity] of every point, for selections."""
    colours = class_colours(c.n_classes)
    groups = []  # (sample ids, trace name, marker)
    if c.background:
        groups.append((np.flatnonzero(c.labels == c.n_classes), "background", {"color": "lightgrey", "opacity": 0.5}))
    in_class = np.flatnonzero((c.labels < c.n_classes) & (c.labels != (-1 if highlight is None else highlight)))
    faded = highlight is not None
    groups.append(
        (
            in_class,
            "surrogate classes",
            {"color": [colours[c.labels[i]] for i in in_class], "opacity": 0.45 if faded else 0.9},
        )
    )
    if faded:
        ids = np.flatnonzero(c.labels == highlight)
        groups.append(
            (
                ids,
                f"class {highlight}",
                {"color": colours[highlight], "size": 12, "line": {"width": 1.5, "color": "black"}},
            )
        )
    figure = go.Figure()
    for ids, name, marker in groups:
        figure.add_trace(
            go.Scatter(
                x=xy[ids, 0],
                y=xy[ids, 1],
                mode="markers",
                name=name,
                # Plain lists: numpy arrays travel as typed-array dicts and come back that way in selections.
                customdata=[[int(i), int(c.kmeans_labels[i]), float(scores.nearest[i])] for i in ids],
                text=[label_name(c, int(c.labels[i])) for i in ids],
                marker={
                    "size": 8,
                    "symbol": ["diamond" if scores.is_copy[i] else "circle" for i in ids],
                    "line": {"width": 0},
                    **marker,
                },
                hovertemplate="sample #%{customdata[0]} · %{text}<br>K-means cluster %{customdata[1]}"
                "<br>nearest training image %{customdata[2]:.3f}<extra></extra>",
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


def ids_from_selection(event) -> list[int]:
    """Sample ids (custom_data[0]) of the points selected in a Plotly chart, in order."""
    selection = event.get("selection") if event else None
    points = selection.get("points", []) if selection else []
    ids = []
    for point in points:
        custom = point.get("customdata")
        if custom is not None:
            sample_id = int(custom[0] if isinstance(custom, list | tuple) else custom)
            if sample_id not in ids:
                ids.append(sample_id)
    return ids


def cluster_rows(c: Clustering, scores: Scored) -> list[dict]:
    """One row per K-means cluster for a table: size, cohesion, surrogate class, members per band."""
    counts = band_counts(c.kmeans_labels, scores.nearest, scores.bands, len(c.sizes))
    class_of = {int(k): i for i, k in enumerate(c.kept)}
    rows = []
    for k in range(len(c.sizes)):
        row = {
            "cluster": k,
            "surrogate class": class_of.get(k),
            "size": int(c.sizes[k]),
            "cohesion": round(float(c.cohesion[k]), 3),
        }
        row.update({f"{name} band": int(counts[k, BAND_NAMES.index(name)]) for name in reversed(BAND_NAMES)})
        rows.append(row)
    return sorted(rows, key=lambda r: (r["surrogate class"] is None, r["surrogate class"] or 0, r["cluster"]))


def pool_label(e: PoolEvidence) -> str:
    """'class 3 · 40% near-identical · 50 samples': a class with its attacker-side evidence."""
    return f"class {e.cls} · {e.flagged_share:.0%} near-identical · {e.size} samples"


def target_picker(label: str, evidence: list[PoolEvidence], key: str, where=st, **kwargs) -> int:
    """A select box of the surrogate classes in the attacker's order (``rank_by_pool``)."""
    by_id = {e.cls: e for e in evidence}
    return where.selectbox(
        label,
        [e.cls for e in evidence],
        format_func=lambda c: pool_label(by_id[c]),
        help="Most promising first, by what an attacker sees without the training set: the share of the class's "
        "pool samples that have a near-identical partner in the pool (a model draws what it memorized again and "
        "again), ties by cohesion.",
        key=key,
        **kwargs,
    )


def evidence_rows(evidence: list[PoolEvidence], ranked: list[ClassEvidence]) -> list[dict]:
    """One row per class in the attacker's order: its pool evidence, then, scored against the training
    set, the share of its pool samples that are copies and that ranking's place."""
    by_copies = {e.cls: (rank, e) for rank, e in enumerate(ranked, start=1)}
    return [
        {
            "class": e.cls,
            "rank": rank,
            "pool samples": e.size,
            "cohesion": round(e.cohesion, 3),
            "with a near-identical partner": f"{e.flagged} ({e.flagged_share:.0%})",
            "copies (uses the training set)": f"{by_copies[e.cls][1].copy_rate:.0%}",
            "rank by copies (uses the training set)": by_copies[e.cls][0],
        }
        for rank, e in enumerate(evidence, start=1)
    ]


def majority_class(c: Clustering, ids: list[int]) -> int | None:
    """The surrogate class most of these samples belong to (None: all background)."""
    labels = c.labels[ids]
    labels = labels[labels < c.n_classes]
    return int(np.bincount(labels).argmax()) if len(labels) else None


# -- figures --------------------------------------------------------------------------------------


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


def accuracy_figure(reports: dict[str, ClassifierReport], names: dict[str, str]) -> go.Figure:
    """Held-out accuracy per timestep quartile, each bar labelled (0% too), chance drawn, the y axis
    from 0 to a little above the highest value so that small accuracies stay readable."""
    figure = go.Figure()
    top = 0.0
    for method, report in reports.items():
        accuracy = report.accuracy
        top = max(top, *accuracy, report.chance)
        figure.add_trace(
            go.Bar(
                x=[f"t {low}-{high}" for low, high in report.quartiles],
                y=accuracy,
                name=names[method],
                text=[f"{a:.0%}" for a in accuracy],
                textposition="outside",
            )
        )
    chance = next(iter(reports.values())).chance
    figure.add_hline(
        y=chance, line_dash="dash", annotation_text=f"chance {chance:.0%}", annotation_position="top right"
    )
    figure.update_layout(
        barmode="group",
        yaxis={"range": [0, min(1.0, top * 1.3 + 0.02)], "tickformat": ".0%", "title": "top-1 accuracy"},
        height=340,
        margin={"t": 20},
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
    figure = go.Figure()
    x = [p.scale for p in points]
    for band in ("high", "mid"):
        figure.add_trace(go.Scatter(x=x, y=[p.ams[band] for p in points], name=f"AMS {band} (%)"))
        figure.add_trace(go.Scatter(x=x, y=[p.ums[band] for p in points], name=f"UMS {band} (%)", line_dash="dot"))
    figure.add_trace(go.Bar(x=x, y=[p.distinct for p in points], name="distinct (high)", yaxis="y2", opacity=0.3))
    figure.update_layout(
        xaxis_title="guidance scale λ",
        yaxis={"title": "percent of N_G", "rangemode": "tozero"},
        yaxis2={
            "title": "distinct training images (high)",
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "tickmode": "auto",  # its own ticks (whole faces), not the percent axis's
            "showgrid": False,
        },
        legend={"orientation": "h", "y": 1.12},
        height=400,
        margin={"t": 40},
    )
    return figure


def sweep_caption(points: list[SweepPoint]) -> str:
    """What the sweep shows, read from its own numbers (so it can never contradict the chart)."""
    first, last = points[0], points[-1]
    best = max(points, key=lambda p: p.ams["high"])
    text = (
        f"SIDE at each λ with the N_G, steps and seeds above. From λ = {first.scale:g} to {last.scale:g}, AMS high "
        f"goes from {first.ams['high']:.1f}% to {last.ams['high']:.1f}% (highest {best.ams['high']:.1f}% at "
        f"λ = {best.scale:g}) and distinct faces from {first.distinct} to {last.distinct}."
    )
    if last.distinct < first.distinct and last.ams["high"] > first.ams["high"]:
        text += " Stronger guidance copies more often but fewer different faces: each class narrows onto one face."
    return text


def ratio_text(report: Report) -> str:
    """'SIDE over the baselines at equal N_G: UnCond: AMS high ×1.5, distinct ×1.44; Cond: ...'."""

    def times(value: float | None) -> str:
        return "-" if value is None else f"×{value:g}"

    parts = []
    for base, name in (("uncond", "UnCond"), ("cond", "Cond")):
        if base in report.methods and "side" in report.methods:
            ams_high, distinct = report.side_over(base)
            parts.append(f"{name}: AMS high {times(ams_high)}, distinct {times(distinct)}")
    return "SIDE over the baselines at equal N_G: " + "; ".join(parts) + " (- where the baseline found none)."


def landed_text(report: Report) -> str | None:
    """'Guided samples that landed in their target class: SIDE 62%, ...' (None: no guided row has it)."""
    names = {"side": "SIDE", "cond": "Cond", "shuffled": "shuffled labels (control)"}
    shares = [f"{names.get(m, m)} {row.landed:.0%}" for m, row in report.methods.items() if row.landed is not None]
    if not shares:
        return None
    return (
        "Guided samples that landed in the class they were aimed at: "
        + ", ".join(shares)
        + ". Each sample is labelled by the pool's clustering, with no training image: an attacker can measure it."
    )


def whole_run_figure(whole: WholeRun) -> go.Figure:
    """Distinct training images (high band) against samples drawn: the SIDE run (its pool, then its
    guided samples) and UnCond (the same pool, then plain samples), and UnCond at the SIDE run's wall time."""
    x = list(range(1, whole.n_total + 1))
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=x, y=whole.side_curve, name="SIDE run: pool, then guided samples"))
    figure.add_trace(go.Scatter(x=x, y=whole.uncond_curve, name="UnCond: pool, then plain samples", line_dash="dot"))
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
        x=whole.n_syn + 0.5, line_dash="dash", annotation_text="guided samples begin", annotation_position="top left"
    )
    figure.update_layout(
        xaxis_title="samples drawn",
        yaxis={"title": "distinct training images (high band)", "rangemode": "tozero"},
        legend={"orientation": "h", "y": 1.15},
        height=360,
        margin={"t": 40},
    )
    return figure


def page_link(page: str, label: str) -> None:
    st.page_link(f"app_pages/{page}", label=label, icon=":material/arrow_forward:")


def loss_figure(reports: dict[str, ClassifierReport], names: dict[str, str]) -> go.Figure:
    figure = go.Figure()
    for method, report in reports.items():
        history = report.loss_history
        figure.add_trace(go.Scatter(x=[s for s, _ in history], y=[loss for _, loss in history], name=names[method]))
    figure.update_layout(xaxis_title="step", yaxis_title="cross-entropy (smoothed)", height=300, margin={"t": 20})
    return figure


# -- the sidebar ----------------------------------------------------------------------------------


def shown_path(path: Path) -> str:
    """A path as a user reads it: relative to the project when inside it."""
    path = path.resolve()
    return str(path.relative_to(state.PROJECT)) if path.is_relative_to(state.PROJECT) else str(path)


def sidebar(env: state.Env, config: ExtractionConfig, stored: dict[str, bool] | None, visitor: Access) -> None:
    """What is open, the current configuration, which of its stages are ``stored`` (None: the model
    or data did not load), and whether this ``visitor`` is locked and why."""
    with st.sidebar:
        st.caption(f"Model: `{state.MODEL.get()}` · data: `{state.DATA.get()}`")
        st.caption(
            f"N_syn {config.n_syn} · feature {config.cluster.feature} · K {config.cluster.k} · "
            f"{config.cluster.keep_rule} "
            f"· classifier {config.classifier_train.steps} steps"
        )
        if stored is None:
            st.caption("Model or data not loaded: see the Model and data page.")
        else:
            st.caption(
                "  \n".join(
                    f"{':material/check_circle:' if ok else ':material/radio_button_unchecked:'} {name}"
                    for name, ok in stored.items()
                )
            )
        st.caption(f"Run store: `{shown_path(env.runs)}` (+ read-only `{shown_path(env.store)}`)")
        st.caption(f"{':material/lock:' if visitor.locked else ':material/lock_open:'} {visitor.reason}")
