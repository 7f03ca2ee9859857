"""Heavy work: started only from buttons, run one job at a time per server (queued fairly between
visitors, each waiting tab told its place and an estimate), with progress (``views.Progress``, ``views.LiveGrid``)
fed by the engine's callbacks.

A :class:`Work` is one piece of work written once: ``work.stored(run)`` answers "is all of it
stored?" through the engine's :meth:`Run.stored` without computing anything, and ``do(work, run)``
computes what is missing. The two can never ask for different stages.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
import streamlit as st

from app_support import access, limits, resources, state
from app_support.views import LiveGrid, Progress, errors_shown
from side_core.config import ExtractionConfig
from side_core.inspection import Scored
from side_core.kinds.features import Map2D
from side_core.kinds.scoring import Score
from side_core.pipeline import METHODS, build_surrogate, extract, guidance_sweep, guide_toward
from side_core.report import Report, SweepPoint
from side_core.run import Run
from side_core.surrogate import Surrogate

T = TypeVar("T")


# -- the queue --------------------------------------------------------------------------------------


@dataclass(eq=False)  # a ticket equals only itself: two tabs asking for the same job hold two places
class Ticket:
    title: str
    units: float  # the job's size in its own units (e.g. denoising steps x samples), for the estimate
    owner: str = ""  # the session that queued it (state.SESSION), for the per-session cap
    visitor: str = ""  # whom it is queued for (access.Access.visitor_key; the owner when empty): turns and cap
    started: float | None = None  # time.monotonic() when it began running

    @property
    def who(self) -> str:
        return self.visitor or self.owner


@dataclass
class JobQueue:
    """This server's heavy jobs, one at a time: on a few cores parallel jobs only slow each other down,
    and the engine's feature hook on the shared UNet wants one caller.

    Turns go round the visitors: the next job is the oldest waiting one of the visitor served least
    recently (one never served first), so three tabs of one visitor wait behind one job of each
    other visitor, never hold the queue for everyone."""

    condition: threading.Condition = field(default_factory=threading.Condition)
    tickets: list[Ticket] = field(default_factory=list)  # running and waiting, in the order they joined
    history: dict[str, list[float]] = field(default_factory=dict)  # title -> seconds per unit, recent first
    served: dict[str, int] = field(default_factory=dict)  # visitor -> when their last job started (a count)

    def join(self, title: str, units: float, owner: str = "", visitor: str = "") -> Ticket:
        with self.condition:
            ticket = Ticket(title, max(units, 1.0), owner, visitor)
            self.tickets.append(ticket)
            return ticket

    def queued_units(self, owner: str | None = None, visitor: str | None = None) -> float:
        """The units running or waiting for the session ``owner``, or for every session of ``visitor``."""
        with self.condition:
            return sum(
                ticket.units
                for ticket in self.tickets
                if (owner is None or ticket.owner == owner) and (visitor is None or ticket.who == visitor)
            )

    def order(self) -> list[Ticket]:
        """The running job, then the waiting ones in the order they will run (round-robin by visitor)."""
        with self.condition:
            running = [ticket for ticket in self.tickets if ticket.started is not None]
            waiting: dict[str, list[Ticket]] = {}
            for ticket in self.tickets:
                if ticket.started is None:
                    waiting.setdefault(ticket.who, []).append(ticket)
            # least recently served first; dicts keep insertion order, so ties go by who joined first
            visitors = sorted(waiting, key=lambda who: self.served.get(who, -1))
            rounds = max((len(queued) for queued in waiting.values()), default=0)
            turns = [waiting[who][i] for i in range(rounds) for who in visitors if i < len(waiting[who])]
            return running + turns

    def wait_turn(self, ticket: Ticket, timeout: float) -> bool:
        """True once ``ticket`` runs; False if it still waits after ``timeout`` seconds."""
        with self.condition:
            self.condition.wait_for(lambda: self.order()[0] is ticket, timeout)
            if self.order()[0] is not ticket:
                return False
            if ticket.started is None:
                ticket.started = time.monotonic()
                self.served[ticket.who] = max(self.served.values(), default=-1) + 1
            return True

    def leave(self, ticket: Ticket, finished: bool) -> None:
        with self.condition:
            if finished and ticket.started is not None:
                rate = (time.monotonic() - ticket.started) / ticket.units
                self.history[ticket.title] = [rate, *self.history.get(ticket.title, [])][:5]
            self.tickets.remove(ticket)
            self.condition.notify_all()

    def estimate(self, ticket: Ticket) -> float | None:
        """Seconds ``ticket`` should take: its size at the mean rate of recent jobs like it (or of any
        job, if none like it has finished); None before any job has finished on this server."""
        rates = self.history.get(ticket.title) or [r for rs in self.history.values() for r in rs]
        return ticket.units * sum(rates) / len(rates) if rates else None

    def wait_message(self, ticket: Ticket) -> str:
        with self.condition:
            order = self.order()
            ahead = order[: order.index(ticket)]
            now = time.monotonic()
            left: float | None = 0.0
            for other in ahead:
                estimate = self.estimate(other)
                if estimate is None or left is None:
                    left = None
                    continue
                elapsed = now - other.started if other.started is not None else 0.0
                left += max(estimate - elapsed, 1.0)
        running = ahead[0]
        since = f", running for {now - running.started:.0f} s" if running.started is not None else ""
        when = (
            f"it should start in about {left:.0f} s"
            if left is not None
            else "no estimate yet, as no job of that kind has finished on this server"
        )
        return (
            f"Queued: position {len(ahead) + 1} of {len(order)} on this server. Ahead of you: "
            f"'{running.title}'{since}" + (f", and {len(ahead) - 1} more" if len(ahead) > 1 else "") + f"; {when}."
        )


@st.cache_resource
def job_queue() -> JobQueue:
    return JobQueue()


@contextlib.contextmanager
def _turn(title: str, units: float) -> Iterator[None]:
    """Wait for this visitor's turn (showing the place in the queue), then run the block. A locked
    visitor's job is first checked against the shared server's caps (app_support.limits)."""
    queue = job_queue()
    owner = state.SESSION.get()
    visitor = access.current()
    who = visitor.visitor_key(owner)
    caps = visitor.limits
    if caps is not None:
        limits.check_run_store(caps, state.read_env().runs)
        limits.check_work(caps, units, queue.queued_units(owner=owner), queue.queued_units(visitor=who))
    ticket = queue.join(title, units, owner, who)
    finished = False
    try:
        if not queue.wait_turn(ticket, timeout=0):
            note = st.empty()
            while not queue.wait_turn(ticket, timeout=1.0):
                note.info(queue.wait_message(ticket), icon=":material/hourglass_top:")
            note.empty()
        yield
        finished = True
    finally:
        queue.leave(ticket, finished)


# -- work -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Work(Generic[T]):
    """One piece of heavy work: ``make(run, ui)`` makes (or, with ``ui=None``, only looks up) its
    stages; ``ui`` is the progress display ``make`` feeds while it computes."""

    title: str
    units: float  # size for the queue's estimate: denoising steps x samples, or classifier steps
    make: Callable[[Run, object | None], T]
    ui: Callable[[], object] = Progress

    def stored(self, run: Run) -> T | None:
        """The result if every stage is stored; None otherwise, having computed nothing."""
        return run.stored(lambda peek: self.make(peek, None))


def do(work: Work[T], run: Run) -> T | None:
    """Queue ``work``, then make it with a progress display; its result, or None with the engine's
    message shown (bad input is a SideError)."""
    result = None
    with errors_shown():
        result = work.stored(run)  # all stored: no need to wait behind other tabs' jobs
        if result is None:
            with _turn(work.title, work.units):
                ui = work.ui()
                try:
                    result = work.make(run, ui)
                finally:
                    ui.clear()
    return result


def _hooks(ui: Progress | None) -> dict:
    return ui.hooks() if ui is not None else {}


def surrogate(config: ExtractionConfig, methods: tuple[str, ...] = ()) -> Work[Surrogate]:
    """SIDE steps 1-5: N_syn plain samples, features, clusters, and the given classifiers."""
    if methods:
        title, units = "Train the classifier", config.classifier_train.steps * len(methods)
    else:
        title, units = "Generate and cluster", config.n_syn * config.sample.num_steps

    def make(run: Run, ui: Progress | None) -> Surrogate:
        return build_surrogate(run, config, methods, **_hooks(ui))

    return Work(title, units, make)


def clusters_with_scores(config: ExtractionConfig) -> Work[tuple[Surrogate, Scored]]:
    """What the cluster page shows: the surrogate stages, the PCA map, and the samples' scores."""
    base = surrogate(config)

    def make(run: Run, ui: Progress | None) -> tuple[Surrogate, Scored]:
        found = base.make(run, ui)
        if ui is not None:
            ui.say("PCA map and nearest training images")
        Map2D.make(run, found.features, "pca", config.seed)
        return found, resources.scored_samples(Score.make(run, found.synthetic))

    return Work(base.title, base.units, make)


