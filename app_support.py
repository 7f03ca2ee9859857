"""Glue shared by the app's pages (st.navigation does not list this module).

It holds what several pages need and no page should repeat: where the run store is, the
session-state keys, the cached model and training set, a :class:`AppRun` that can tell whether a
stage is stored without computing it, the settings that key the stages, progress bars and live
previews fed by the engine's callbacks, and image rendering. Every stage itself comes from
``side_core``; nothing here re-implements the method.

Environment (all optional; the defaults open the bundled model and the precomputed run):
    SIDE_MODEL   model to open with: 'default', 'faces40', a diffusers folder, or a hub id
    SIDE_DATA    training set to score against: 'default' (bundled faces) or an image folder
    SIDE_N_DATA  keep only the first N training images (e.g. 40 for faces40)
    SIDE_RUNS    writable run store (default: runs/app in the project folder)
    SIDE_STORE   read-only precomputed run store (default: assets/store)
    SIDE_THREADS torch CPU threads (default: all cores but one, at most 4; see configure_torch)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from side_core.cluster import Clustering, l2_normalise
from side_core.config import ClassifierTrainConfig, ClusterConfig, ExtractionConfig, SampleConfig
from side_core.data import TrainingSet, load_training_set
from side_core.errors import SideError
from side_core.images import grid, to_uint8, upscale_nearest
from side_core.metrics import BAND_NAMES, Bands, in_band
from side_core.models import LoadedModel, load_model
from side_core.pipeline import (
    BUNDLED_STORE,
    METHODS,
    Run,
    Surrogate,
    best_extractions,
    build_surrogate,
    extract,
    guidance_sweep,
)
from side_core.report import ratios
from side_core.sampling import SampleProgress
from side_core.store import Stage, read_array

PROJECT = Path(__file__).resolve().parent
DEFAULT = ExtractionConfig()  # the config `python -m side_core prepare` uses: same stage keys, instant first screen
T = TypeVar("T")

# -- session-state keys (only specs, settings and ids live in the session; artefacts live in the store)
MODEL = "model_spec"  # str: what load_model opens
DATA = "data_spec"  # str: what load_training_set opens
N_DATA = "n_data"  # int | None: keep the first N training images
SETTINGS = "surrogate_settings"  # dict of SurrogateSettings
TARGET = "target_class"  # int: the surrogate class the guided page aims at
GUIDED = "guided_request"  # dict of GuidedRequest: the last guided generation shown
COMPARE = "compare_request"  # dict of CompareRequest: the last comparison shown
SWEEP = "sweep_request"  # dict: the guidance scales of the last sweep shown

# Page files, in navigation order (app.py lists them; pages link to each other by these names).
MODEL_PAGE = "1_model_data.py"
CLUSTER_PAGE = "2_generate_cluster.py"
CLASSIFIER_PAGE = "3_classifier.py"
GUIDED_PAGE = "4_guided_extraction.py"
REPORT_PAGE = "5_report.py"


def runs_root() -> Path:
    return Path(os.environ.get("SIDE_RUNS") or PROJECT / "runs" / "app")


def store_root() -> Path:
    return Path(os.environ.get("SIDE_STORE") or BUNDLED_STORE)


@st.cache_resource
def configure_torch() -> int:
    """Set torch's CPU threads once per server process, and return the number.

    Leave a core to the server and the browser: with as many threads as cores, every torch op waits
    for a thread the event loop (or any other process) holds, and sampling the bundled model on 2
    busy cores took 13 s instead of 1.3 s with one thread (measured here)."""
    n = int(os.environ.get("SIDE_THREADS") or max(1, min(4, (os.cpu_count() or 2) - 1)))
    torch.set_num_threads(n)
    return n


def init_state() -> None:
    """Fill the session's defaults from the environment (once per browser session)."""
    configure_torch()
    n_data = os.environ.get("SIDE_N_DATA")
    st.session_state.setdefault(MODEL, os.environ.get("SIDE_MODEL") or "default")
    st.session_state.setdefault(DATA, os.environ.get("SIDE_DATA") or "default")
    st.session_state.setdefault(N_DATA, int(n_data) if n_data else None)
    st.session_state.setdefault(SETTINGS, asdict(SurrogateSettings()))
    st.session_state.setdefault(TARGET, 0)


