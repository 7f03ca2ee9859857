"""The stage order, and the only module that knows it:

    generate (N_syn plain samples) -> embed -> cluster -> train classifier(s)
    -> generate (N_G samples: plain, Cond-guided or SIDE-guided) -> score against the training set

A :class:`Run` binds a run-store folder to one model (and, for scoring, one training set); each
stage method returns a finished :class:`~side_core.store.Stage` whose folder is keyed by the
stage's inputs, so asking again returns the stored result at once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from side_core import distributed
from side_core.allocation import (
    NEAR_IDENTICAL_QUANTILE,
    balanced_targets,
    near_identical_groups,
    pool_neighbours,
    retired_classes,
)
from side_core.classifier import (
    classifier_guidance,
    load_classifier,
    save_classifier,
    train_classifier,
)
from side_core.cluster import Clustering, cluster, l2_normalise, map_2d, silhouette
from side_core.config import (
    ALLOCATIONS,
    ClassifierConfig,
    ClassifierTrainConfig,
    ClusterConfig,
    ExtractionConfig,
    SampleConfig,
    check_seed,
)
from side_core.data import TrainingSet
from side_core.embed import embed, load_sscd
from side_core.errors import SideError
from side_core.metrics import BAND_RULE, Bands, bands_from_train, distinct_curve, in_band, summarize
from side_core.models import ASSETS, LoadedModel
from side_core.neighbours import QueryBlocks, make_similarity, search, train_nn_similarity
from side_core.sampling import SampleProgress, sample, validate
from side_core.store import (
    Stage,
    finite_or_none,
    read_array,
    read_tensors,
    stage_key,
    write_array,
    write_tensors,
)

log = logging.getLogger(__name__)

METHODS = ("uncond", "cond", "side")
# The precomputed surrogate stages of the bundled default model (`python -m side_core prepare`).
BUNDLED_STORE = ASSETS / "store"
# Guidance scales of the app's default sweep; `prepare` stores them for the bundled model.
SWEEP_SCALES = (0.0, 1.0, 2.0, 4.0, 8.0)
T = TypeVar("T")


class NotStored(Exception):
    """Raised inside :meth:`Run.stored` at the first stage that would have to be made."""


@dataclass(frozen=True)
class Target:
    """What a guided generation aims at: a classifier stage, and one class or all of them spread by
    an allocation (side_core.allocation)."""

    classifier: str  # the classifier stage folder name (its inputs key)
    n_classes: int
    cls: int | None = None  # None: every class, spread by ``allocation``
    allocation: str = "uniform"
    # adaptive only: the pool's near-identical cosine and the feature it is measured in
    near_identical: float | None = None
    feature: str | None = None

    def __post_init__(self) -> None:
        if self.cls is not None and (isinstance(self.cls, bool) or not 0 <= self.cls < self.n_classes):
            raise SideError(f"Class {self.cls!r} does not exist: the surrogate classes are 0 to {self.n_classes - 1}.")
        if self.allocation not in ALLOCATIONS:
            raise SideError(f"Unknown allocation {self.allocation!r}: use one of {', '.join(ALLOCATIONS)}.")
        if self.allocation == "adaptive" and (self.near_identical is None or self.feature is None):
            raise SideError("The adaptive allocation needs the pool's near-identical threshold and its feature.")

    @property
    def sequential(self) -> bool:
        """Whether shard i's targets depend on the samples of shards before it."""
        return self.cls is None and self.allocation == "adaptive"


def _listing(damaged: dict[str, str]) -> str:
    return "; ".join(f"{name} {why}" for name, why in damaged.items())


def shard_seed(seed: int, index: int) -> int:
    """Seed of shard ``index``: any process can make any shard, and get the same samples."""
    return seed * 100_003 + index


