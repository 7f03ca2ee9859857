"""Caps that protect a shared server from its locked visitors (app_support.access), on top of the
ranges every form checks for everyone (app_support.forms): the work one session, and one visitor
(every tab from one address together), may have queued, and the size of the run store. Each refusal
names the cap and the environment variable that raises it.

Operator's switches (environment variables):
    SIDE_MAX_SESSION_WORK  work units one session may have queued or running at once (default
                           500000; 0: no cap). A unit is one denoising step of one sample, or one
                           classifier training step: the units the job queue estimates with.
    SIDE_MAX_VISITOR_WORK  work units one visitor address (all its sessions) may have queued or
                           running at once (default 500000; 0: no cap). Raise it when the class
                           reaches the server through one address (a NAT or proxy).
    SIDE_MAX_RUNS_GB       no new job starts while the writable run store holds more (default 5; 0:
                           no cap)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from app_support.state import env_number
from side_core.errors import SideError

WORK_VAR = "SIDE_MAX_SESSION_WORK"
VISITOR_WORK_VAR = "SIDE_MAX_VISITOR_WORK"
RUNS_VAR = "SIDE_MAX_RUNS_GB"
GB = 10**9
# Room for the bundled defaults several times over: generate and cluster 4096 samples x 25 steps =
# 102,400 units, the comparison at N_G = 256 19,200, each classifier 1,500; what the caps refuse is
# a click that holds the queue for everyone (65,536 samples is 1.6 million units).
DEFAULT_SESSION_WORK = 500_000
DEFAULT_VISITOR_WORK = 500_000  # three tabs of one visitor hold no more of the queue than one
DEFAULT_RUNS_GB = 5.0


@dataclass(frozen=True)
class Limits:
    session_work: float | None = DEFAULT_SESSION_WORK  # units; None: no cap
    visitor_work: float | None = DEFAULT_VISITOR_WORK  # units, for every session of one address; None: no cap
    runs_gb: float | None = DEFAULT_RUNS_GB  # None: no cap


def read_limits(environ: Mapping[str, str] = os.environ) -> tuple[Limits, tuple[str, ...]]:
    work, work_problem = env_number(
        environ, WORK_VAR, default=DEFAULT_SESSION_WORK, example=f"{WORK_VAR}=1000000, or 0 for no cap"
    )
    visitor, visitor_problem = env_number(
        environ, VISITOR_WORK_VAR, default=DEFAULT_VISITOR_WORK, example=f"{VISITOR_WORK_VAR}=1000000, or 0 for no cap"
    )
    runs, runs_problem = env_number(
        environ, RUNS_VAR, default=DEFAULT_RUNS_GB, example=f"{RUNS_VAR}=20, or 0 for no cap"
    )
    limits = Limits(session_work=work or None, visitor_work=visitor or None, runs_gb=runs or None)  # 0: no cap
    return limits, tuple(p for p in (work_problem, visitor_problem, runs_problem) if p)


def check_work(limits: Limits, units: float, session_queued: float = 0.0, visitor_queued: float = 0.0) -> None:
    """Refuse a job of ``units`` when, with the units already queued (or running), it passes a cap:
    ``session_queued`` by this session against the session cap, ``visitor_queued`` by every session
    of this visitor's address (this one included) against the visitor cap."""
    for cap, queued, who, var in (
        (limits.session_work, session_queued, "this session", WORK_VAR),
        (limits.visitor_work, visitor_queued, "your address (all your tabs together)", VISITOR_WORK_VAR),
    ):
        if cap is None or queued + units <= cap:
            continue
        already = f", on top of the {queued:,.0f} {who} already has queued" if queued else ""
        one = "one session" if var == WORK_VAR else "one visitor address"
        raise SideError(
            f"This job is {units:,.0f} units of work (samples x denoising steps, or classifier training steps)"
            f"{already}: {one} may queue at most {cap:,.0f} on this shared server ({var}). Wait for your queued "
            f"jobs to finish, or ask for fewer samples or steps; the operator can raise {var} "
            f"(e.g. {var}={2 * cap:.0f}; 0 for no cap)."
        )


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (symlinks not followed; 0 if it does not exist)."""
    total = 0
    stack = [folder]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                # a file may vanish meanwhile (a temporary file renamed into place)
                with contextlib.suppress(FileNotFoundError):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


def check_run_store(limits: Limits, runs: Path) -> None:
    """Refuse new work while the writable run store ``runs`` holds more than the cap."""
    cap = limits.runs_gb
    if cap is None:
        return
    used = folder_bytes(runs)
    if used > cap * GB:
        raise SideError(
            f"The run store {runs} holds {used / GB:.2f} GB, more than the {cap:g} GB this shared server allows "
            f"({RUNS_VAR}), so no new job starts: the operator can delete old runs from that folder or raise "
            f"{RUNS_VAR} (e.g. {RUNS_VAR}={2 * cap:g}; 0 for no cap)."
        )