def umap_map(found: Surrogate, config: ExtractionConfig) -> Work:
    """The UMAP map of the samples' features (about a minute, mostly importing and compiling umap)."""
    return Work("UMAP map", config.n_syn, lambda run, ui: Map2D.make(run, found.features, "umap", config.seed))


@dataclass(frozen=True)
class GuidedResult:
    guided: Scored  # with its frames: timestep -> (N, C, H, W) predicted x0
    plain: Scored
    landed: np.ndarray  # (N,) int64: the surrogate class each guided sample landed in (n_classes: none)
    key: str  # the guided generation's stage folder: one scrub slider per generation


def guided(found: Surrogate, request: state.GuidedRequest, size: int) -> Work[GuidedResult]:
    """Samples guided toward one class and where they landed (no training image is read for that),
    then the same seeds unguided, shown live side by side (side_core.pipeline.guide_toward)."""
    titles = (f"Guided toward class {request.cls}", "Unguided, same seeds")

    def make(run: Run, ui: LiveGrid | None) -> GuidedResult:
        feed = ui.feed if ui is not None else lambda i: None
        pair = guide_toward(
            run, found, request.cls, request.n, request.seed, request.sample, request.capture_steps, (feed(0), feed(1))
        )
        guided = resources.scored_samples(pair.guided, frames=True)
        plain = resources.scored_samples(pair.plain, frames=True)
        return GuidedResult(guided, plain, resources.landed_labels(pair.landed), pair.guided.inputs["generation"])

    units = 2 * request.n * request.sample.num_steps
    return Work(titles[0], units, make, ui=lambda: LiveGrid(titles, size))


