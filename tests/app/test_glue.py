"""The app's glue: environment parsing, the job queue, look-ups that never compute, default
settings, scale parsing and captions."""

import threading
import time

import pytest

from app_support import forms, jobs, state, views
from side_core.data import load_training_set
from side_core.errors import SideError
from side_core.models import load_model
from side_core.report import Report, SweepPoint
from side_core.run import Run

from .helpers import TINY


def test_default_settings_are_the_cli_prepare_defaults():
    """The first screen is instant only if the app asks for the stages `prepare` stored."""
    from side_core.cli import build_parser, extraction_config

    args = build_parser().parse_args(["prepare", "--store", "unused"])
    assert extraction_config(args) == state.DEFAULT
    assert state.read_env({}).problems == ()


@pytest.mark.parametrize(("name", "value"), [("SIDE_N_DATA", "abc"), ("SIDE_THREADS", "x"), ("SIDE_THREADS", "-1")])
def test_bad_environment_values_fall_back_with_a_message(name, value):
    env = state.read_env({name: value})
    (problem,) = env.problems
    assert problem.startswith(f"{name}={value!r}") and "unset it" in problem
    assert env.n_data is None and env.threads >= 1
    assert state.read_env({"SIDE_N_DATA": "40", "SIDE_THREADS": "2"}) == state.Env(n_data=40, threads=2)


def test_stored_finds_stages_and_never_computes(tiny_model_dir, tiny_data_dir, tiny_store, tmp_path):
    model, data = load_model(tiny_model_dir, "cpu"), load_training_set(tiny_data_dir, 1, 8)
    empty = Run(tmp_path / "runs", model, data)
    assert jobs.surrogate(TINY, ("side",)).stored(empty) is None
    assert not (tmp_path / "runs").exists()  # nothing was begun

    run = Run(tmp_path / "runs", model, data, read_only_roots=(tiny_store,))
    surrogate = jobs.surrogate(TINY, ("side", "cond")).stored(run)
    assert surrogate is not None and set(surrogate.classifiers) == {"side", "cond"}
    assert surrogate.synthetic.path.parent == tiny_store
    assert not (tmp_path / "runs").exists()


def test_queue_serves_in_order_and_says_where_a_job_stands():
    queue = jobs.JobQueue()
    first = queue.join("Compare", 100)
    assert queue.wait_turn(first, timeout=0)
    second = queue.join("Guided samples", 10)
    third = queue.join("Compare", 100)
    assert not queue.wait_turn(second, timeout=0)
    message = queue.wait_message(third)
    assert message.startswith("Queued: position 3 of 3") and "'Compare', running for" in message
    assert "no estimate yet" in message  # nothing has finished on this server

    time.sleep(0.05)
    queue.leave(first, finished=True)  # 100 units took >= 0.05 s: every later estimate uses that rate
    assert queue.wait_turn(second, timeout=1)
    assert "it should start in about" in queue.wait_message(third)
    started = []
    waiter = threading.Thread(target=lambda: started.append(queue.wait_turn(third, timeout=5)))
    waiter.start()
    queue.leave(second, finished=True)
    waiter.join()
    assert started == [True]
    queue.leave(third, finished=False)
    assert queue.tickets == []


def test_equal_jobs_from_two_tabs_hold_two_places():
    """A class pressing Generate with the same settings: each tab is told its own place, and one
    leaving (a closed tab) frees its own place, not the other's."""
    queue = jobs.JobQueue()
    running, mine, theirs = (queue.join("Guided", 400, owner) for owner in ("a", "b", "c"))
    assert queue.wait_message(mine).startswith("Queued: position 2 of 3")
    assert queue.wait_message(theirs).startswith("Queued: position 3 of 3")
    assert queue.queued_units("c") == 400 and queue.queued_units("nobody") == 0
    queue.leave(theirs, finished=False)
    assert queue.tickets == [running, mine] and queue.tickets[1] is mine


def test_parse_scales():
    assert forms.parse_scales("4, 0 ,1; 2.5 2") == (0.0, 1.0, 2.0, 2.5, 4.0)
    for bad in ("", "1, x", "-1", "1000"):
        with pytest.raises(SideError):
            forms.parse_scales(bad)


def test_captions_read_the_numbers():
    def row(ams_high: float, distinct: int) -> dict:
        band = {"low": 0.0, "mid": 0.0, "high": ams_high}
        return {"n_generated": 8, "ams": band, "ums": band, "p95": 0.9, "extracted": list(range(distinct))}

    report = Report.from_json(
        {
            "model": {},
            "data": None,
            "similarity": {"name": "pixel", "bands": {"low": [0, 1], "mid": [1, 2], "high": [2, None]}},
            "methods": {"uncond": row(2.0, 0), "cond": row(4.0, 2), "side": row(6.0, 3)},
        }
    )
    text = views.ratio_text(report)
    assert "UnCond: AMS high ×3, distinct -" in text
    assert "Cond: AMS high ×1.5, distinct ×1.5" in text

    def point(scale: float, high: float, distinct: int) -> SweepPoint:
        band = {"low": 0.0, "mid": 0.0, "high": high}
        return SweepPoint(scale, band, band, 0.9, distinct, "score-x")

    caption = views.sweep_caption([point(0, 44.1, 48), point(4, 77.0, 45), point(8, 83.2, 41)])
    assert "AMS high goes from 44.1% to 83.2% (highest 83.2% at λ = 8)" in caption
    assert "distinct faces from 48 to 41" in caption and "fewer different faces" in caption
