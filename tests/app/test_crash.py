"""A crash loses nothing. The server is killed with SIGKILL in the middle of each kind of job (cluster,
classifier, guided, comparison, sweep); then the run store holds no half-written stage, the restarted
app offers the job again, and running it gives stages bit-identical to an uninterrupted run. A full
disk during a stage write, and a run store that cannot be written, give a clear message in the app
and in the CLI, with nothing half-written.

The killed server is a child process running the app's page through AppTest: the job starts from its
button, through the form, the queue and the engine, as in `streamlit run` (the HTTP layer, which
holds no state of the run store, is left out). The test watches the run store and sends SIGKILL once
the job has written part of a stage, so the kill lands mid-stage, not between jobs.

The full disk is real: the run store is a 192 KiB tmpfs, mounted in a private mount namespace (``unshare
--user --map-root-user --mount``) so that nothing outside the test sees it; likewise the read-only
store is a read-only bind mount. Where the kernel does not allow such namespaces, those tests skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from streamlit.testing.v1 import AppTest

from app_support import state
from side_core.config import ExtractionConfig
from side_core.store import DONE, LOCK_SUFFIX, Stage

from .helpers import APP, TINY, button

PROJECT = APP.parent
KILL_TIMEOUT_S = 120  # the job reaches its kill point (tiny model; imports take most of it on 2 busy cores)
JOB_TIMEOUT_S = 300  # an AppTest run holding a whole job

pytestmark = pytest.mark.slow

# -- the jobs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One kind of job as a user starts it: the page, the session's settings, the fields the user
    sets, the button; where to kill it; and what the page says when the job's result is not stored."""

    page: str
    button: str
    config: ExtractionConfig = TINY
    compare: state.CompareRequest | None = None
    fields: dict[str, float] = field(default_factory=dict)  # number inputs by key
    kill_when: Callable[[Path], bool] = lambda root: False  # the run store shows the job mid-stage
    not_stored: str = ""  # the page's message while the result is not stored


def begun_not_done(root: Path, name: str) -> list[Path]:
    """Stages ``name-*`` under ``root`` that have begun (inputs written) and are not finished."""
    return [p for p in root.glob(f"{name}-*") if (p / "inputs.json").exists() and not (p / DONE).exists()]


def shards_written(root: Path, min_shards: int) -> bool:
    """Some generation is unfinished, and at least ``min_shards`` shards (with their records) exist."""
    return bool(begun_not_done(root, "generate")) and len(list(root.glob("generate-*/shards/*.json"))) >= min_shards


# 512 samples in 16 shards of 32: the kill lands after the first shards, long before the clusters.
CLUSTERED = replace(TINY, n_syn=512, sample=replace(TINY.sample, batch_size=32))
JOBS = {
    "cluster": Job(
        state.CLUSTER_PAGE,
        "Generate and cluster",
        CLUSTERED,
        kill_when=lambda root: shards_written(root, 2),
        not_stored="No samples are stored for N_syn = 512",
    ),
    "classifier": Job(
        state.CLASSIFIER_PAGE,
        "Train",
        replace(TINY, classifier_train=replace(TINY.classifier_train, steps=400)),
        kill_when=lambda root: bool(begun_not_done(root, "classifier")),
        not_stored="No classifier is stored for these classes at 400 steps",
    ),
    "guided": Job(
        state.GUIDED_PAGE,
        "Generate",
        fields={"n": 256},  # 4 shards guided, then 4 unguided
        kill_when=lambda root: shards_written(root, 1),
        not_stored="Press **Generate**",
    ),
    "comparison": Job(
        state.REPORT_PAGE,
        "Compare",
        compare=state.CompareRequest(n_samples=256),
        kill_when=lambda root: shards_written(root, 6),  # inside the second method's generation
        not_stored="No comparison is stored at N_G = 256",
    ),
    "sweep": Job(
        state.REPORT_PAGE,
        "Sweep",
        compare=state.CompareRequest(n_samples=128),
        kill_when=lambda root: shards_written(root, 5),  # inside the third scale's generation
        not_stored="Press **Sweep**",
    ),
}


