"""What lives in the session: specs, the current configuration, the last requests and ids (artefacts
live in the run store). Also the page files, and the environment the server was started with.

Environment (all optional; the defaults open the bundled model and the precomputed run):
    SIDE_MODEL   model to open with: 'default', 'faces40', a diffusers folder, or a hub id
    SIDE_DATA    training set to score against: 'default' (bundled faces) or an image folder
    SIDE_N_DATA  keep only the first N training images (e.g. 40 for faces40)
    SIDE_RUNS    writable run store (default: runs/app in the project folder)
    SIDE_STORE   read-only precomputed run store (default: assets/store)
    SIDE_THREADS torch CPU threads (default: all cores but one, at most 4; see resources.configure_torch)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import streamlit as st

from side_core.config import ExtractionConfig, SampleConfig
from side_core.pipeline import BUNDLED_STORE, SWEEP_SCALES

PROJECT = Path(__file__).resolve().parents[1]
# The configuration `python -m side_core prepare` uses: the same stage keys, so an instant first screen.
DEFAULT = ExtractionConfig()

# Page files, in navigation order (app.py lists them; pages link to each other by these names).
MODEL_PAGE = "1_model_data.py"
CLUSTER_PAGE = "2_generate_cluster.py"
CLASSIFIER_PAGE = "3_classifier.py"
GUIDED_PAGE = "4_guided_extraction.py"
REPORT_PAGE = "5_report.py"

# -- session-state keys
MODEL = "model_spec"  # str: what load_model opens
DATA = "data_spec"  # str: what load_training_set opens
N_DATA = "n_data"  # int | None: keep the first N training images
CONFIG = "extraction_config"  # ExtractionConfig: N_syn, clustering and classifier behind the classes
TARGET = "target_class"  # int | None: the class the guided page aims at (None: the most promising)
GUIDED = "guided_request"  # GuidedRequest: the last guided generation shown
COMPARE = "compare_request"  # CompareRequest: the comparison (and sweep) settings shown
SWEEP = "sweep_scales"  # tuple[float, ...]: the guidance scales of the sweep shown


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


def _positive_int(environ: Mapping[str, str], name: str, meaning: str, example: int) -> tuple[int | None, str | None]:
    text = environ.get(name, "").strip()
    if not text:
        return None, None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value >= 1:
        return value, None
    return None, (
        f"{name}={text!r} is not a positive whole number, so it is ignored: set it to {meaning} "
        f"(e.g. {name}={example}) or unset it."
    )


def read_env(environ: Mapping[str, str] = os.environ) -> Env:
    n_data, n_data_problem = _positive_int(environ, "SIDE_N_DATA", "the number of training images to keep", 40)
    threads, threads_problem = _positive_int(environ, "SIDE_THREADS", "the number of torch CPU threads", 1)
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


def init_state(env: Env) -> None:
    """Fill this browser session's defaults from the environment (once per session)."""
    st.session_state.setdefault(MODEL, env.model)
    st.session_state.setdefault(DATA, env.data)
    st.session_state.setdefault(N_DATA, env.n_data)
    st.session_state.setdefault(CONFIG, DEFAULT)
    st.session_state.setdefault(TARGET, None)
    st.session_state.setdefault(SWEEP, SWEEP_SCALES)


def default_target(ranked: list[int]) -> None:
    """Aim at the first of the ranked classes unless this session aims at one of them already."""
    if st.session_state[TARGET] not in ranked:
        st.session_state[TARGET] = ranked[0]


def config() -> ExtractionConfig:
    """The configuration behind the surrogate classes shown (N_syn, clustering, classifier)."""
    return st.session_state[CONFIG]


def set_config(new: ExtractionConfig) -> None:
    st.session_state[CONFIG] = new


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


def compare_request() -> CompareRequest:
    return st.session_state.get(COMPARE) or CompareRequest()