def compare(config: ExtractionConfig) -> Work[Report]:
    """UnCond vs Cond vs SIDE at N_G (trains the missing classifiers first)."""

    def make(run: Run, ui: Progress | None) -> Report:
        return extract(run, config, METHODS, **_hooks(ui))

    return Work("Compare the three methods", 3 * config.n_samples * config.sample.num_steps, make)


def sweep(config: ExtractionConfig, scales: tuple[float, ...]) -> Work[list[SweepPoint]]:
    """SIDE at each guidance scale, same N_G and seeds; the progress bar names the scale being made."""

    def make(run: Run, ui: Progress | None) -> list[SweepPoint]:
        build_surrogate(run, config, ("side",), **_hooks(ui))  # the classifier first, with its training progress
        # the engine says which scale it generates, and that prefixes each batch's progress line
        hooks = {"say": ui.say, "sample_progress": ui.sample} if ui is not None else {}
        return guidance_sweep(run, config, scales, **hooks)

    return Work("Guidance-scale sweep", len(scales) * config.n_samples * config.sample.num_steps, make)


def stored_stages(run: Run, config: ExtractionConfig) -> dict[str, bool]:
    """Which of the configuration's stages are stored, by name (for the sidebar)."""
    found = surrogate(config).stored(run)
    return {
        "samples and clusters": found is not None,
        "UMAP map": found is not None and umap_map(found, config).stored(run) is not None,
        "SIDE classifier": surrogate(config, ("side",)).stored(run) is not None,
        "Cond classifier": surrogate(config, ("cond",)).stored(run) is not None,
    }
