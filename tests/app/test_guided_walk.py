"""One guided request of the guided page, walked from app_support/jobs.py: the app asks the engine
for the whole request in one call (side_core.pipeline.guide_toward, once to look it up and once to
make it) and reads what it shows through a few cached readers, so that no engine module is entered
more than twice from the app, and the stage order stays in side_core.pipeline."""

from __future__ import annotations

import inspect
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

from app_support import jobs, state
from side_core.data import load_training_set
from side_core.models import load_model
from side_core.pipeline import build_surrogate
from side_core.run import Run

from .helpers import TINY

ROOT = Path(__file__).resolve().parents[2]
APP_SUPPORT, ENGINE = ROOT / "app_support", ROOT / "side_core"


def property_code() -> set:
    """The code of every property getter in the engine: reading an attribute is not entering a module."""
    found = set()
    for name, module in list(sys.modules.items()):
        if not name.startswith("side_core"):
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            for value in vars(cls).values():
                if isinstance(value, property) and value.fget is not None:
                    found.add(value.fget.__code__)
    return found


def engine_entries(work) -> Counter:
    """Calls from app_support code into each engine module while ``work`` runs."""
    entries, skip = Counter(), property_code()

    def watch(frame, event, arg):
        if event != "call" or frame.f_back is None or frame.f_code in skip:
            return
        callee, caller = Path(frame.f_code.co_filename), Path(frame.f_back.f_code.co_filename)
        if callee.is_relative_to(ENGINE) and caller.is_relative_to(APP_SUPPORT):
            entries[callee.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")] += 1

    sys.setprofile(watch)
    try:
        result = work()
    finally:
        sys.setprofile(None)
    return entries, result


def test_a_guided_request_enters_each_engine_module_at_most_twice(tiny_model_dir, tiny_data_dir, tiny_store, tmp_path):
    model = load_model(tiny_model_dir, "cpu")
    run = Run(tmp_path / "runs", model, load_training_set(tiny_data_dir, 1, 8), read_only_roots=(tiny_store,))
    surrogate = build_surrogate(run, TINY, ("side",))
    request = state.GuidedRequest(cls=0, sample=replace(TINY.sample, num_steps=4), n=4)
    work = jobs.guided(surrogate, request, model.size)

    def request_walk():  # as jobs.do: look it up without computing, then make it
        assert work.stored(run) is None
        return work.make(run, None)

    entries, result = engine_entries(request_walk)
    assert entries, "the walk saw no call from the app into the engine"
    assert max(entries.values()) <= 2, entries
    assert "side_core.pipeline" in entries  # the order of the request's stages is the pipeline's
    # what the page shows came back: both generations scored, with their frames, and where they landed
    assert len(result.guided.images) == len(result.plain.images) == len(result.landed) == 4
    assert sorted(result.guided.frames) == sorted(result.plain.frames) and result.guided.frames
    assert work.stored(run) is not None  # and it is stored: a rerun reads it back