def open_page(kind: str) -> AppTest:
    """The app on the job's page with the job's settings, as a user who is about to press its button."""
    job = JOBS[kind]
    at = AppTest.from_file(str(APP), default_timeout=JOB_TIMEOUT_S)
    at.session_state[state.CONFIG.name] = job.config
    if job.compare is not None:
        at.session_state[state.COMPARE.name] = job.compare
    at.run()
    at.switch_page(f"app_pages/{job.page}").run()
    for key, value in job.fields.items():
        at.number_input(key=key).set_value(value)
    return at


def press(kind: str, at: AppTest | None = None) -> AppTest:
    """Press the job's button (on a fresh page unless ``at`` is given) and wait for the job."""
    at = at or open_page(kind)
    button(at, JOBS[kind].button).click().run()
    return at


def run_job_in_child(kind: str) -> None:
    """The server's side of a child process: press the button, report the page's errors as JSON."""
    at = press(kind)
    print(json.dumps({"exception": [e.value for e in at.exception], "error": [e.value for e in at.error]}))


def child_command(kind: str) -> list[str]:
    return [sys.executable, "-c", f"from tests.app.test_crash import run_job_in_child; run_job_in_child({kind!r})"]


# -- what is in a run store -------------------------------------------------------------------------


def half_written(root: Path) -> list[str]:
    """Everything in the run store that a reader could trip on: a finished stage that does not match
    its manifest, or a file under its final name that cannot be read whole. A temporary file
    (``.name.*.tmp``, never read and never in a manifest) and an unfinished stage are not: the next
    run finishes the stage."""
    problems = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if (folder / DONE).exists():
            damaged = Stage.open(folder).damage()
            problems += [f"{folder.name}/{name}: {why}" for name, why in damaged.items()]
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = path.name
            if name.endswith(LOCK_SUFFIX) or (name.startswith(".") and name.endswith(".tmp")):
                continue
            try:
                if name.endswith(".json"):
                    json.loads(path.read_text())
                elif name.endswith(".npy"):
                    np.load(path, allow_pickle=False)
                elif name.endswith(".safetensors"):
                    load_file(str(path))
                else:
                    problems.append(f"{path.relative_to(root)}: a file no stage writes")
            except Exception as err:  # noqa: BLE001 - any failure to read is what this looks for
                problems.append(f"{path.relative_to(root)}: {type(err).__name__}: {err}")
    return problems


