"""A run's stages: where each is found, made, verified and repaired, and how a generation's shards are
filled by the processes that share the store (side_core.store holds the files themselves).

- :meth:`Stages.get` returns the stage for some inputs: finished and intact in a read-only root (e.g.
  the precomputed stages in assets/), or under the run's root, new, finished, or reopened for repair
  when its files no longer match its manifest.
- :meth:`Stages.reading_only` is the same store answering only from finished, intact stages: asking it
  for any other stage raises :class:`StageMissing`; it makes, deletes and repairs nothing. It answers
  "is this piece of work stored?" by running the work itself (``Run.stored``).
- :meth:`Stages.build` makes an unfinished stage under its lock; :func:`fill_shards` fills a
  generation shard by shard, each shard claimed first, so processes split the work between them;
  :func:`read_shards` reads a finished generation's shards back.

Each stage is logged once per run, as made or as reused (and from which store), and a stage made
here records with its wall time where and when it was made (:func:`made_here`), so that a report
can say where every timing it shows was measured.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from side_core import distributed
from side_core.errors import SideError
from side_core.store import Stage, read_tensors

log = logging.getLogger(__name__)

# How long a process waits before looking again at the shards another process is making.
POLL_SECONDS = 0.5


class StageMissing(Exception):
    """A read-only look-up asked for a stage that is not finished and intact (its folder name)."""


def _listing(damaged: dict[str, str]) -> str:
    return "; ".join(f"{name} {why}" for name, why in damaged.items())


@functools.cache
def _cpu() -> str:
    """The CPU's model name (Linux), else what the platform says."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def made_here(device: str) -> dict:
    """Where and when a stage is being made, recorded beside its wall time (``made`` in its summary):
    host, CPU, cores, torch threads, ``device`` (with the GPU's name), processes, torch, and the time
    (UTC) it finished."""
    if device.startswith("cuda") and torch.cuda.is_available():
        device = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return {
        "host": socket.gethostname(),
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": device,
        "processes": distributed.current().size,
        "torch": torch.__version__,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def describe(stage: Stage) -> str:
    """A stage's folder name, with its number of samples for a generation."""
    n = stage.inputs.get("n") if stage.path.name.startswith("generate-") else None
    return f"{stage.path.name} ({n} samples)" if n is not None else stage.path.name


class Stages:
    """The stages of a run store at ``root``; finished stages in ``read_only_roots`` are used in place.
    ``device``: where this run computes, recorded with the stages it makes."""

    def __init__(self, root: str | Path, read_only_roots: tuple[str | Path, ...] = (), device: str = "cpu"):
        self.root = Path(root)
        self.read_only_roots = tuple(Path(r) for r in read_only_roots)
        self.device = device
        self.read_only = False
        self._intact: dict[Path, tuple] = {}  # stages verified so far (Stage.damage)
        self._told: set[Path] = set()  # stages logged as reused or made

    def reading_only(self) -> Stages:
        """The same stages, answering only from finished, intact ones (module docstring)."""
        view = Stages(self.root, self.read_only_roots, self.device)
        view.read_only = True
        view._intact = self._intact  # what one has verified, the other need not verify again
        view._told = self._told
        return view

    def where(self, stage: Stage) -> str:
        """Which store holds ``stage``, in words: the run store or a read-only one, with its folder."""
        root = stage.path.parent
        return f"the run store {root}" if root == self.root else f"the read-only store {root}"

    def _reused(self, stage: Stage) -> Stage:
        """Log, once per run, that a finished stage is reused, and from where."""
        if stage.path not in self._told:
            self._told.add(stage.path)
            log.info("reused %s from %s", describe(stage), self.where(stage))
        return stage

    def _made(self, stage: Stage, seconds: float) -> dict:
        """Log that this process made ``stage``; the summary entries that say when, where and how long."""
        self._told.add(stage.path)
        log.info("made %s in %.1f s, in %s", describe(stage), seconds, self.where(stage))
        return {"seconds": round(seconds, 2), "made": made_here(self.device)}

    def get(self, name: str, inputs: dict) -> Stage:
        """The stage for these inputs: finished and intact in a read-only root, or (new or finished)
        under root. A finished stage whose files no longer match its manifest is named in a warning,
        reopened and made again (a read-only copy is left alone and remade under root)."""
        for root in self.read_only_roots:
            stage = Stage.keyed(root, name, inputs)
            if stage.done:
                damaged = stage.damage(self._intact)
                if not damaged:
                    return self._reused(stage)
                if not self.read_only:
                    log.warning(
                        "%s is damaged (%s): making it again under %s", stage.path, _listing(damaged), self.root
                    )
        stage = Stage.keyed(self.root, name, inputs)
        damaged = stage.damage(self._intact) if stage.done else {}
        if self.read_only:
            if not stage.done or damaged:
                raise StageMissing(stage.path.name)
            return self._reused(stage)
        if damaged:
            log.warning(
                "%s is damaged (%s): discarding those files and making them again", stage.path, _listing(damaged)
            )
            stage.reopen(damaged)
        return self._reused(stage) if stage.done else stage

    def find(self, stage_name: str) -> Stage:
        """Reopen a finished stage by its folder name (as stored in reports and targets)."""
        for root in (self.root, *self.read_only_roots):
            if (root / stage_name / "inputs.json").exists():
                stage = Stage.open(root / stage_name)
                damaged = stage.damage(self._intact) if stage.done else {}
                if damaged:
                    raise SideError(
                        f"Stage {stage.path} is damaged ({_listing(damaged)}): run the command that made it "
                        "again, which repairs it."
                    )
                return stage
        raise SideError(f"Stage {stage_name} is not in {self.root}: run the stage that makes it first.")

    def build(self, stage: Stage, make: Callable[[Stage], dict], together: bool = False) -> Stage:
        """Make an unfinished stage under its lock: ``make(stage)`` writes the files and returns the
        summary. A process that waited for the lock finds the stage done and reuses it.

        ``together``: under a launcher every process runs ``make`` (it splits rows between them or
        trains with DDP); the main process holds the lock and finishes the stage, ``make`` writes
        only there, and the others wait for it."""
        world = distributed.current() if together else distributed.World()
        if stage.done and world.size == 1:
            return stage
        if self.read_only:
            raise StageMissing(stage.path.name)
        with stage.lock() if world.is_main else contextlib.nullcontext():
            if world.agree(stage.done):  # the main process's answer, under its lock: all take one branch
                return self._reused(stage)  # another process made it meanwhile
            if world.is_main:
                stage.begin()
            started = time.perf_counter()
            summary = make(stage)
            if world.is_main:
                stage.finish({**summary, **self._made(stage, time.perf_counter() - started)})
        world.barrier()
        return stage

    def fill(self, stage: Stage, sharding: Sharding, make_shard: Callable[[int], dict[str, torch.Tensor]]) -> Stage:
        """Make a generation's missing shards (:func:`fill_shards`), logged and recorded as a stage
        this run made (or reused, when it finished meanwhile)."""
        if stage.done:
            return self._reused(stage)
        if self.read_only:
            raise StageMissing(stage.path.name)
        return fill_shards(stage, sharding, make_shard, self._made)


@dataclass(frozen=True)
class Sharding:
    """``n`` samples made in shards of ``batch_size``, shard ``i`` from its own seed, so that any
    process can make any shard and get the same samples."""

    n: int
    batch_size: int

    @property
    def count(self) -> int:
        return -(-self.n // self.batch_size)

    def size(self, i: int) -> int:
        """Samples in shard ``i`` (the last one may hold fewer)."""
        return min(self.batch_size, self.n - i * self.batch_size)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(self.size(i) for i in range(self.count))

    @staticmethod
    def seed(seed: int, i: int) -> int:
        """The seed of shard ``i`` of a generation with seed ``seed``."""
        return seed * 100_003 + i


def fill_shards(
    stage: Stage,
    sharding: Sharding,
    make_shard: Callable[[int], dict[str, torch.Tensor]],
    timed: Callable[[Stage, float], dict] = lambda stage, seconds: {"seconds": round(seconds, 2)},
) -> Stage:
    """Make the missing shards of a generation stage; ``make_shard(i)`` returns shard i's tensors.

    Each shard is claimed before it is made, so processes sharing the store split the work between
    them; verified shards are kept (an interrupted generation resumes) and damaged ones are made
    again. Under a launcher each process makes its share; the stage is finished by whichever process
    sees every shard verified. ``timed(stage, seconds)``: the summary entries for the wall time
    (``Stages.fill`` adds where and when)."""
    if stage.done:
        return stage
    stage.begin()
    started = time.perf_counter()
    world = distributed.current()  # launched processes make shards i = rank (mod world size)
    pending = list(world.shards(sharding.count))
    while pending:
        busy = []  # shards another process is making
        for i in pending:
            if stage.shard_ok(i):
                continue
            with stage.claim_shard(i) as mine:
                if not mine:
                    busy.append(i)
                    continue
                problem = stage.shard_problem(i)  # again: another process may have just made it
                if problem is None:
                    continue
                if problem != "missing":
                    log.warning("shard %s %s: making it again", stage.shard(i), problem)
                stage.write_shard(i, make_shard(i))
        pending = busy
        if busy:
            time.sleep(POLL_SECONDS)
    world.barrier()  # every process's shards are made
    if all(stage.shard_ok(i) for i in range(sharding.count)):
        with stage.lock():
            if not stage.done:
                stage.finish(
                    {"n": sharding.n, "n_shards": sharding.count, **timed(stage, time.perf_counter() - started)}
                )
    return stage


def read_shards(stage: Stage) -> list[dict[str, torch.Tensor]]:
    """A finished generation stage's shards, in order, each as the tensors :func:`fill_shards` wrote."""
    if not stage.done:
        raise SideError(f"Generation {stage.path.name} is not finished: run it again to complete it.")
    return [read_tensors(stage.shard(i)) for i in range(stage.summary()["n_shards"])]
