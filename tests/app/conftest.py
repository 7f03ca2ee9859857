"""Fixtures for the app's tests: the tiny real model and images of tests/conftest.py, a run store
with the tiny surrogate stages finished (as `prepare` makes for the bundled model), and AppTests
pointed at them through the app's environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_support import state
from side_core.config import ExtractionConfig
from side_core.data import load_training_set
from side_core.kinds.features import Map2D
from side_core.kinds.scoring import Score
from side_core.models import load_model
from side_core.pipeline import build_surrogate
from side_core.run import Run

from .helpers import APP, TIMEOUT, TINY


@pytest.fixture(scope="session")
def tiny_store(tiny_model_dir, tiny_data_dir, tmp_path_factory) -> Path:
    """A read-only store with the TINY surrogate stages: samples, features, clusters, PCA map,
    scores, and both classifiers."""
    root = tmp_path_factory.mktemp("store")
    run = Run(root, load_model(tiny_model_dir, "cpu"), load_training_set(tiny_data_dir, 1, 8))
    surrogate = build_surrogate(run, TINY, ("side", "cond"))
    Map2D.make(run, surrogate.features, "pca", 0)
    Score.make(run, surrogate.synthetic)
    return root


@pytest.fixture
def app_env(monkeypatch, tiny_model_dir, tiny_data_dir, tiny_store, tmp_path) -> Path:
    """Point the app at the tiny model and data, a fresh writable run store, and the tiny store."""
    monkeypatch.setenv("SIDE_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("SIDE_DATA", str(tiny_data_dir))
    monkeypatch.setenv("SIDE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("SIDE_STORE", str(tiny_store))
    monkeypatch.delenv("SIDE_N_DATA", raising=False)
    monkeypatch.setenv("SIDE_THREADS", "1")  # as tests/conftest.py: tiny tensors, 2 shared cores
    monkeypatch.setenv("SIDE_LOCKED", "0")  # the operator's app; tests/app/test_access.py locks it
    return tmp_path / "runs"


@pytest.fixture
def open_app(app_env):
    """open_app(page=None, config=TINY) -> an AppTest that has run once, on that page."""

    def make(page: str | None = None, config: ExtractionConfig = TINY) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
        at.session_state[state.CONFIG.name] = config
        at.run()
        assert not at.exception
        if page is not None:
            at.switch_page(f"app_pages/{page}").run()
        return at

    return make
