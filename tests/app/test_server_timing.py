"""What the server spends per session (benchmarks.load's server_script_s), and how benchmarks.scale
launches its worker processes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from app_support import state
from benchmarks.load import first_script_runs, summary
from benchmarks.scale import worker_command


def _timed_script() -> None:
    """A script run as the app runs its own: timed start to end (SIDE_SCRIPT_TIMES set by the test)."""
    import time

    import streamlit as st

    from app_support import state

    with state.timed_script_run():
        time.sleep(0.2)  # the script's work
        if st.session_state.get("stop"):
            st.stop()


def test_each_script_run_is_timed_start_to_end(tmp_path, monkeypatch):
    times = tmp_path / "times.jsonl"
    monkeypatch.setenv(state.SCRIPT_TIMES_VAR, str(times))
    at = AppTest.from_function(_timed_script, default_timeout=30)
    at.run()
    at.session_state["stop"] = True
    at.run()  # a run that st.stop ends is timed too
    assert not at.exception
    runs = [json.loads(line) for line in times.read_text().splitlines()]
    assert len(runs) == 2 and len({run["session"] for run in runs}) == 1 and runs[0]["session"]
    assert all(0.2 <= run["seconds"] < 10 for run in runs)
    assert runs[0]["start"] < runs[1]["start"]


def test_without_the_variable_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(state.SCRIPT_TIMES_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    with state.timed_script_run():
        pass
    assert not list(tmp_path.iterdir())


def test_the_benchmark_takes_each_sessions_first_run_after_the_class_opens():
    lines = [
        json.dumps({"session": "teacher", "start": 90.0, "seconds": 9.0}),  # the warm-up visit
        json.dumps({"session": "teacher", "start": 101.0, "seconds": 0.5}),
        json.dumps({"session": "a", "start": 100.5, "seconds": 2.0}),
        json.dumps({"session": "b", "start": 100.2, "seconds": 3.0}),
        json.dumps({"session": "a", "start": 104.0, "seconds": 0.1}),  # a's second run
        "",
    ]
    assert sorted(first_script_runs(lines, since=100.0)) == [2.0, 3.0]
    assert summary(first_script_runs(lines, since=100.0)) == {"p50": 2.5, "p95": 3.0, "max": 3.0}
    assert first_script_runs([], since=0.0) == []


@pytest.mark.slow
def test_scale_launches_torchrun_through_this_interpreter(tmp_path):
    """Without torchrun on PATH (a virtual environment's python run by its path) the launch still works."""
    names = ("model", "device", "batch", "steps", "n_generate", "n_guided", "classifier_steps", "classifier_batch")
    args = argparse.Namespace(**dict.fromkeys(names, "1"), n_queries=1, n_train=1, dim=1)
    command = worker_command(args, 2, tmp_path / "store", tmp_path / "result.json")
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert command[command.index("--nproc_per_node") + 1] == "2"
    env = {**os.environ, "PATH": str(tmp_path)}  # nothing runnable on PATH
    done = subprocess.run([*command[:3], "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--nproc_per_node" in done.stdout
