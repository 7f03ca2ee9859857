"""Resources shared by every session of the server: the model and training set (``st.cache_resource``,
never mutated), torch's threads, the open run, and cached reads keyed by stage folders (a finished
stage never changes), so that a rerun (a slider scrub, a click on the map) reads no shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st
import torch

from app_support import access, state
from side_core.cluster import ClassEvidence, PoolEvidence, rank_by_pool, rank_classes, representatives
from side_core.data import TrainingSet, load_training_set
from side_core.errors import SideError
from side_core.inspection import Pairs, Scored, best_pairs, pairs_zip, scored
from side_core.kinds.classifier import Landed
from side_core.kinds.clusters import Clusters, NearIdentical
from side_core.kinds.features import Features
from side_core.kinds.scoring import Score
from side_core.models import LoadedModel, load_model
from side_core.report import Report
from side_core.report_files import report_csv, report_json
from side_core.run import Run
from side_core.surrogate import Surrogate


@st.cache_resource
def configure_torch(threads: int) -> int:
    """Set torch's CPU threads once per server process.

    Leave a core to the server and the browser: with as many threads as cores, every torch op waits
    for a thread the event loop (or any other process) holds, and sampling the bundled model on 2
    busy cores took 13 s instead of 1.3 s with one thread (measured here)."""
    torch.set_num_threads(threads)
    return threads


@st.cache_resource(show_spinner="Loading the model...")
def cached_model(spec: str) -> LoadedModel:
    """Shared by every session; never mutated (eval mode, no grad)."""
    return load_model(spec)


@st.cache_resource(show_spinner="Loading the training set...")
def cached_training_set(spec: str, channels: int, size: int, n_images: int | None) -> TrainingSet:
    return load_training_set(spec, channels, size, n_images)


def open_run() -> Run:
    """The run for this session's model and training set; raises SideError on bad input."""
    env = state.read_env()
    return _cached_run(state.MODEL.get(), state.DATA.get(), state.N_DATA.get(), env.runs, env.store)


@st.cache_resource(show_spinner=False)
def _cached_run(model_spec: str, data_spec: str, n_data: int | None, runs: Path, store: Path) -> Run:
    """One Run per model, data and stores, shared across reruns: it remembers the stages it has
    verified, so a rerun checks a stage with a stat per file, not a checksum of every file."""
    model = cached_model(model_spec)
    data = cached_training_set(data_spec, model.channels, model.size, n_data)
    return Run(runs, model, data, read_only_roots=(store,))


def require_run() -> Run:
    """The run, or the engine's message and a stopped page."""
    try:
        return open_run()
    except SideError as err:
        st.error(str(err), icon=":material/error:")
        st.stop()


def ranked_classes(surrogate: Surrogate, pool: Score) -> list[ClassEvidence]:
    """The surrogate classes, most promising target first, with their expected copy rates (``pool``:
    the pool's score, :func:`pool_score`)."""
    return _ranked(surrogate.clusters, pool, surrogate.clusters.path, pool.path)


@st.cache_data(max_entries=16, show_spinner=False)
def _ranked(_clusters: Clusters, _score: Score, clusters: Path, score: Path) -> list[ClassEvidence]:
    similarity, index = _score.neighbours()
    return rank_classes(_clusters.clustering(), similarity[:, 0], index[:, 0], _score.bands)


def pool_evidence(surrogate: Surrogate) -> list[PoolEvidence]:
    """The surrogate classes, most promising target first, by what an attacker sees without the
    training set: each class's share of pool samples with a near-identical partner, then cohesion."""
    clusters, near_identical = surrogate.clusters, surrogate.near_identical
    return _pool_evidence(clusters, near_identical, clusters.path, near_identical.path)


@st.cache_data(max_entries=16, show_spinner=False)
def _pool_evidence(
    _clusters: Clusters, _near_identical: NearIdentical, clusters: Path, near_identical: Path
) -> list[PoolEvidence]:
    return rank_by_pool(_clusters.clustering(), _near_identical.partner())


def pool_score(run: Run, surrogate: Surrogate) -> Score:
    """The score of the surrogate's pool (stored with the clusters; instant when it is): a page looks
    it up once per run and hands it to the readers below."""
    return Score.make(run, surrogate.synthetic)