# -- errors and heavy work ------------------------------------------------------------------------


@contextlib.contextmanager
def errors_shown(stop: bool = False) -> Iterator[None]:
    """Show a SideError (bad input) as st.error with the engine's message; anything else is a bug."""
    try:
        yield
    except SideError as err:
        st.error(str(err), icon=":material/error:")
        if stop:
            st.stop()


@st.cache_resource
def _work_lock() -> threading.Lock:
    return threading.Lock()


@contextlib.contextmanager
def job() -> Iterator[None]:
    """One heavy job at a time in this server, with SideErrors shown; code after the work inside the
    block runs only if the work succeeded. Serialising jobs keeps tabs from slowing each other down on
    a few cores, and keeps the engine's feature hook on the shared UNet to one caller at a time."""
    lock = _work_lock()
    with errors_shown():
        if not lock.acquire(blocking=False):
            with st.spinner("Waiting for a job started in another tab to finish..."):
                lock.acquire()
        try:
            yield
        finally:
            lock.release()


# -- cached resources -----------------------------------------------------------------------------


@st.cache_resource(show_spinner="Loading the model...")
def cached_model(spec: str) -> LoadedModel:
    """Shared by every session; never mutated (eval mode, no grad)."""
    return load_model(spec)


@st.cache_resource(show_spinner="Loading the training set...")
def cached_training_set(spec: str, channels: int, size: int, n_images: int | None) -> TrainingSet:
    return load_training_set(spec, channels, size, n_images)


class NotStored(Exception):
    """Raised inside :meth:`AppRun.stored` at the first stage that would have to be computed."""


class AppRun(Run):
    """A :class:`Run` that can also answer "is all of this stored?" without computing anything."""

    _peeking = False

    def stage(self, name: str, inputs: dict, model_specific: bool = True) -> Stage:
        stage = super().stage(name, inputs, model_specific)
        if self._peeking and not stage.done:
            raise NotStored(stage.path.name)
        return stage

    def stored(self, fn: Callable[[Run], T]) -> T | None:
        """``fn(self)`` if every stage it asks for is finished; otherwise None, having computed nothing."""
        self._peeking = True
        try:
            return fn(self)
        except NotStored:
            return None
        finally:
            self._peeking = False


def open_run() -> AppRun:
    """The run for this session's model and training set; raises SideError on bad input."""
    model = cached_model(st.session_state[MODEL])
    data = cached_training_set(st.session_state[DATA], model.channels, model.size, st.session_state[N_DATA])
    return AppRun(runs_root(), model, data, read_only_roots=(store_root(),))


def require_run() -> AppRun:
    """The run, or the engine's message and a stopped page."""
    try:
        return open_run()
    except SideError as err:
        st.error(str(err), icon=":material/error:")
        st.stop()


def _quiet(_message: str) -> None:
    """A `say` for look-ups: they must not log work they do not do."""


# -- settings that key the stages -------------------------------------------------------------------


@dataclass(frozen=True)
class SurrogateSettings:
    """The choices behind the surrogate classes. Defaults are ExtractionConfig's, so that the
    precomputed store (made by `prepare` with the defaults) answers the first screen."""

    n_syn: int = DEFAULT.n_syn
    feature: str = DEFAULT.cluster.feature
    k: int = DEFAULT.cluster.k
    tau: float = DEFAULT.cluster.tau
    unkept: str = DEFAULT.cluster.unkept
    classifier_steps: int = DEFAULT.classifier_train.steps

    def config(self, sample: SampleConfig | None = None, n_samples: int | None = None) -> ExtractionConfig:
        return replace(
            DEFAULT,
            n_syn=int(self.n_syn),
            cluster=ClusterConfig(
                feature=self.feature, k=int(self.k), tau=round(float(self.tau), 4), unkept=self.unkept
            ),
            classifier_train=ClassifierTrainConfig(steps=int(self.classifier_steps)),
            sample=sample or DEFAULT.sample,
            n_samples=DEFAULT.n_samples if n_samples is None else int(n_samples),
        )


