"""SIDE's steps, in order, and the only module that knows the order:

    1. generate N_syn plain samples -> 2. embed -> 3. cluster and 4. filter the clusters
    -> 5. train the classifier(s) -> 6. generate N_G samples (plain, Cond-guided or SIDE-guided)
    -> 7. score them against the training set

Beside the paper's three methods, the shuffled-label control (CONTROLS): the time-dependent
classifier's recipe on the same samples with the labels permuted, guided exactly like SIDE; what
SIDE extracts beyond it is what the surrogate condition itself adds.

Each step is a stage of a :class:`~side_core.run.Run` (side_core.run says how each is made and
keyed; side_core.stages where it is stored); the results come back typed (side_core.report, side_core.whole_run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from side_core.allocation import (
    WEIGHTED,
    Target,
    flagged_share,
    kept_share,
    missing_share,
    near_identical_groups,
)
from side_core.classifier import ClassifierReport
from side_core.config import MAX_SEED, POOL_LABELS, ExtractionConfig
from side_core.embed import load_sscd
from side_core.errors import SideError
from side_core.metrics import in_band
from side_core.models import ASSETS
from side_core.report import Report, SweepPoint, build_report, method_result
from side_core.richness import attacker_reach, scorer_reach
from side_core.run import Run, stored_pool_labels
from side_core.sampling import SampleProgress, validate
from side_core.store import Stage, read_array
from side_core.whole_run import WholeRun, whole_run

log = logging.getLogger(__name__)

__all__ = [
    "BUNDLED_STORE",
    "CONTROLS",
    "GUIDED",
    "METHODS",
    "SWEEP_SCALES",
    "Run",
    "Surrogate",
    "Target",
    "build_surrogate",
    "check_extraction",
    "extract",
    "guidance_sweep",
    "prepare",
]

METHODS = ("uncond", "cond", "side")  # the paper's
CONTROLS = ("shuffled",)  # SIDE's guidance from a classifier trained on shuffled labels
GUIDED = ("cond", "side", "shuffled")  # the methods that train a classifier and guide with it
# The precomputed surrogate stages of the bundled default model (`python -m side_core prepare`).
BUNDLED_STORE = ASSETS / "store"
# Guidance scales of the app's default sweep; `prepare` stores them for the bundled model.
SWEEP_SCALES = (0.0, 1.0, 2.0, 4.0, 8.0)


@dataclass
class Surrogate:
    """The surrogate-condition stages: plain samples, their features and clusters, classifiers."""

    synthetic: Stage
    features: Stage
    clusters: Stage
    pool: Stage  # near-identical pairs among the synthetic samples
    # method -> stage: "side" time-dependent, "cond" time-blind, "shuffled" time-dependent on shuffled labels
    classifiers: dict[str, Stage]
    allocation: str = "uniform"
    repel: bool = False  # guided samples are pushed off the pool's near-identical samples

    def target(self, method: str, cls: int | None = None) -> Target:
        """Aim at class ``cls`` of the method's classifier, or at all its classes spread by the allocation."""
        n_classes = self.classifiers[method].summary()["n_classes"]
        name = self.classifiers[method].path.name
        if cls is not None:
            return Target(name, n_classes, cls)
        weights = None
        if self.allocation in WEIGHTED:  # the pool's evidence: no training data
            labels, partner = read_array(self.clusters.file("labels.npy")), read_array(self.pool.file("partner.npy"))
            kind = self.classifiers[method].inputs.get("labels")
            if self.allocation == "missing":
                weights = tuple(missing_share(labels, n_classes, partner))
            elif kind in POOL_LABELS:  # flagged: where the classifier's labels keep samples
                kept = stored_pool_labels(kind, self.clusters, self.pool, self.features)
                weights = tuple(kept_share(labels, n_classes, kept))
            else:
                weights = tuple(flagged_share(labels, n_classes, partner))
        avoid = self.pool.path.name if self.repel else None
        return Target(name, n_classes, allocation=self.allocation, weights=weights, avoid=avoid)

    def classifier_report(self, method: str, evaluation: Stage | None = None) -> ClassifierReport:
        """The held-out accuracies of the method's classifier, per timestep quartile and clean, and
        with its evaluation stage (``Run.evaluation``) at each of the sampler's timesteps."""
        summary = self.classifiers[method].summary()
        if evaluation is not None:
            found = evaluation.summary()
            summary = {**summary, "timesteps": found["timesteps"], "timestep_accuracy": found["timestep_accuracy"]}
        return ClassifierReport.from_dict(summary)

    def seconds(self, method: str) -> dict[str, float]:
        """Wall time of each surrogate stage behind a guided method."""
        stages = {"synthetic": self.synthetic, "features": self.features, "clusters": self.clusters}
        return {
            name: stage.summary()["seconds"]
            for name, stage in {**stages, "classifier": self.classifiers[method]}.items()
        }


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
    """SIDE steps 1-5: generate N_syn plain samples, embed, cluster, train the classifiers of the
    guided ``methods`` (GUIDED); the shuffled-label control's permutation is drawn from the surrogate seed."""
    check_extraction(run, config)
    say(f"{config.n_syn} plain samples to cluster")
    plain = replace(config.sample, guidance_scale=0.0)
    synthetic = run.generate(config.n_syn, config.synthetic_seed, plain, progress=sample_progress)
    say(f"features ({config.cluster.feature}) and clusters (K={config.cluster.k}, {config.cluster.keep_rule})")
    features = run.features(synthetic, config.cluster.feature)
    clusters = run.cluster(features, config.cluster)
    pool = run.pool(features)
    classifiers = {}
    for method in GUIDED:
        if method in methods:
            classifiers[method] = run.classifier(
                synthetic,
                clusters,
                time_dependent=method != "cond",
                train_config=config.classifier_train,
                width=config.classifier_width,
                progress=classifier_progress,
                say=say,
                shuffle_seed=config.surrogate_seed if method == "shuffled" else None,
                architecture=config.classifier,
                labels=config.labels,
                pool=pool,
                sample_config=config.sample,
            )
    return Surrogate(synthetic, features, clusters, pool, classifiers, config.allocation, config.repel)