def pool_copied(pool: Score) -> frozenset[int]:
    """The training images some sample of the surrogate's pool copies (high band): what plain sampling
    had already found before any guided sample."""
    return _pool_copied(pool, pool.path)


@st.cache_data(max_entries=16, show_spinner=False)
def _pool_copied(_score: Score, path: Path) -> frozenset[int]:
    return frozenset(_score.summary()["extracted"])


def reach(surrogate: Surrogate, pool: Score) -> dict[str, dict]:
    """How many images plain sampling reaches, from the pool (side_core.surrogate.Surrogate.reach)."""
    return _reach(surrogate, pool, surrogate.synthetic.path, surrogate.near_identical.path)


@st.cache_data(max_entries=16, show_spinner=False)
def _reach(_surrogate: Surrogate, _score: Score, synthetic: Path, near_identical: Path) -> dict[str, dict]:
    return _surrogate.reach(_score)


def landed_labels(landed: Landed) -> np.ndarray:
    """(N,) int64: the surrogate class each guided sample landed in (n_classes: none), from a stored
    landed stage (made by the guided job), read once per server."""
    return _landed_labels(landed, landed.path)


@st.cache_data(max_entries=16, show_spinner=False)
def _landed_labels(_landed: Landed, path: Path) -> np.ndarray:
    return _landed.labels()


def class_representatives(surrogate: Surrogate, per_class: int = 4) -> list[np.ndarray]:
    """For each surrogate class, the ids of the members closest to its centroid."""
    features, clusters = surrogate.features, surrogate.clusters
    return _representatives(features, clusters, features.path, clusters.path, per_class)


@st.cache_data(max_entries=16, show_spinner=False)
def _representatives(
    _features: Features, _clusters: Clusters, features: Path, clusters: Path, per_class: int
) -> list[np.ndarray]:
    return representatives(_features.vectors(), _clusters.clustering(), per_class)


def open_specs(model_spec: str, data_spec: str, n_data: int | None) -> None:
    """Load a model and training set (raising SideError on bad input, or on what this visitor may not
    open: app_support.access) and make them this session's."""
    visitor = access.current()
    model_spec, data_spec = visitor.allow(model_spec, "model"), visitor.allow(data_spec, "data")
    model = cached_model(model_spec)
    cached_training_set(data_spec, model.channels, model.size, n_data)
    state.MODEL.set(model_spec)
    state.DATA.set(data_spec)
    state.N_DATA.set(n_data)


def scored_samples(score: Score, frames: bool = False) -> Scored:
    """A finished generation's samples (and, with ``frames``, its captured steps) beside their nearest
    training images, read from its shards once per server (shared: never mutate the tensors)."""
    return _scored(score, score.path, frames)


@st.cache_resource(max_entries=8, show_spinner=False)
def _scored(_score: Score, path: Path, frames: bool) -> Scored:
    return scored(_score, frames=frames)


def report_pairs(run: Run, report: Report, n: int = 8) -> dict[str, Pairs]:
    """Each method's ``n`` best distinct extractions, read from the stored generations once per report."""
    return _report_pairs(run, report, report_json(report), n)


@st.cache_resource(max_entries=8, show_spinner=False)
def _report_pairs(_run: Run, _report: Report, text: str, n: int) -> dict[str, Pairs]:
    return best_pairs(_run, _report, n)


def report_files(run: Run, report: Report) -> tuple[str, str, bytes]:
    """(report JSON, the table as CSV, ZIP of each method's copies as PNG pairs: its best distinct
    extractions in the high band, up to 16), made once per report."""
    text = report_json(report)
    return text, *_report_downloads(run, report, text)


def copies_only(pairs: Pairs, high: float) -> Pairs:
    """The pairs whose similarity is in the high band (at least ``high``): copies."""
    keep = pairs.similarity >= high
    rows = torch.from_numpy(keep)
    return Pairs(pairs.generated[rows], pairs.training[rows], pairs.similarity[keep], pairs.train_index[keep])


@st.cache_data(max_entries=8, show_spinner="Preparing the downloads...")
def _report_downloads(_run: Run, _report: Report, text: str) -> tuple[str, bytes]:
    high = _report.bands.high[0]
    copies = {method: copies_only(p, high) for method, p in report_pairs(_run, _report, n=16).items()}
    return report_csv(_report), pairs_zip(copies)