def surrogate_settings() -> SurrogateSettings:
    return SurrogateSettings(**st.session_state[SETTINGS])


def set_surrogate_settings(settings: SurrogateSettings) -> None:
    st.session_state[SETTINGS] = asdict(settings)


def stored_surrogate(run: AppRun, settings: SurrogateSettings, methods: tuple[str, ...] = ()) -> Surrogate | None:
    """The surrogate stages (samples, features, clusters and the given classifiers), if all stored."""
    config = settings.config()
    return run.stored(lambda r: build_surrogate(r, config, methods, say=_quiet))


def stored_map(run: AppRun, surrogate: Surrogate, method: str) -> np.ndarray | None:
    """(N, 2) float32 map of the samples, if stored."""
    stage = run.stored(lambda r: r.map2d(surrogate.features, method, DEFAULT.seed))
    return None if stage is None else read_array(stage.file("xy.npy"))


def pca_map(run: AppRun, surrogate: Surrogate) -> np.ndarray:
    """(N, 2) PCA map: instant, so it is computed on demand when the store lacks it."""
    return read_array(run.map2d(surrogate.features, "pca", DEFAULT.seed).file("xy.npy"))


def compute_umap(run: AppRun, surrogate: Surrogate) -> None:
    run.map2d(surrogate.features, "umap", DEFAULT.seed)


def stage_status(run: AppRun, settings: SurrogateSettings) -> dict[str, bool]:
    """Which stages of the current settings are stored (for the sidebar)."""
    surrogate = stored_surrogate(run, settings)
    status = {"samples and clusters": surrogate is not None}
    status["UMAP map"] = surrogate is not None and stored_map(run, surrogate, "umap") is not None
    status["SIDE classifier"] = stored_surrogate(run, settings, ("side",)) is not None
    status["Cond classifier"] = stored_surrogate(run, settings, ("cond",)) is not None
    return status


# -- progress ---------------------------------------------------------------------------------------