class Run:
    """A run store at ``root`` for one model and (optionally) one training set."""

    def __init__(
        self,
        root: str | Path,
        model: LoadedModel,
        data: TrainingSet | None = None,
        similarity: str = "pixel",
        sscd_path: str | Path | None = None,
        bands: Bands | None = None,
        read_only_roots: tuple[str | Path, ...] = (),
    ):
        self.root = Path(root)
        # Finished stages found here are used in place (e.g. the precomputed run in assets/);
        # anything new is written under root.
        self.read_only_roots = tuple(Path(r) for r in read_only_roots)
        self.model = model
        self.data = data
        self.similarity = make_similarity(similarity, sscd_path, device=model.device)
        self.sscd_path = str(sscd_path) if sscd_path else None
        self.fixed_bands = bands
        self._intact: dict[Path, tuple] = {}  # stages verified by this run (Stage.damage)
        if data is not None and (data.channels, data.size) != (model.channels, model.size):
            raise SideError(
                f"The training images are {data.channels}x{data.size}x{data.size} but the model makes "
                f"{model.channels}x{model.size}x{model.size}: load the data for this model's channels and size."
            )

    def stage(self, name: str, inputs: dict, model_specific: bool = True) -> Stage:
        """The stage for these inputs: finished and intact in a read-only root, or (new or finished)
        under root. A finished stage whose files no longer match its manifest is named in a warning,
        reopened and made again (a read-only copy is left alone and remade under root)."""
        if model_specific:
            inputs = {"model": self.model.fingerprint, **inputs}
        for root in self.read_only_roots:
            stage = Stage(root, name, inputs)
            if stage.done:
                damaged = stage.damage(self._intact)
                if not damaged:
                    return stage
                log.warning("%s is damaged (%s): making it again under %s", stage.path, _listing(damaged), self.root)
        stage = Stage(self.root, name, inputs)
        if stage.done:
            damaged = stage.damage(self._intact)
            if damaged:
                log.warning(
                    "%s is damaged (%s): discarding those files and making them again", stage.path, _listing(damaged)
                )
                stage.reopen(damaged)
        return stage

    def _build(self, stage: Stage, make: Callable[[Stage], dict], together: bool = False) -> Stage:
        """Make an unfinished stage under its lock: ``make(stage)`` writes the files and returns the
        summary. A process that waited for the lock finds the stage done and reuses it.

        ``together``: under a launcher every process runs ``make`` (it splits rows between them or
        trains with DDP); the main process holds the lock and finishes the stage, ``make`` writes
        only there, and the others wait for it."""
        world = distributed.current() if together else distributed.World()
        if stage.done and world.size == 1:
            return stage
        with stage.lock() if world.is_main else contextlib.nullcontext():
            if world.agree(stage.done):  # the main process's answer, under its lock: all take one branch
                return stage
            if world.is_main:
                stage.begin()
            started = time.perf_counter()
            summary = make(stage)
            if world.is_main:
                stage.finish({**summary, "seconds": round(time.perf_counter() - started, 2)})
        world.barrier()
        return stage

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

    # -- 1. generation -------------------------------------------------------------------------
    def generate(
        self,
        n: int,
        seed: int = 0,
        config: SampleConfig = SampleConfig(),
        target: Target | None = None,
        capture_steps: tuple[int, ...] = (),
        progress: Callable[[SampleProgress], None] | None = None,
        shards: range | None = None,
        poll_seconds: float = 0.5,
    ) -> Stage:
        """Generate ``n`` samples in shards of ``config.batch_size`` with per-shard seeds.

        Each shard is claimed before it is made, so processes sharing the store split the work
        between them; verified shards are kept (an interrupted generation resumes) and damaged ones
        are made again. ``shards`` restricts this call to some shard indices (a static split between
        processes); the call returns once its shards exist, and the stage is finished by whichever
        process sees every shard verified.
        """
        validate(self.model, config, n)
        check_seed(seed)
        if target is None:
            # Plain sampling ignores guidance settings: share one stage whatever they are.
            config = replace(config, guidance_scale=0.0, guidance_window=None)
        inputs = {"n": n, "seed": seed, "sample": config.to_dict(), "target": asdict(target) if target else None}
        if capture_steps:
            inputs["capture_steps"] = list(capture_steps)
        stage = self.stage("generate", inputs)
        if stage.done:
            return stage
        stage.begin()
        n_shards = -(-n // config.batch_size)
        guide_model = None
        if target is not None and config.guidance_scale > 0:
            guide_model, _ = load_classifier(self.find(target.classifier).path, self.model.device)
        started = time.perf_counter()
        world = distributed.current()  # launched processes make shards i = rank (mod world size)
        if target is not None and target.sequential:
            # each shard's targets depend on the shards before it: the main process makes them in order
            pending = list(range(n_shards)) if world.is_main else []
        else:
            pending = list(shards if shards is not None else world.shards(n_shards))
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
                    tensors = self._make_shard(
                        stage,
                        i,
                        n=n,
                        seed=seed,
                        config=config,
                        target=target,
                        guide_model=guide_model,
                        capture_steps=capture_steps,
                        progress=progress,
                    )
                    stage.write_shard(i, tensors)
            pending = busy
            if busy:
                time.sleep(poll_seconds)
        if shards is None:
            world.barrier()  # every process's shards are made
        if all(stage.shard_ok(i) for i in range(n_shards)):
            with stage.lock():
                if not stage.done:
                    stage.finish({"n": n, "n_shards": n_shards, "seconds": round(time.perf_counter() - started, 2)})
        return stage

    def _make_shard(
        self,
        stage: Stage,
        i: int,
        *,
        n: int,
        seed: int,
        config: SampleConfig,
        target: Target | None,
        guide_model: torch.nn.Module | None,
        capture_steps: tuple[int, ...],
        progress: Callable[[SampleProgress], None] | None,
    ) -> dict[str, torch.Tensor]:
        """Shard ``i``: its samples, targets and captured frames, a function of (seed, i) and, for the
        adaptive allocation, of the shards before it."""
        n_shards = -(-n // config.batch_size)
        size = min(config.batch_size, n - i * config.batch_size)
        tensors = {}
        guidance = None
        if target is not None:
            targets = torch.from_numpy(self.aim(stage, i, n=n, seed=seed, batch=config.batch_size, target=target))
            tensors["targets"] = targets
            if guide_model is not None:
                guidance = classifier_guidance(guide_model, targets.to(self.model.device))
        shard_progress = None
        if progress is not None:

            def shard_progress(p: SampleProgress) -> None:
                progress(replace(p, batch=i, n_batches=n_shards))

        result = sample(
            self.model,
            size,
            config,
            torch.Generator().manual_seed(shard_seed(seed, i)),
            guidance=guidance,
            progress=shard_progress,
            capture_steps=capture_steps,
        )
        tensors["images"] = result.images
        for t, frame in result.frames.items():
            tensors[f"frame_{t:04d}"] = frame
        return tensors

    def aim(self, stage: Stage, i: int, *, n: int, seed: int, batch: int, target: Target) -> np.ndarray:
        """The target class of each sample of shard ``i`` (side_core.allocation)."""
        size = min(batch, n - i * batch)
        if target.cls is not None:
            return np.full(size, target.cls, dtype=np.int64)
        if target.allocation == "uniform":
            return np.random.default_rng([seed, i, 1]).integers(0, target.n_classes, size)
        counts = np.zeros(target.n_classes, dtype=np.int64)
        active = np.arange(target.n_classes)
        if target.allocation == "stratified":
            for j in range(i):  # replay the earlier shards' choices: they are pure functions of (seed, j)
                balanced_targets(counts, active, min(batch, n - j * batch), np.random.default_rng([seed, j, 2]))
        elif i > 0:  # adaptive: what the earlier shards found decides
            earlier = [read_tensors(stage.shard(j)) for j in range(i)]
            aimed = torch.cat([s["targets"] for s in earlier]).numpy()
            images = torch.cat([s["images"] for s in earlier])
            features = l2_normalise(embed(images, target.feature, self.model, self.sscd_path))
            counts = np.bincount(aimed, minlength=target.n_classes)
            retired = retired_classes(features, aimed, target.near_identical, target.n_classes)
            active = np.flatnonzero(~retired) if not retired.all() else active
        return balanced_targets(counts, active, size, np.random.default_rng([seed, i, 2]))

    def images(self, stage: Stage) -> torch.Tensor:
        """(N, C, H, W) float32 in [-1, 1]: a generation stage's samples, in order."""
        return self._shard_tensor(stage, "images")

    def targets(self, stage: Stage) -> torch.Tensor | None:
        return self._shard_tensor(stage, "targets") if stage.inputs.get("target") else None

    def frames(self, stage: Stage) -> dict[int, torch.Tensor]:
        """timestep -> (N, C, H, W) predicted x0 at that step, for captured steps."""
        shards = self._shards(stage)
        keys = sorted(k for k in shards[0] if k.startswith("frame_"))
        return {int(k[6:]): torch.cat([s[k] for s in shards]) for k in keys}

    def _shards(self, stage: Stage) -> list[dict[str, torch.Tensor]]:
        if not stage.done:
            raise SideError(f"Generation {stage.path.name} is not finished: run it again to complete it.")
        return [read_tensors(stage.shard(i)) for i in range(stage.summary()["n_shards"])]

    def _shard_tensor(self, stage: Stage, key: str) -> torch.Tensor:
        return torch.cat([s[key] for s in self._shards(stage)])

    # -- 2. features, clusters, map --------------------------------------------------------------
    def features(self, generation: Stage, feature: str = "unet") -> Stage:
        stage = self.stage(
            "features",
            {
                "generation": generation.path.name,
                "feature": feature,
                "sscd": self.sscd_path if feature == "sscd" else None,
            },
        )

        def make(stage: Stage) -> dict:
            features = embed(self.images(generation), feature, self.model, self.sscd_path, world=distributed.current())
            if not distributed.is_main():
                return {}
            write_array(stage.file("features.npy"), features)
            return {}

        return self._build(stage, make, together=True)

    def cluster(self, features: Stage, config: ClusterConfig) -> Stage:
        stage = self.stage("cluster", {"features": features.path.name, **config.to_dict()})

        def make(stage: Stage) -> dict:
            f = read_array(features.file("features.npy"))
            c = cluster(f, config)
            for name, array in c.to_arrays().items():
                write_array(stage.file(f"{name}.npy"), array)
            return {
                "n_classes": c.n_classes,
                "background": c.background,
                "in_classes": int((c.labels < c.n_classes).sum()),
                "silhouette": finite_or_none(round(silhouette(f, c.kmeans_labels, config.seed), 4)),
            }

        return self._build(stage, make)

    def pool(self, features: Stage, quantile: float = NEAR_IDENTICAL_QUANTILE) -> Stage:
        """Near-identical pairs in a generation, from its features (side_core.allocation): each
        sample's nearest-other similarity, first near-identical partner, and the threshold."""
        stage = self.stage("pool", {"features": features.path.name, "quantile": quantile})

        def make(stage: Stage) -> dict:
            nn, threshold, partner = pool_neighbours(l2_normalise(read_array(features.file("features.npy"))), quantile)
            write_array(stage.file("nn_similarity.npy"), nn)
            write_array(stage.file("partner.npy"), partner)
            return {"near_identical": round(threshold, 6), "flagged": int((partner >= 0).sum())}

        return self._build(stage, make)

    def filter(self, pool: Stage, synthetic: Stage) -> Stage:
        """The Filter baseline on a pool of plain samples: those with a near-identical partner in the
        pool are reported as memorized, with no classifier and no guided sample. A stage of its own
        (it reads the whole pool), so a stored comparison, e.g. each app rerun, only reads it.

        Summary: ``flagged``, ``groups``, ``precision_high``, ``extracted`` and ``curve``, entry n-1 of
        which counts the distinct high-band training images among the samples flagged once only the
        first n pool samples exist (a sample is flagged when both it and its partner are drawn);
        ``plain_curve``: the same pool read as plain sampling (UnCond at the budget SIDE spent on it)."""
        pool_score = self.score(synthetic)
        stage = self.stage("filter", {"pool": pool.path.name, "score": pool_score.path.name})

        def make(stage: Stage) -> dict:
            partner = read_array(pool.file("partner.npy"))
            high = self.bands().high
            copy = in_band(self.neighbours(pool_score)[0][:, 0], high)
            flagged = np.flatnonzero(partner >= 0)
            flagged_at = np.maximum(flagged, partner[flagged])  # reported once its partner is drawn too
            # every training image in the high band of a flagged sample counts, as in the methods' rows
            train_vectors = read_tensors(self.reference().file("vectors.safetensors"))["vectors"]
            similarity = self.similarity.vectors(self.images(synthetic)[flagged]) @ train_vectors.T
            rows, images = np.nonzero(in_band(similarity.numpy(), high))
            first_hit = np.full(len(self.data), len(partner), dtype=np.int64)
            np.minimum.at(first_hit, images, flagged_at[rows])
            first_hit[first_hit == len(partner)] = -1
            curve = distinct_curve(first_hit, len(partner))
            return {
                "n_generated": len(partner),
                "near_identical": pool.summary()["near_identical"],
                "flagged": len(flagged),
                "groups": int(near_identical_groups(partner).max() + 1),
                "precision_high": round(100 * float(copy[flagged].mean()), 3) if len(flagged) else None,
                "extracted": np.flatnonzero(first_hit >= 0).tolist(),
                "curve": curve.tolist(),
                "plain_curve": distinct_curve(self.first_hit(pool_score), len(partner)).tolist(),
            }

        return self._build(stage, make)

    def clustering(self, stage: Stage) -> Clustering:
        fields = ("kmeans_labels", "centroids", "cohesion", "sizes", "kept", "labels")
        return Clustering(**{k: read_array(stage.file(f"{k}.npy")) for k in fields})

    def map2d(self, features: Stage, method: str = "umap", seed: int = 0) -> Stage:
        stage = self.stage("map", {"features": features.path.name, "method": method, "seed": seed})

        def make(stage: Stage) -> dict:
            write_array(stage.file("xy.npy"), map_2d(read_array(features.file("features.npy")), method, seed))
            return {}

        return self._build(stage, make)

    # -- 3. classifiers --------------------------------------------------------------------------
    def classifier(
        self,
        generation: Stage,
        clusters: Stage,
        time_dependent: bool = True,
        train_config: ClassifierTrainConfig = ClassifierTrainConfig(),
        width: int = 32,
        progress: Callable[[int, int, float], None] | None = None,
        say: Callable[[str], None] = log.info,
    ) -> Stage:
        cluster_summary = clusters.summary()
        n_classes = cluster_summary["n_classes"]
        config = ClassifierConfig(
            # stores made before the background label have no such key: none of their samples has it
            n_classes=n_classes + int(cluster_summary.get("background", False)),
            channels=self.model.channels,
            size=self.model.size,
            time_dependent=time_dependent,
            width=width,
        )
        inputs = {
            "generation": generation.path.name,
            "clusters": clusters.path.name,
            "config": config.to_dict(),
            "train": train_config.to_dict(),
            # the weight initialisation is drawn from train.seed (classifiers of older stores were not)
            "seeded_init": True,
        }
        stage = self.stage("classifier", inputs)

        def make(stage: Stage) -> dict:
            kind = "time-dependent" if time_dependent else "time-blind"
            say(f"training the {kind} classifier ({train_config.steps} steps)")
            labels = torch.from_numpy(read_array(clusters.file("labels.npy")))
            model, report = train_classifier(
                self.images(generation),
                labels,
                self.model.scheduler,
                config,
                train_config,
                device=self.model.device,
                progress=progress,
                n_targets=n_classes,
            )
            if not distributed.is_main():
                return {}
            save_classifier(model, report, stage.path)
            return {"n_classes": n_classes, **report.to_dict()}

        return self._build(stage, make, together=True)

    # -- 4. scoring ------------------------------------------------------------------------------
    def reference(self) -> Stage:
        """Training-set vectors under the similarity, their nearest-neighbour similarities, bands."""
        if self.data is None:
            raise SideError("Scoring needs the training set: load one (e.g. 'default') for this run.")
        inputs = {
            "data": stage_key({"facts": self.data.facts(), "names": self.data.names}),
            "similarity": self.similarity.to_dict(),
            "bands": self.fixed_bands.to_dict() if self.fixed_bands else None,
            "band_rule": None if self.fixed_bands else BAND_RULE,
        }
        stage = self.stage("reference", inputs, model_specific=False)

        def make(stage: Stage) -> dict:
            vectors = self.similarity.vectors(self.data.images)
            nn_sim, nn_idx = train_nn_similarity(vectors, device=self.model.device)
            bands = self.fixed_bands or bands_from_train(nn_sim)
            write_tensors(stage.file("vectors.safetensors"), {"vectors": vectors})
            write_array(stage.file("nn_similarity.npy"), nn_sim)
            write_array(stage.file("nn_index.npy"), nn_idx)
            return {"bands": bands.to_dict(), "n_train": len(self.data)}

        return self._build(stage, make)

    def bands(self) -> Bands:
        b = self.reference().summary()["bands"]
        return Bands(tuple(b["low"]), tuple(b["mid"]), tuple(b["high"]))

    def score(self, generation: Stage, k: int = 3) -> Stage:
        """Nearest training images of every sample, and the method's AMS/UMS/p95/extracted."""
        reference = self.reference()
        stage = self.stage(
            "score",
            {"generation": generation.path.name, "reference": reference.path.name, "k": k},
            model_specific=False,
        )

        def make(stage: Stage) -> dict:
            bands = self.bands()
            train_vectors = read_tensors(reference.file("vectors.safetensors"))["vectors"]
            n, batch = generation.inputs["n"], generation.inputs["sample"]["batch_size"]
            queries = QueryBlocks(  # one shard at a time: memory does not grow with N_G
                tuple(min(batch, n - start) for start in range(0, n, batch)),
                lambda i: self.similarity.vectors(read_tensors(generation.shard(i))["images"]),
            )
            world = distributed.current()
            result = search(queries, train_vectors, k=k, bands=bands, device=self.model.device, world=world)
            if not world.is_main:
                return {}
            write_array(stage.file("similarity.npy"), result.similarity)
            write_array(stage.file("index.npy"), result.index)
            for name, first in result.first_hit.items():
                write_array(stage.file(f"first_hit_{name}.npy"), first)
            return summarize(result.max_similarity, result.band_hits, bands)

        return self._build(stage, make, together=True)

    def first_hit(self, score: Stage, band: str = "high") -> np.ndarray:
        """(M,) int64: index of the first sample in ``band`` with each training image (-1: none)."""
        return read_array(score.file(f"first_hit_{band}.npy"))

    def neighbours(self, score: Stage) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) similarities (descending) and (N, k) training indices of a scored generation."""
        return read_array(score.file("similarity.npy")), read_array(score.file("index.npy"))

    # -- look-ups that never compute -------------------------------------------------------------
    def stored(self, work: Callable[[Run], T]) -> T | None:
        """``work(run)`` if every stage it asks for is finished; otherwise None, having made nothing.

        One callable both does a piece of work and, through here, answers "is it stored?", so the
        two can never ask for different stages."""
        import copy

        peek = copy.copy(self)

        def stage(*args, **kwargs) -> Stage:
            found = type(self).stage(peek, *args, **kwargs)
            if not found.done:
                raise NotStored(found.path.name)
            return found

        peek.stage = stage  # the instance attribute shadows the method for every stage peek asks for
        try:
            return work(peek)
        except NotStored:
            return None

    def map_points(self, stage: Stage) -> np.ndarray:
        """(N, 2) float32: a map stage's 2-D positions of the samples."""
        return read_array(stage.file("xy.npy"))

    def feature_vectors(self, stage: Stage) -> np.ndarray:
        """(N, D) float32: a features stage's per-sample features."""
        return read_array(stage.file("features.npy"))

    def train_similarity(self) -> np.ndarray:
        """(M,) float32: each training image's similarity to its nearest other training image."""
        return read_array(self.reference().file("nn_similarity.npy"))


@dataclass
class Surrogate:
    """The surrogate-condition stages: plain samples, their features and clusters, classifiers."""

    synthetic: Stage
    features: Stage
    clusters: Stage
    pool: Stage  # near-identical pairs among the synthetic samples
    classifiers: dict[str, Stage]  # method ("side": time-dependent, "cond": time-blind) -> stage
    allocation: str = "uniform"

    def target(self, method: str, cls: int | None = None) -> Target:
        stage = self.classifiers[method]
        if cls is not None:
            return Target(stage.path.name, stage.summary()["n_classes"], cls)
        if self.allocation != "adaptive":
            return Target(stage.path.name, stage.summary()["n_classes"], allocation=self.allocation)
        return Target(
            stage.path.name,
            stage.summary()["n_classes"],
            allocation="adaptive",
            near_identical=self.pool.summary()["near_identical"],
            feature=self.features.inputs["feature"],
        )


def check_extraction(run: Run, config: ExtractionConfig) -> None:
    """Everything about an extraction that can be known before any work, checked at once (the
    configs check themselves when built; this checks their fit to the model and training set)."""
    validate(run.model, config.sample, config.n_samples)
    validate(run.model, config.sample, config.n_syn)
    if config.cluster.feature == "sscd" and run.similarity.name != "sscd":  # else loaded with the run
        load_sscd(run.sscd_path)
    if run.data is not None:
        run.bands()  # calibrates the bands now: a training set too small or too alike fails here


def build_surrogate(
    run: Run,
    config: ExtractionConfig,
    methods: tuple[str, ...] = ("side",),
    say: Callable[[str], None] = log.info,
    sample_progress: Callable[[SampleProgress], None] | None = None,
    classifier_progress: Callable[[int, int, float], None] | None = None,
) -> Surrogate:
    """SIDE steps 1-5: generate N_syn plain samples, embed, cluster, train the classifiers."""
    check_extraction(run, config)
    say(f"generating {config.n_syn} plain samples to cluster")
    plain = replace(config.sample, guidance_scale=0.0)
    synthetic = run.generate(config.n_syn, config.synthetic_seed, plain, progress=sample_progress)
    say(f"embedding ({config.cluster.feature}) and clustering (K={config.cluster.k}, {config.cluster.keep_rule})")
    features = run.features(synthetic, config.cluster.feature)
    clusters = run.cluster(features, config.cluster)
    pool = run.pool(features)
    classifiers = {}
    for method in ("side", "cond"):
        if method in methods:
            classifiers[method] = run.classifier(
                synthetic,
                clusters,
                time_dependent=method == "side",
                train_config=config.classifier_train,
                width=config.classifier_width,
                progress=classifier_progress,
                say=say,
            )
    return Surrogate(synthetic, features, clusters, pool, classifiers, config.allocation)


def extract(
    run: Run,
    config: ExtractionConfig,
    methods: tuple[str, ...] = METHODS,
    say: Callable[[str], None] = log.info,
    sample_progress: Callable[[SampleProgress], None] | None = None,
    classifier_progress: Callable[[int, int, float], None] | None = None,
) -> dict:
    """Run the given methods at equal N_G with the same sampler and seeds; return the report.

    Report shape (stable; scripts read it): ``{"model", "data", "similarity": {name, preprocessing,
    bands}, "methods": {method: {n_generated, ams, ums, p95, extracted, seconds}}, ...}``.
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SideError(f"Unknown method(s) {sorted(unknown)}: use {', '.join(METHODS)}.")
    check_extraction(run, config)
    report: dict = {
        "model": run.model.facts(),
        "data": run.data.facts() if run.data else None,
        "similarity": {**run.similarity.to_dict(), "bands": run.bands().to_dict()},
        "config": config.to_dict(),
        "methods": {},
    }
    surrogate = None
    shared_seconds: dict[str, float] = {}
    guided = tuple(m for m in methods if m != "uncond")
    if guided:
        surrogate = build_surrogate(run, config, guided, say, sample_progress, classifier_progress)
        shared_seconds = {
            name: getattr(surrogate, name).summary()["seconds"] for name in ("synthetic", "features", "clusters")
        }
        report["clusters"] = {k: surrogate.clusters.summary().get(k) for k in ("n_classes", "in_classes", "silhouette")}
        report["classifiers"] = {
            m: {k: stage.summary()[k] for k in ("quartiles", "accuracy", "clean_accuracy", "chance")}
            for m, stage in surrogate.classifiers.items()
        }
        if run.data is not None:
            report["filter"] = filter_baseline(run, surrogate)
    for method in methods:
        target = surrogate.target(method) if method != "uncond" else None
        say(f"{method}: generating {config.n_samples} samples")
        generation = run.generate(config.n_samples, config.seed, config.sample, target, progress=sample_progress)
        score = run.score(generation)
        row = {k: v for k, v in score.summary().items() if k != "seconds"}
        seconds = dict(shared_seconds) if target else {}
        if target:
            seconds["classifier"] = surrogate.classifiers[method].summary()["seconds"]
        seconds["generate"] = generation.summary()["seconds"]
        seconds["score"] = score.summary()["seconds"]
        # what the method generated in all: guided methods first drew the N_syn pool
        row["cost"] = config.n_samples + (config.n_syn if target else 0)
        row.update(seconds=seconds, generation=generation.path.name, score=score.path.name)
        report["methods"][method] = row
        say(
            f"{method}: AMS high {row['ams']['high']:.1f}%  UMS high {row['ums']['high']:.1f}%  "
            f"distinct {len(row['extracted'])}"
        )
    return report


def filter_baseline(run: Run, surrogate: Surrogate) -> dict:
    """Generate-and-filter on the surrogate's own pool (Carlini et al. 2023): :meth:`Run.filter`'s
    result for the pool. What SIDE adds beyond its own pool is what it extracts beyond this."""
    return {k: v for k, v in run.filter(surrogate.pool, surrogate.synthetic).summary().items() if k != "seconds"}


def guidance_sweep(
    run: Run,
    config: ExtractionConfig,
    scales: tuple[float, ...],
    method: str = "side",
    say: Callable[[str], None] = log.info,
    sample_progress: Callable[[SampleProgress], None] | None = None,
) -> list[dict]:
    """Extraction at each guidance scale (same N_G, seeds and targets); one summary row per scale."""
    # every scale is checked (finite, >= 0) before the surrogate stages start
    sample_configs = [replace(config.sample, guidance_scale=float(scale)) for scale in scales]
    surrogate = build_surrogate(run, config, (method,), say)
    rows = []
    for scale, sample_config in zip(scales, sample_configs, strict=True):
        say(f"scale {scale:g}: generating {config.n_samples} samples")
        generation = run.generate(
            config.n_samples, config.seed, sample_config, surrogate.target(method), progress=sample_progress
        )
        score = run.score(generation)
        summary = score.summary()
        rows.append(
            {
                "scale": float(scale),
                **{k: summary[k] for k in ("ams", "ums", "p95")},
                "distinct": len(summary["extracted"]),
                "score": score.path.name,
            }
        )
        say(f"scale {scale}: AMS high {summary['ams']['high']:.1f}%, distinct {rows[-1]['distinct']}")
    return rows


def best_extractions(
    run: Run, generation: Stage, score: Stage, n: int = 8
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """The ``n`` samples closest to distinct training images, best first.

    Returns (generated (n, C, H, W), training (n, C, H, W), similarity (n,), training index (n,)).
    """
    sims, idx = run.neighbours(score)
    order = np.argsort(-sims[:, 0], kind="stable")
    chosen, seen = [], set()
    for i in order:
        if idx[i, 0] not in seen:
            seen.add(idx[i, 0])
            chosen.append(i)
        if len(chosen) == n:
            break
    chosen = np.array(chosen, dtype=np.int64)
    train_idx = idx[chosen, 0]
    return run.images(generation)[chosen], run.data.images[train_idx], sims[chosen, 0], train_idx


def prepare(
    run: Run,
    config: ExtractionConfig,
    say: Callable[[str], None] = log.info,
    sample_progress: Callable[[SampleProgress], None] | None = None,
    classifier_progress: Callable[[int, int, float], None] | None = None,
) -> Surrogate:
    """Everything the app shows before the first click: surrogate stages for both guided methods,
    the 2-D maps (UMAP and PCA), the scores of the synthetic samples, and the three-method comparison
    at ``config.n_samples``."""
    surrogate = build_surrogate(run, config, ("side", "cond"), say, sample_progress, classifier_progress)
    for method in ("pca", "umap"):
        say(f"{method} map of the features")
        run.map2d(surrogate.features, method, config.seed)
    if run.data is not None:
        say("scoring the synthetic samples against the training set")
        run.score(surrogate.synthetic)
        extract(run, config, METHODS, say, sample_progress, classifier_progress)
    return surrogate