def extract(
    run: Run,
    config: ExtractionConfig,
    methods: tuple[str, ...] = METHODS,
    say: Callable[[str], None] = log.info,
    sample_progress: Callable[[SampleProgress], None] | None = None,
    classifier_progress: Callable[[int, int, float], None] | None = None,
    max_extra_plain: int = 0,
) -> Report:
    """Run the given methods (METHODS, and any of CONTROLS) at equal N_G with the same sampler and
    seeds (SIDE steps 1-7). For each guided method, how many of its samples landed in their target
    class (``Run.landed``) and its classifier's accuracy at the sampler's timesteps; with the guided
    methods, the Filter baseline on the surrogate's own pool; with UnCond and SIDE, the whole SIDE run
    (pool plus guided samples) against UnCond with as many samples and with the same wall time.

    ``max_extra_plain``: when UnCond's N_syn + N_G samples take less time than the SIDE run, draw up
    to this many more plain samples (one seeded generation) to count UnCond at the same wall time."""
    unknown = set(methods) - set(METHODS) - set(CONTROLS)
    if unknown:
        raise SideError(f"Unknown method(s) {sorted(unknown)}: use {', '.join(METHODS + CONTROLS)}.")
    check_extraction(run, config)
    surrogate = pool_filter = None
    guided = tuple(m for m in methods if m in GUIDED)
    if guided:
        surrogate = build_surrogate(run, config, guided, say, sample_progress, classifier_progress)
        if run.data is not None:
            pool_filter = run.filter(surrogate.pool, surrogate.synthetic)
    rows, evaluations = {}, {}
    for method in methods:
        target = surrogate.target(method) if method in GUIDED else None
        say(f"{method}: {config.n_samples} samples")
        generation = run.generate(config.n_samples, config.seed, config.sample, target, progress=sample_progress)
        score = run.score(generation)
        # what the method drew in all: the guided ones first drew the N_syn pool
        cost = config.n_samples + (config.n_syn if target else 0)
        landed = None
        if target:
            landed = run.landed(generation).summary()["landed"]
            evaluations[method] = run.evaluation(surrogate.classifiers[method], config.sample)
        rows[method] = method_result(generation, score, cost, surrogate.seconds(method) if target else {}, landed)
        row = rows[method]
        say(f"{method}: AMS high {row.ams['high']:.1f}%  UMS high {row.ums['high']:.1f}%  distinct {row.distinct}")
    whole = sampling_cost = None
    if pool_filter is not None and {"uncond", "side"} <= set(rows):
        sampling_cost = run.sampling_cost(surrogate.classifiers["side"], config.sample)
        pool_score = run.find(pool_filter.inputs["score"])
        whole = whole_run_of(run, config, rows, pool_score, sampling_cost, max_extra_plain, say)
    report = build_report(run, config, rows, surrogate, pool_filter, evaluations, whole, sampling_cost)
    if pool_filter is None:
        return report
    return replace(report, extra={**report.extra, "reach": pool_reach(run, surrogate.synthetic, surrogate.pool)})


