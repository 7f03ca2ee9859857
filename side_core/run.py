"""A run: one model (and optionally one training set) and the store its stages live in.

:class:`Run` is the context every stage is made in: the model, the training set, the scoring
similarity, and the stages (side_core.stages: where each is found, made, verified and repaired). Each
kind of stage is a :class:`Stored` subclass in side_core.kinds that owns its key, how it is made, its
file names and its typed readers; its links to the stages it was made from are typed too. The order
in which SIDE makes them is side_core.pipeline.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from side_core.data import TrainingSet
from side_core.errors import SideError
from side_core.metrics import Bands
from side_core.models import LoadedModel
from side_core.neighbours import make_similarity
from side_core.stages import StageMissing, Stages
from side_core.store import Stage, read_array

T = TypeVar("T")
S = TypeVar("S", bound="Stored")


@dataclass(frozen=True, eq=False)
class Stored:
    """A stage of one kind in a run, read through the kind's typed readers.

    Subclasses name their ``KIND`` (the stage folder's prefix, part of every stored folder name) and
    whether the model is part of their key (``MODEL_SPECIFIC``); each has a ``make`` that keys, makes
    and returns it."""

    stage: Stage
    run: Run
    KIND: ClassVar[str]
    MODEL_SPECIFIC: ClassVar[bool] = True

    @property
    def name(self) -> str:
        """The stage's folder name: how reports, targets and other stages' keys refer to it."""
        return self.stage.path.name

    @property
    def path(self) -> Path:
        return self.stage.path

    @property
    def inputs(self) -> dict[str, Any]:
        return self.stage.inputs

    def summary(self) -> dict[str, Any]:
        return self.stage.summary()

    def file(self, name: str) -> Path:
        return self.stage.file(name)

    def array(self, name: str) -> np.ndarray:
        return read_array(self.stage.file(name))

    def link(self, key: str, kind: type[S]) -> S:
        """The stage of ``kind`` that this one's inputs name under ``key``."""
        return self.run.find(self.inputs[key], kind)


class Run:
    """A run store at ``root`` for one model and (optionally) one training set."""

    def __init__(
        self,
        root: str | Path,
        model: LoadedModel,
        data: TrainingSet | None = None,
        similarity: str = "pixels",
        sscd_path: str | Path | None = None,
        bands: Bands | None = None,
        read_only_roots: tuple[str | Path, ...] = (),
    ):
        # Finished stages in read_only_roots are used in place (e.g. the precomputed run in assets/);
        # anything new is written under root.
        self.stages = Stages(root, read_only_roots, str(model.device))
        self.model = model
        self.data = data
        self.similarity = make_similarity(similarity, sscd_path, device=model.device)
        self.sscd_path = str(sscd_path) if sscd_path else None
        self.fixed_bands = bands
        if data is not None and (data.channels, data.size) != (model.channels, model.size):
            raise SideError(
                f"The training images are {data.channels}x{data.size}x{data.size} but the model makes "
                f"{model.channels}x{model.size}x{model.size}: load the data for this model's channels and size."
            )

    @property
    def root(self) -> Path:
        return self.stages.root

    def stage(self, kind: type[S], inputs: dict) -> S:
        """The stage of ``kind`` for these inputs (side_core.stages), keyed by the model too when the
        kind depends on it; finished, or still to make with :meth:`build`."""
        if kind.MODEL_SPECIFIC:
            inputs = {"model": self.model.fingerprint, **inputs}
        return kind(self.stages.get(kind.KIND, inputs), self)

    def build(self, stored: S, make: Callable[[Stage], dict], together: bool = False) -> S:
        """``stored``, made under its lock if unfinished (side_core.stages.Stages.build)."""
        return type(stored)(self.stages.build(stored.stage, make, together), self)

    def find(self, stage_name: str, kind: type[S]) -> S:
        """Reopen a finished stage of ``kind`` by its folder name (as stored in reports and targets)."""
        if not stage_name.startswith(f"{kind.KIND}-"):
            raise SideError(f"Stage {stage_name} is not a {kind.KIND} stage: name one that is.")
        return kind(self.stages.find(stage_name), self)

    def stored(self, work: Callable[[Run], T]) -> T | None:
        """``work(run)`` if every stage it asks for is finished and intact; otherwise None, having
        made, deleted and repaired nothing.

        One callable both does a piece of work and, through here, answers "is it stored?", so the
        two can never ask for different stages."""
        try:
            return work(self.reading_only())
        except StageMissing:
            return None

    def reading_only(self) -> Run:
        """This run, answering from finished, intact stages only: asking it for any other stage
        raises :class:`~side_core.stages.StageMissing` (:meth:`Stages.reading_only`)."""
        view = copy.copy(self)  # every attribute as it is, whatever __init__ adds
        view.stages = self.stages.reading_only()
        return view
