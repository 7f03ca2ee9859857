"""What lives in the session, and its one owner: each piece (specs, the current configuration, the last
requests, the target class) is a :class:`Key` registered here, read and written only through it
(artefacts live in the run store). Also the page files, and the environment the server was started with.

Environment (all optional; the defaults open the bundled model and the precomputed run):
    SIDE_MODEL   model to open with: 'default', 'faces40', a diffusers folder, or a hub id
    SIDE_DATA    training set to score against: 'default' (bundled faces) or an image folder
    SIDE_N_DATA  keep only the first N training images (e.g. 40 for faces40)
    SIDE_RUNS    writable run store (default: runs/app in the project folder)
    SIDE_STORE   read-only precomputed run store (default: assets/store)
    SIDE_THREADS torch CPU threads (default: all cores but one, at most 4; see resources.configure_torch)
    SIDE_SCRIPT_TIMES  a file to which every script run appends how long it took (timed_script_run;
                 benchmarks.load reads it: what the server spends per session)
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Generic, TypeVar

import streamlit as st

from side_core.config import ExtractionConfig, SampleConfig
from side_core.models import BUNDLED_STORE
from side_core.pipeline import SWEEP_SCALES

T = TypeVar("T")
PROJECT = Path(__file__).resolve().parents[1]
# The configuration `python -m side_core prepare` uses: the same stage keys, so an instant first screen.
DEFAULT = ExtractionConfig()

# Page files (pages link to each other by these names), and the navigation: file, title, icon, in the
# order a user works through SIDE. A new page is its file in app_pages/ and its line here.
MODEL_PAGE = "1_model_data.py"
CLUSTER_PAGE = "2_generate_cluster.py"
CLASSIFIER_PAGE = "3_classifier.py"
GUIDED_PAGE = "4_guided_extraction.py"
REPORT_PAGE = "5_report.py"
PAGES = (
    (MODEL_PAGE, "Model and data", ":material/database:"),
    (CLUSTER_PAGE, "Generate and cluster", ":material/scatter_plot:"),
    (CLASSIFIER_PAGE, "Surrogate classifier", ":material/model_training:"),
    (GUIDED_PAGE, "Guided extraction", ":material/explore:"),
    (REPORT_PAGE, "Report", ":material/summarize:"),
)


@dataclass(frozen=True)
class Env:
    """The server's environment, read once; each bad value falls back to its default and leaves a
    message naming the variable and the fix."""

    model: str = "default"
    data: str = "default"
    n_data: int | None = None
    runs: Path = PROJECT / "runs" / "app"
    store: Path = BUNDLED_STORE
    # Leave a core to the server and the browser (resources.configure_torch says why).
    threads: int = max(1, min(4, (os.cpu_count() or 2) - 1))
    problems: tuple[str, ...] = field(default=())


def env_number(
    environ: Mapping[str, str], name: str, *, default: float | None, example: str, whole: bool = False
) -> tuple[float | None, str | None]:
    """The number in the environment variable ``name``, or ``default`` when it is unset.

    whole: a whole number of 1 or more (a count); otherwise any finite number of 0 or more (a cap).
    A value that is not one gives ``default`` and a message naming the variable, the value and
    ``example`` (e.g. "SIDE_N_DATA=40, or unset it"); otherwise the message is None.
    """
    text = environ.get(name, "").strip()
    if not text:
        return default, None
    minimum = 1 if whole else 0
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = None
    if value is not None and minimum <= value < float("inf"):  # NaN fails the comparison too
        return value, None
    wanted = "a positive whole number" if whole else "a number of 0 or more"
    fallback = "it is ignored" if default is None else f"the default {default:g} applies"
    return default, f"{name}={text!r} is not {wanted}, so {fallback}: set e.g. {example}."


def read_env(environ: Mapping[str, str] = os.environ) -> Env:
    n_data, n_data_problem = env_number(
        environ, "SIDE_N_DATA", default=None, whole=True, example="SIDE_N_DATA=40 (training images kept), or unset it"
    )
    threads, threads_problem = env_number(
        environ, "SIDE_THREADS", default=None, whole=True, example="SIDE_THREADS=1 (torch CPU threads), or unset it"
    )
    default = Env()
    return Env(
        model=environ.get("SIDE_MODEL") or default.model,
        data=environ.get("SIDE_DATA") or default.data,
        n_data=n_data,
        runs=Path(environ.get("SIDE_RUNS") or default.runs),
        store=Path(environ.get("SIDE_STORE") or default.store),
        threads=threads or default.threads,
        problems=tuple(p for p in (n_data_problem, threads_problem) if p),
    )


@dataclass(frozen=True)
class GuidedRequest:
    """One guided generation of the guided page, and its unguided twin from the same seeds."""

    cls: int
    sample: SampleConfig = field(default_factory=lambda: DEFAULT.sample)  # sampler, steps, guidance scale, window
    n: int = 8
    seed: int = DEFAULT.seed

    @property
    def capture_steps(self) -> tuple[int, ...]:
        return tuple(range(1, self.sample.num_steps + 1))  # every step: the timestep slider scrubs them all


@dataclass(frozen=True)
class CompareRequest:
    """UnCond vs Cond vs SIDE at equal N_G (defaults: ExtractionConfig's); the sweep uses it too."""

    n_samples: int = DEFAULT.n_samples
    guidance_scale: float = DEFAULT.sample.guidance_scale
    num_steps: int = DEFAULT.sample.num_steps

    def config(self, base: ExtractionConfig) -> ExtractionConfig:
        sample = replace(base.sample, guidance_scale=self.guidance_scale, num_steps=self.num_steps)
        return replace(base, n_samples=self.n_samples, sample=sample)


# -- this session's state: each piece under one key, read and written only through its Key ----------


@dataclass(frozen=True)
class Key(Generic[T]):
    """One piece of this session's state: the one name it has in ``st.session_state`` and its value in
    a new session. Pages read it with ``KEY.get()`` and write it with ``KEY.set(value)``; a widget that
    edits it is bound with ``key=KEY.name``, so no copy of it can drift."""

    name: str
    initial: Callable[[Env], T]

    def get(self) -> T:
        return st.session_state[self.name]

    def set(self, value: T) -> None:
        st.session_state[self.name] = value


MODEL: Key[str] = Key("model_spec", lambda env: env.model)  # what load_model opens
DATA: Key[str] = Key("data_spec", lambda env: env.data)  # what load_training_set opens
N_DATA: Key[int | None] = Key("n_data", lambda env: env.n_data)  # keep the first N training images
# N_syn, clustering and classifier behind the surrogate classes shown
CONFIG: Key[ExtractionConfig] = Key("extraction_config", lambda env: DEFAULT)
# The class the guided page aims at; None until that page picks the most promising one. Bound to the
# guided page's class picker, and set by the buttons that choose a class for it.
TARGET: Key[int | None] = Key("target_class", lambda env: None)
GUIDED: Key[GuidedRequest | None] = Key("guided_request", lambda env: None)  # the last guided generation shown
COMPARE: Key[CompareRequest] = Key("compare_request", lambda env: CompareRequest())  # comparison and sweep settings
SWEEP: Key[tuple[float, ...]] = Key("sweep_scales", lambda env: SWEEP_SCALES)  # the guidance scales of the sweep
# Names this session's jobs in the server's queue (app_support.jobs), for the per-session cap.
SESSION: Key[str] = Key("session_id", lambda env: uuid.uuid4().hex)
KEYS = (MODEL, DATA, N_DATA, CONFIG, TARGET, GUIDED, COMPARE, SWEEP, SESSION)


def init_state(env: Env) -> None:
    """Fill this browser session's defaults from the environment (once per session)."""
    for key in KEYS:
        if key.name not in st.session_state:
            key.set(key.initial(env))


def default_target(ranked: list[int]) -> None:
    """Aim at the first of the ranked classes unless this session aims at one of them already."""
    if TARGET.get() not in ranked:
        TARGET.set(ranked[0])


SCRIPT_TIMES_VAR = "SIDE_SCRIPT_TIMES"


@contextlib.contextmanager
def timed_script_run(environ: Mapping[str, str] = os.environ) -> Iterator[None]:
    """Time the script run inside the block, start to end, when SIDE_SCRIPT_TIMES names a file: one JSON
    line ``{"session", "start", "seconds"}`` is appended to it per run (``session``: Streamlit's id of
    the browser session; ``start``: Unix time), also for a run that a rerun, st.stop or an error ends.
    Without the variable it does nothing."""
    path = environ.get(SCRIPT_TIMES_VAR)
    if not path:
        yield
        return
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()  # read now: after st.stop, Streamlit calls in the block's end would stop too
    session = context.session_id if context is not None else ""
    start, started = time.time(), time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - started
        line = json.dumps({"session": session, "start": round(start, 4), "seconds": round(seconds, 4)}) + "\n"
        # one write of one short line in append mode: lines of runs in parallel sessions never interleave
        with open(path, "a") as times:
            times.write(line)