def pool_reach(run: Run, synthetic: Stage, pool: Stage) -> dict[str, dict]:
    """How many images plain sampling reaches, estimated from the surrogate's pool of N_syn plain
    samples (``synthetic``, with its near-identical pairs ``pool``; side_core.richness): by the
    attacker from its near-identical groups alone, and by the scorer from the images the pool copies."""
    similarity, index = run.neighbours(run.score(synthetic))
    copied = np.where(in_band(similarity[:, 0], run.bands().high), index[:, 0], -1)
    groups = near_identical_groups(read_array(pool.file("partner.npy")))
    return {"attacker": attacker_reach(groups).to_json(), "scorer": scorer_reach(copied, len(copied)).to_json()}


def whole_run_of(
    run: Run,
    config: ExtractionConfig,
    rows: dict,
    pool_score: Stage,
    cost: Stage,
    max_extra_plain: int = 0,
    say: Callable[[str], None] = log.info,
) -> WholeRun:
    """The whole SIDE run against UnCond (side_core.whole_run.whole_run); where UnCond at the SIDE run's
    wall time needs more plain samples than the pool and UnCond's own N_G, up to ``max_extra_plain``
    more are drawn as one plain generation from seed MAX_SEED - seed, which no method uses."""
    whole = whole_run(run, rows, pool_score, cost)
    extra = min(whole.n_same_time - whole.n_total, max_extra_plain)
    if extra <= 0:
        return whole
    extra_seed = MAX_SEED - config.seed
    if extra_seed == config.synthetic_seed:
        raise SideError(f"seed = {config.seed}: its extra plain samples would repeat the pool's; use another seed.")
    say(f"uncond at the SIDE run's wall time: {extra} more plain samples")
    plain = replace(config.sample, guidance_scale=0.0)
    return whole_run(run, rows, pool_score, cost, run.score(run.generate(extra, extra_seed, plain)))


def guidance_sweep(
    run: Run,
    config: ExtractionConfig,
    scales: tuple[float, ...],
    method: str = "side",
    say: Callable[[str], None] = log.info,
    sample_progress: Callable[[SampleProgress], None] | None = None,
) -> list[SweepPoint]:
    """Extraction at each guidance scale (same N_G, seeds and targets); one point per scale."""
    # every scale is checked (finite, >= 0) before the surrogate stages start
    sample_configs = [replace(config.sample, guidance_scale=float(scale)) for scale in scales]
    surrogate = build_surrogate(run, config, (method,), say)
    points = []
    for scale, sample_config in zip(scales, sample_configs, strict=True):
        say(f"scale {scale:g}: {config.n_samples} samples")
        generation = run.generate(
            config.n_samples, config.seed, sample_config, surrogate.target(method), progress=sample_progress
        )
        points.append(SweepPoint.from_score(scale, run.score(generation)))
        say(f"scale {scale}: AMS high {points[-1].ams['high']:.1f}%, distinct {points[-1].distinct}")
    return points


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
        say("scores of the synthetic samples against the training set")
        run.score(surrogate.synthetic)
        extract(run, config, METHODS, say, sample_progress, classifier_progress)
    return surrogate
