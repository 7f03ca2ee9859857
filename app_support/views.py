"""What the pages draw: errors, progress, image grids, figures, captions, the sidebar. Pure
presentation of engine results: every number shown here was computed by ``side_core``."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from app_support import state
from app_support.access import Access
from side_core.cluster import ClassEvidence, Clustering, PoolEvidence, band_counts
from side_core.config import ExtractionConfig
from side_core.errors import SideError
from side_core.images import grid, to_uint8, upscale_nearest
from side_core.inspection import Scored
from side_core.metrics import BAND_NAMES
from side_core.report import Report, SweepPoint
from side_core.run import Run
from side_core.sampling import SampleProgress

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


def copied_faces(scores: Scored) -> dict[int, int]:
    """Training image -> how many of these samples copy it (nearest in the high band), most first."""
    counts = Counter(int(i) for i, copy in zip(scores.index[:, 0], scores.is_copy, strict=True) if copy)
    return dict(counts.most_common())


def guided_reading(cls: int, landed: int, n: int, faces: dict[int, int]) -> str:
    """What a guided generation shows, read from its own numbers: where the samples landed, how many
    are copies and of how many faces, and, where the numbers show it, what that means."""
    copies = sum(faces.values())
    text = f"{landed} of {n} guided samples landed in class {cls}; {copies} of {n} are copies"
    if faces:
        top, times = next(iter(faces.items()))
        text += f", of {len(faces)} training image{'s' if len(faces) > 1 else ''} ({times} of train #{top})"
    text += "."
    if 4 * landed <= n and 2 * copies >= n:
        text += (
            " Guidance could not place the samples in the class, and strong guidance pulled them into the model's "
            "deepest memorized basins instead: copies, but of the faces the model draws most anyway."
        )
    elif 4 * landed >= 3 * n:
        text += " The classifier placed them in the class it aimed at."
    return text


def sample_caption(name: str, scores: Scored, i: int) -> str:
    """'guided #3 · 0.912 · high': a sample, its nearest training similarity and band."""
    return f"{name} #{i} · {scores.nearest[i]:.3f} · {scores.band(scores.nearest[i])}"


# -- the map of the samples --------------------------------------------------------------------------


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
    """One row per K-means cluster for a table: its surrogate class (None: dropped, its samples are
    background), size, cohesion, members per band; the classes first, then the dropped clusters,
    most cohesive first. Classes are the only numbering the app shows."""
    counts = band_counts(c.kmeans_labels, scores.nearest, scores.bands, len(c.sizes))
    class_of = {int(k): i for i, k in enumerate(c.kept)}
    rows = []
    for k in range(len(c.sizes)):
        row = {"class": class_of.get(k), "samples": int(c.sizes[k]), "cohesion": round(float(c.cohesion[k]), 3)}
        row.update({f"{name} band": int(counts[k, BAND_NAMES.index(name)]) for name in reversed(BAND_NAMES)})
        rows.append(row)
    return sorted(rows, key=lambda r: (r["class"] is None, r["class"] or 0, -r["cohesion"]))


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


MAP_SELECTION = "map_selection"  # the samples picked in the map: kept while the map redraws around them


def map_selection() -> list[int]:
    """The sample ids this session picked in the map (empty: none)."""
    return list(st.session_state.get(MAP_SELECTION, ()))


def select_in_map(chart_key: str, picker_key: str, c: Clustering) -> None:
    """The map's on_select: keep the picked samples, and point the class picker (``picker_key``) at
    their class, so that the map highlights it. Redrawn, the map is a new chart with no selection of
    its own, so the selection lives here and the map rings it."""
    ids = ids_from_selection(st.session_state.get(chart_key))
    st.session_state[MAP_SELECTION] = ids
    if (cls := majority_class(c, ids)) is not None:
        st.session_state[picker_key] = cls


def clear_map_selection() -> None:
    st.session_state[MAP_SELECTION] = []


# -- figures --------------------------------------------------------------------------------------


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


def reach_metrics(reach: dict[str, dict], beyond: tuple[str, str, str] | None = None) -> None:
    """One row of metrics: what a guided run found beyond the pool (``beyond``: label, value, help), and
    how many images plain sampling reaches by the scorer's count and by the attacker's."""
    scorer, attacker = reach["scorer"], reach["attacker"]
    cols = st.columns(3)
    if beyond is not None:
        label, value, help_text = beyond
        cols[0].metric(label, value, help=help_text)
    cols[1].metric(
        "Pool copies",
        f"{scorer['found']} / ~{scorer['estimate']:.0f}",
        help=f"Training images the {scorer['n_samples']} pool samples copy, of about how many plain sampling can "
        "reach at all (Chao1, from how often each was copied). Reads the training set.",
    )
    cols[2].metric(
        "Attacker sees",
        f"{attacker['found']} / ~{attacker['estimate']:.0f}",
        help="Without the training set: images the pool shows three or more times (near-identical groups), of "
        f"about how many plain sampling reaches; about {attacker['new_per_1000']:.1f} more per 1,000 samples.",
    )


def ratio_text(report: Report) -> str:
    """'SIDE over the baselines at equal N_G: UnCond: AMS high ×10, distinct ×2.1; Cond: ...', to two
    significant digits: a few hundred samples per method give no more."""

    def times(value: float | None) -> str:
        return "-" if value is None else f"×{value:.2g}"

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


def page_link(page: str, label: str) -> None:
    st.page_link(f"app_pages/{page}", label=label, icon=":material/arrow_forward:")


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
        if visitor.shows_server_paths():  # a locked visitor learns nothing of the server's folders
            st.caption(f"Run store: `{shown_path(env.runs)}` (+ read-only `{shown_path(env.store)}`)")
        st.caption(f"{':material/lock:' if visitor.locked else ':material/lock_open:'} {visitor.reason}")
        with st.expander("Glossary", icon=":material/menu_book:"):
            st.markdown(glossary())


GLOSSARY = state.PROJECT / "docs" / "glossary.md"


@st.cache_data(show_spinner=False)
def glossary() -> str:
    """docs/glossary.md, the one list of the app's terms, without its title (the expander has one)."""
    return GLOSSARY.read_text(encoding="utf-8").split("\n", 1)[1]