def artefacts(root: Path) -> dict[str, str]:
    """sha256 of every artefact of every finished stage, by stage folder and file. JSON files are left
    out: their records hold times, and the arrays and tensors they describe are compared."""
    found = {}
    for done in sorted(root.glob(f"*/{DONE}")):
        for name in json.loads(done.read_text())["manifest"]:
            if not name.endswith(".json"):
                path = done.parent / name
                found[f"{done.parent.name}/{name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def unfinished(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not (p / DONE).exists())


# -- kill and restart -------------------------------------------------------------------------------


@pytest.fixture
def runs_at(app_env, monkeypatch):
    """runs_at(name): point the app's writable run store at a new folder (the tiny store stays read-only)."""

    def point(name: str) -> Path:
        root = app_env.parent / name
        monkeypatch.setenv("SIDE_RUNS", str(root))
        return root

    return point


def kill_mid_job(kind: str, root: Path) -> None:
    """Start the job in a child process and SIGKILL it once the run store shows it mid-stage."""
    child = subprocess.Popen(
        child_command(kind),
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the kill takes every thread and child with it
    )
    deadline = time.monotonic() + KILL_TIMEOUT_S
    try:
        while not (root.exists() and JOBS[kind].kill_when(root)):
            if child.poll() is not None:
                output = child.stdout.read().decode()[-3000:]
                pytest.fail(f"the {kind} job ended (code {child.returncode}) before its kill point:\n{output}")
            if time.monotonic() > deadline:
                pytest.fail(f"the {kind} job did not reach its kill point within {KILL_TIMEOUT_S} s")
            time.sleep(0.01)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("kind", list(JOBS))
def test_a_job_killed_midway_leaves_nothing_half_written_and_reruns_bit_identical(kind, runs_at):
    reference = runs_at("uninterrupted")
    at = press(kind)
    assert not at.exception and not at.error
    expected = artefacts(reference)
    assert expected and not unfinished(reference)

    killed = runs_at("killed")
    kill_mid_job(kind, killed)
    assert unfinished(killed), "the kill landed between stages, not inside one"
    assert half_written(killed) == []

    at = open_page(kind)  # the restarted server
    assert not at.exception and not at.error
    assert any(JOBS[kind].not_stored in message.value for message in at.info), [m.value for m in at.info]
    press(kind, at)  # the job, offered again
    assert not at.exception and not at.error
    assert not any(JOBS[kind].not_stored in message.value for message in at.info)  # its result is shown
    assert half_written(killed) == []
    assert unfinished(killed) == []  # the stages the kill interrupted are finished now
    # and every stage is bit-identical to the uninterrupted run's (whose page may have computed more)
    rerun = artefacts(killed)
    assert rerun and rerun == {name: expected.get(name) for name in rerun}


# -- a full disk, a read-only store -----------------------------------------------------------------


def private_mounts_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


needs_private_mounts = pytest.mark.skipif(
    not private_mounts_work(), reason="unshare --user --mount is not allowed here: no private tmpfs for a full disk"
)


def in_private_mount(mount: str, runs: Path, command: list[str], copy_to: Path) -> subprocess.CompletedProcess:
    """Run ``command`` with ``runs`` under ``mount`` ('full': a 192 KiB tmpfs; 'read-only': the folder
    bound read-only), in a mount namespace of its own, then copy what the store holds to ``copy_to``."""
    runs.mkdir(parents=True, exist_ok=True)
    copy_to.mkdir(parents=True, exist_ok=True)
    setup = {
        "full": f"mount -t tmpfs -o size=192k tmpfs {shlex.quote(str(runs))}",
        "read-only": f"mount --bind {shlex.quote(str(runs))} {shlex.quote(str(runs))} && "
        f"mount -o remount,bind,ro {shlex.quote(str(runs))}",
    }[mount]
    script = (
        f"{setup} || exit 99; {shlex.join(command)}; status=$?; "
        f"cp -a {shlex.quote(str(runs))}/. {shlex.quote(str(copy_to))}/; exit $status"
    )
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
        check=False,
    )


FAULTS = {
    "full": "the disk holding it is full",
    "read-only": "cannot be written",
}


@needs_private_mounts
@pytest.mark.parametrize("mount", list(FAULTS))
def test_the_app_names_a_full_or_read_only_store_and_leaves_nothing_half_written(mount, runs_at, tmp_path):
    runs = runs_at("runs")
    done = in_private_mount(mount, runs, child_command("cluster"), tmp_path / "after")
    assert done.returncode == 0, done.stdout + done.stderr
    page = json.loads(done.stdout.strip().splitlines()[-1])
    assert page["exception"] == []
    (message,) = page["error"]
    assert FAULTS[mount] in message and "SIDE_RUNS" in message, message
    assert half_written(tmp_path / "after") == []


@needs_private_mounts
@pytest.mark.parametrize("mount", list(FAULTS))
def test_the_cli_names_a_full_or_read_only_store_and_leaves_nothing_half_written(
    mount, tiny_model_dir, tiny_data_dir, tmp_path
):
    store = tmp_path / "store"
    command = [
        sys.executable,
        "-m",
        "side_core",
        "extract",
        "--method=uncond",
        f"--model={tiny_model_dir}",
        f"--data={tiny_data_dir}",
        f"--out={tmp_path / 'report'}",
        f"--store={store}",
        "--n-samples=512",
        "--batch-size=32",
        "--threads=1",
    ]
    done = in_private_mount(mount, store, command, tmp_path / "after")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert FAULTS[mount] in done.stderr and "--store" in done.stderr, done.stderr
    assert half_written(tmp_path / "after") == []