class Progress:
    """A progress bar fed by the engine's callbacks: `say`, sample progress, classifier progress."""

    def __init__(self, text: str = "Starting..."):
        self.text = text
        self.bar = st.progress(0.0, text=text)

    def say(self, message: str) -> None:
        self.text = message[:1].upper() + message[1:]
        self.bar.progress(0.0, text=self.text)

    def sample(self, p: SampleProgress) -> None:
        done = (p.batch * p.n_steps + p.step) / (p.n_batches * p.n_steps)
        self.bar.progress(min(done, 1.0), text=f"{self.text}: batch {p.batch + 1}/{p.n_batches}, step {p.step}")

    def classifier(self, step: int, total: int, loss: float) -> None:
        if step % max(1, total // 100) == 0 or step == total:
            self.bar.progress(step / total, text=f"{self.text}: step {step}/{total}, loss {loss:.3f}")

    def fraction(self, done: float, text: str) -> None:
        self.bar.progress(min(max(done, 0.0), 1.0), text=text)

    def hooks(self) -> dict:
        """The engine's progress callbacks (say, sample_progress, classifier_progress), all to this bar."""
        return {"say": self.say, "sample_progress": self.sample, "classifier_progress": self.classifier}

    def clear(self) -> None:
        self.bar.empty()  # a later update fills the same slot again


class LivePreview:
    """Shows each batch's current x0_pred every few denoising steps, so faces visibly form."""

    def __init__(self, title: str, size: int, n_cols: int = 8, updates: int = 10):
        self.title, self.size, self.n_cols, self.updates = title, size, n_cols, updates
        self.image = st.empty()
        self.progress = Progress(title)

    def __call__(self, p: SampleProgress) -> None:
        every = max(1, p.n_steps // self.updates)
        if p.step % every == 0 or p.step == p.n_steps or p.step == 1:
            self.image.image(
                mosaic(p.x0_pred, min(self.n_cols, len(p.x0_pred)), self.size),
                caption=f"{self.title}: predicted x0 after step {p.step}/{p.n_steps} (t = {p.t})",
            )
        self.progress.sample(p)

    def clear(self) -> None:
        self.image.empty()
        self.progress.clear()


# -- stage work started by buttons --------------------------------------------------------------------


def generate_and_cluster(run: AppRun, settings: SurrogateSettings, progress: Progress) -> Surrogate:
    """SIDE steps 1-4 for these settings, plus the PCA map and the samples' scores."""
    surrogate = build_surrogate(run, settings.config(), (), **progress.hooks())
    progress.say("PCA map and nearest training images")
    pca_map(run, surrogate)
    run.score(surrogate.synthetic)
    progress.clear()
    return surrogate


def train_classifiers(
    run: AppRun, settings: SurrogateSettings, methods: tuple[str, ...], progress: Progress
) -> Surrogate:
    surrogate = build_surrogate(run, settings.config(), methods, **progress.hooks())
    progress.clear()
    return surrogate


@dataclass(frozen=True)
class GuidedRequest:
    """One guided generation of the guided-extraction page, and its unguided contrast."""

    cls: int
    guidance_scale: float = DEFAULT.sample.guidance_scale
    window: tuple[int, int] | None = None  # [t_low, t_high]; None: guidance at every step
    num_steps: int = DEFAULT.sample.num_steps
    n: int = 8
    seed: int = DEFAULT.seed

    def sample_config(self) -> SampleConfig:
        return replace(
            DEFAULT.sample,
            num_steps=int(self.num_steps),
            guidance_scale=float(self.guidance_scale),
            guidance_window=tuple(int(t) for t in self.window) if self.window else None,
        )

    @property
    def capture_steps(self) -> tuple[int, ...]:
        return tuple(range(1, int(self.num_steps) + 1))  # every step: the timestep slider scrubs them all

    @classmethod
    def from_dict(cls, d: dict) -> GuidedRequest:
        window = d.get("window")
        return cls(**{**d, "window": tuple(window) if window else None})


@dataclass
class GuidedResult:
    guided: Stage
    plain: Stage
    guided_score: Stage
    plain_score: Stage


def _guided(
    run: Run,
    surrogate: Surrogate,
    request: GuidedRequest,
    guided_progress: Callable[[SampleProgress], None] | None = None,
    plain_progress: Callable[[SampleProgress], None] | None = None,
) -> GuidedResult:
    config = request.sample_config()
    target = surrogate.target("side", int(request.cls))
    steps = request.capture_steps
    guided = run.generate(request.n, request.seed, config, target, steps, guided_progress)
    plain = run.generate(request.n, request.seed, config, None, steps, plain_progress)
    return GuidedResult(guided, plain, run.score(guided), run.score(plain))


def generate_guided(run: AppRun, surrogate: Surrogate, request: GuidedRequest) -> GuidedResult:
    """Guided samples toward one class, then the same seeds unguided, each with a live preview."""
    size = run.model.size
    guided_view = LivePreview(f"Guided toward class {request.cls}", size)
    plain_view = LivePreview("Unguided, same seeds", size)
    result = _guided(run, surrogate, request, guided_view, plain_view)
    guided_view.clear()
    plain_view.clear()
    return result


def stored_guided(run: AppRun, surrogate: Surrogate, request: GuidedRequest) -> GuidedResult | None:
    return run.stored(lambda r: _guided(r, surrogate, request))


@dataclass(frozen=True)
class CompareRequest:
    """UnCond vs Cond vs SIDE at equal N_G (the defaults are ExtractionConfig's)."""

    n_samples: int = DEFAULT.n_samples
    guidance_scale: float = DEFAULT.sample.guidance_scale
    num_steps: int = DEFAULT.sample.num_steps

    def config(self, settings: SurrogateSettings) -> ExtractionConfig:
        sample = replace(DEFAULT.sample, guidance_scale=float(self.guidance_scale), num_steps=int(self.num_steps))
        return settings.config(sample, self.n_samples)


def run_compare(run: AppRun, settings: SurrogateSettings, request: CompareRequest, progress: Progress) -> dict:
    report = extract(run, request.config(settings), METHODS, **progress.hooks())
    progress.clear()
    return report


def stored_compare(run: AppRun, settings: SurrogateSettings, request: CompareRequest) -> dict | None:
    config = request.config(settings)
    return run.stored(lambda r: extract(r, config, METHODS, say=_quiet))


def parse_scales(text: str) -> tuple[float, ...]:
    """'0, 1, 2.5' -> (0.0, 1.0, 2.5); bad input is a SideError, shown like the engine's."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        scales = tuple(float(p) for p in parts)
    except ValueError as err:
        raise SideError(f"Guidance scales must be numbers separated by commas, e.g. '0, 1, 2, 4' ({err}).") from err
    if not scales:
        raise SideError("Give at least one guidance scale, e.g. '0, 1, 2, 4'.")
    if any(s < 0 for s in scales):
        raise SideError(f"Guidance scales must be >= 0 (got {text!r}); 0 is plain sampling.")
    return tuple(sorted(set(scales)))


def run_sweep(
    run: AppRun, settings: SurrogateSettings, request: CompareRequest, scales: tuple[float, ...], progress: Progress
) -> list[dict]:
    config = request.config(settings)
    train_classifiers(run, settings, ("side",), progress)
    rows = []
    for i, scale in enumerate(scales):
        progress.fraction(i / len(scales), f"Guidance scale {scale:g}: generating {config.n_samples} samples")
        rows += guidance_sweep(run, config, (scale,), say=_quiet)
    progress.clear()
    return rows


def stored_sweep(
    run: AppRun, settings: SurrogateSettings, request: CompareRequest, scales: tuple[float, ...]
) -> list[dict] | None:
    config = request.config(settings)
    return run.stored(lambda r: guidance_sweep(r, config, scales, say=_quiet))


# -- reading results ------------------------------------------------------------------------------


def class_examples(run: Run, surrogate: Surrogate, per_class: int = 4) -> list[np.ndarray]:
    """For each surrogate class, the indices of its members closest to the class centroid."""
    return _class_examples(run, surrogate.features.path, surrogate.clusters.path, per_class)


@st.cache_data(max_entries=32)
def _class_examples(_run: Run, features: Path, clusters: Path, per_class: int) -> list[np.ndarray]:
    # Keyed by the stage folders: a finished stage never changes.
    c = _run.clustering(Stage.open(clusters))
    z = l2_normalise(read_array(Stage.open(features).file("features.npy")))
    cos = z @ c.centroids[c.kept].T  # (N, n_classes)
    out = []
    for k in range(c.n_classes):
        members = np.flatnonzero(c.labels == k)
        out.append(members[np.argsort(-cos[members, k], kind="stable")][:per_class])
    return out


def cluster_table(c: Clustering, max_similarity: np.ndarray, bands: Bands) -> list[dict]:
    """One row per K-means cluster: size, cohesion, surrogate class, and members per band."""
    class_of = {int(k): i for i, k in enumerate(c.kept)}
    rows = []
    for k in range(len(c.sizes)):
        sims = max_similarity[c.kmeans_labels == k]
        row = {
            "cluster": k,
            "surrogate class": class_of.get(k),
            "size": int(c.sizes[k]),
            "cohesion": round(float(c.cohesion[k]), 3),
        }
        for name in reversed(BAND_NAMES):
            row[f"{name} band"] = int(in_band(sims, getattr(bands, name)).sum())
        rows.append(row)
    return sorted(rows, key=lambda r: (r["surrogate class"] is None, r["surrogate class"] or 0, r["cluster"]))


def label_name(c: Clustering, label: int) -> str:
    """'class 3', or 'background' for the label of samples whose cluster was dropped."""
    return "background" if label == c.n_classes else f"class {label}"


def cluster_map(xy: np.ndarray, c: Clustering, max_similarity: np.ndarray, bands: Bands) -> go.Figure:
    """Scatter of the samples' 2-D map, one colour per surrogate class (background grey, behind);
    near-copies (high band) are diamonds. custom_data holds [sample id, K-means cluster, nearest
    similarity] of every point."""
    figure = go.Figure()
    is_copy = in_band(max_similarity, bands.high)
    traces = [(c.n_classes, label_name(c, c.n_classes), {"color": "lightgrey", "opacity": 0.6})] if c.background else []
    traces += [(k, label_name(c, k), {}) for k in range(c.n_classes)]
    for label, name, colour in traces:
        ids = np.flatnonzero(c.labels == label)
        figure.add_trace(
            go.Scatter(
                x=xy[ids, 0],
                y=xy[ids, 1],
                mode="markers",
                name=name,
                # Plain lists: numpy arrays travel as typed-array dicts and come back that way in selections.
                customdata=[[int(i), int(c.kmeans_labels[i]), float(max_similarity[i])] for i in ids],
                marker={
                    "size": 8,
                    "symbol": ["diamond" if is_copy[i] else "circle" for i in ids],
                    "line": {"width": 0},
                    **colour,
                },
                hovertemplate="sample #%{customdata[0]}<br>" + name + " · K-means cluster %{customdata[1]}"
                "<br>nearest training image %{customdata[2]:.3f}<extra></extra>",
            )
        )
    figure.update_layout(
        height=520, margin={"t": 10, "b": 10, "l": 10, "r": 10}, dragmode="lasso", legend={"itemsizing": "constant"}
    )
    figure.update_xaxes(showticklabels=False, title=None)
    figure.update_yaxes(showticklabels=False, title=None)
    return figure


def ratio_text(report: dict) -> str:
    """'SIDE over the baselines: UnCond: AMS high x1.5, distinct x1.44; Cond: ...' (- where a baseline found none)."""
    r = ratios(report)

    def times(value: float | None) -> str:
        return "-" if value is None else f"×{value:g}"

    parts = [
        f"{name}: AMS high {times(r.get(f'ams_high_side_over_{base}'))}, "
        f"distinct {times(r.get(f'distinct_side_over_{base}'))}"
        for base, name in (("uncond", "UnCond"), ("cond", "Cond"))
        if f"distinct_side_over_{base}" in r
    ]
    return "SIDE over the baselines at equal N_G: " + "; ".join(parts) + " (- where the baseline found none)."


def band_label(bands: Bands, similarity: float) -> str:
    """'high', 'mid', 'low', or 'below' (the low band)."""
    return bands.name_of(float(similarity)) or "below"


def ids_from_selection(event) -> list[int]:
    """Global sample ids (custom_data[0]) of the points selected in a Plotly chart, in order."""
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


@st.cache_data(max_entries=8)
def report_downloads(_run: Run, report: dict) -> tuple[str, str, bytes]:
    """(report JSON, per-method CSV, ZIP of best-extraction pairs as PNGs); cached by the report,
    which names its stages."""
    full = {**report, "ratios": ratios(report)}
    json_text = json.dumps(full, indent=2)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["method", "n_generated"]
        + [f"ams_{b}" for b in BAND_NAMES]
        + [f"ums_{b}" for b in BAND_NAMES]
        + ["p95", "distinct_high"]
    )
    for method, m in report["methods"].items():
        writer.writerow(
            [method, m["n_generated"]]
            + [m["ams"][b] for b in BAND_NAMES]
            + [m["ums"][b] for b in BAND_NAMES]
            + [m["p95"], len(m["extracted"])]
        )
    return json_text, buffer.getvalue(), pairs_zip(_run, report)


def best_pairs(run: Run, report: dict, method: str, n: int = 8):
    """(generated, training, similarity, training index) of a method's best distinct extractions."""
    row = report["methods"][method]
    return best_extractions(run, run.find(row["generation"]), run.find(row["score"]), n)


def pairs_zip(run: Run, report: dict, n: int = 16) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for method in report["methods"]:
            generated, training, sims, idx = best_pairs(run, report, method, n)
            for rank, (g, t, s, j) in enumerate(zip(generated, training, sims, idx, strict=True), start=1):
                pair = squeeze(grid(upscale_nearest(to_uint8(torch.stack([g, t])), 4), n_cols=2, pad=4))
                png = io.BytesIO()
                Image.fromarray(pair).save(png, format="PNG")
                zf.writestr(f"{method}/{rank:02d}_sim{s:.3f}_train{int(j):05d}.png", png.getvalue())
    return buffer.getvalue()


# -- images on screen ----------------------------------------------------------------------------


def scale_for(size: int, target_px: int = 112) -> int:
    """Nearest-neighbour factor that shows a size x size image about target_px wide."""
    return max(1, round(target_px / size))


def squeeze(image: np.ndarray) -> np.ndarray:
    """(H, W, 1) -> (H, W) for st.image and PIL; colour images pass through."""
    return image[..., 0] if image.shape[-1] == 1 else image


def tiles(images: torch.Tensor, size: int, target_px: int = 112) -> list[np.ndarray]:
    """(N, C, H, W) float in [-1, 1] -> N blocky uint8 images about target_px wide."""
    return [squeeze(im) for im in upscale_nearest(to_uint8(images), scale_for(size, target_px))]


def mosaic(images: torch.Tensor, n_cols: int, size: int, target_px: int = 96) -> np.ndarray:
    """(N, C, H, W) float in [-1, 1] -> one blocky uint8 grid image."""
    return squeeze(grid(upscale_nearest(to_uint8(images), scale_for(size, target_px)), n_cols, pad=3))


def show_with_neighbours(
    run: Run,
    columns: list[tuple[str, torch.Tensor, list[str]]],
    similarity: np.ndarray,
    index: np.ndarray,
    bands: Bands,
    max_rows: int = 32,
) -> None:
    """A table of images, one row per sample: the given columns (title, (N, C, H, W) images, N
    captions), then the sample's nearest training images with similarity and band.

    ``similarity`` and ``index`` are (N, k), as Run.neighbours returns them.
    """
    size, n, k = run.model.size, len(index), index.shape[1]
    titles = [title for title, _, _ in columns] + [f"nearest training image {j + 1}" for j in range(k)]
    for cell, title in zip(st.columns(len(titles)), titles, strict=True):
        cell.markdown(f"**{title}**")
    shown = [tiles(images[:max_rows], size) for _, images, _ in columns]
    for i in range(min(n, max_rows)):
        cells = st.columns(len(titles))
        for cell, images, (_, _, captions) in zip(cells, shown, columns, strict=False):
            cell.image(images[i], caption=captions[i], width=images[i].shape[1])
        neighbours = tiles(run.data.images[torch.from_numpy(index[i])], size)
        for cell, image, j, sim in zip(cells[len(columns) :], neighbours, index[i], similarity[i], strict=True):
            cell.image(image, caption=f"train #{int(j)} · {sim:.3f} · {band_label(bands, sim)}", width=image.shape[1])
    if n > max_rows:
        st.caption(f"The first {max_rows} of {n} samples are shown.")


def page_link(page: str, label: str) -> None:
    st.page_link(f"pages/{page}", label=label, icon=":material/arrow_forward:")


def render_sidebar() -> None:
    """The shared sidebar: what is open, the current settings, and which stages are stored. Pages
    rerun after a job that adds stages or changes settings, so that it is current."""
    with st.sidebar:
        st.caption(f"Model: `{st.session_state[MODEL]}` · data: `{st.session_state[DATA]}`")
        s = surrogate_settings()
        st.caption(
            f"N_syn {s.n_syn} · feature {s.feature} · K {s.k} · tau {s.tau:g} · classifier {s.classifier_steps} steps"
        )
        try:
            run = open_run()
        except SideError:
            st.caption("Model or data not loaded: see the Model and data page.")
            return
        status = stage_status(run, s)
        st.caption(
            "  \n".join(
                f"{':material/check_circle:' if ok else ':material/radio_button_unchecked:'} {name}"
                for name, ok in status.items()
            )
        )
        st.caption(f"Run store: `{_shown(runs_root())}` (+ read-only `{_shown(store_root())}`)")


def _shown(path: Path) -> str:
    """A path as a user reads it: relative to the project when inside it."""
    path = path.resolve()
    return str(path.relative_to(PROJECT)) if path.is_relative_to(PROJECT) else str(path)
