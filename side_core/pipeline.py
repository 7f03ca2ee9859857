"""SIDE's steps, in order, and the only module that knows the order:

    1. generate N_syn plain samples -> 2. embed -> 3. cluster and 4. filter the clusters
    -> 5. train the classifier(s) -> 6. generate N_G samples (plain, Cond-guided or SIDE-guided)
    -> 7. score them against the training set

Beside the paper's three methods, the shuffled-label control (CONTROLS): the time-dependent
classifier's recipe on the same samples with the labels permuted, guided exactly like SIDE; what
SIDE extracts beyond it is what the surrogate condition itself adds.

Each step is a stage of a :class:`~side_core.run.Run` (side_core.kinds says how each kind is made and
keyed; side_core.stages where it is stored); the results come back typed (side_core.report, side_core.whole_run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from side_core.config import MAX_SEED, ExtractionConfig, SampleConfig
from side_core.embed import FEATURES, load_sscd
from side_core.errors import SideError
from side_core.kinds.classifier import Classifier, Evaluation, Landed
from side_core.kinds.clusters import Clusters, NearIdentical
from side_core.kinds.cost import SamplingCost
from side_core.kinds.features import Features, Map2D
from side_core.kinds.generation import Generation
from side_core.kinds.scoring import PoolFilter, Score, bands
from side_core.report import Report, SweepPoint, build_report, method_result
from side_core.run import Run
from side_core.sampling import SampleProgress, validate
from side_core.surrogate import Surrogate
from side_core.whole_run import WholeRun, whole_run

log = logging.getLogger(__name__)

METHODS = ("uncond", "cond", "side")  # the paper's
CONTROLS = ("shuffled",)  # SIDE's guidance from a classifier trained on shuffled labels
GUIDED = ("cond", "side", "shuffled")  # the methods that train a classifier and guide with it
# Guidance scales of the app's default sweep; `prepare` stores them for the bundled model.
SWEEP_SCALES = (0.0, 1.0, 2.0, 4.0, 8.0)


def check_extraction(run: Run, config: ExtractionConfig) -> None:
    """Everything about an extraction that can be known before any work, checked at once (the
    configs check themselves when built; this checks their fit to the model and training set)."""
    validate(run.model, config.sample, config.n_samples)
    validate(run.model, config.sample, config.n_syn)
    if FEATURES.get(config.cluster.feature).needs_sscd_file and run.similarity.sscd is None:
        load_sscd(run.sscd_path)  # a missing or broken file fails now, not after N_syn samples
    if run.data is not None:
        bands(run)  # calibrates the bands now: a training set too small or too alike fails here


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
    synthetic = Generation.make(run, config.n_syn, config.synthetic_seed, plain, progress=sample_progress)
    say(f"features ({config.cluster.feature}) and clusters (K={config.cluster.k}, {config.cluster.keep_rule})")
    features = Features.make(run, synthetic, config.cluster.feature)
    clusters = Clusters.make(run, features, config.cluster)
    near_identical = NearIdentical.make(run, features)
    classifiers = {}
    for method in GUIDED:
        if method in methods:
            classifiers[method] = Classifier.make(
                run,
                clusters,
                near_identical,
                config,
                time_dependent=method != "cond",
                shuffle_seed=config.surrogate_seed if method == "shuffled" else None,
                progress=classifier_progress,
                say=say,
            )
    return Surrogate(synthetic, features, clusters, near_identical, classifiers, config.allocation, config.repel)


def guided_generation(
    run: Run,
    surrogate: Surrogate,
    method: str,
    n: int,
    seed: int,
    config: SampleConfig,
    cls: int | None = None,
    capture_steps: tuple[int, ...] = (),
    progress: Callable[[SampleProgress], None] | None = None,
) -> Generation:
    """``n`` samples guided by the method's classifier toward class ``cls``, or toward all its classes
    spread by the surrogate's allocation (and pushed off the pool's near-identical samples when it repels)."""
    target = surrogate.target(method, cls)
    repel = surrogate.near_identical.repulsion if target.avoid else None
    return Generation.make(run, n, seed, config, target, capture_steps, progress, repel)


@dataclass(frozen=True)
class GuidedPair:
    """Samples guided toward one class and the same seeds unguided, each with its score, and where the
    guided ones landed among the surrogate classes."""

    guided: Score
    plain: Score
    landed: Landed


def guide_toward(
    run: Run,
    surrogate: Surrogate,
    cls: int,
    n: int,
    seed: int,
    config: SampleConfig,
    capture_steps: tuple[int, ...] = (),
    progress: tuple[Callable[[SampleProgress], None] | None, Callable[[SampleProgress], None] | None] = (None, None),
) -> GuidedPair:
    """SIDE's samples toward class ``cls``, where they landed (no training image is read for that),
    then the same seeds unguided, then both scored; ``progress``: the guided and the plain generation's."""
    guided = guided_generation(run, surrogate, "side", n, seed, config, cls, capture_steps, progress[0])
    landed = Landed.make(run, guided)
    plain = Generation.make(run, n, seed, config, None, capture_steps, progress[1])
    return GuidedPair(Score.make(run, guided), Score.make(run, plain), landed)


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
    class (side_core.kinds.classifier.Landed) and its classifier's accuracy at the sampler's timesteps;
    with the guided methods, the Filter baseline on the surrogate's own pool; with UnCond and SIDE, the
    whole SIDE run (pool plus guided samples) against UnCond with as many samples and with the same wall time.

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
            pool_filter = PoolFilter.make(run, surrogate.near_identical)
    rows, evaluations = {}, {}
    for method in methods:
        say(f"{method}: {config.n_samples} samples")
        if method in GUIDED:
            generation = guided_generation(
                run, surrogate, method, config.n_samples, config.seed, config.sample, progress=sample_progress
            )
        else:
            generation = Generation.make(run, config.n_samples, config.seed, config.sample, progress=sample_progress)
        score = Score.make(run, generation)
        # what the method drew in all: the guided ones first drew the N_syn pool
        cost = config.n_samples + (config.n_syn if method in GUIDED else 0)
        landed, seconds = None, {}
        if method in GUIDED:
            landed = Landed.make(run, generation).summary()["landed"]
            evaluations[method] = Evaluation.make(run, surrogate.classifiers[method], config.sample)
            seconds = surrogate.seconds(method)
        rows[method] = method_result(generation, score, cost, seconds, landed)
        row = rows[method]
        say(f"{method}: AMS high {row.ams['high']:.1f}%  UMS high {row.ums['high']:.1f}%  distinct {row.distinct}")
    whole = sampling_cost = None
    if pool_filter is not None and {"uncond", "side"} <= set(rows):
        sampling_cost = SamplingCost.make(run, surrogate.classifiers["side"], config.sample)
        whole = whole_run_of(run, config, rows, pool_filter.pool_score, sampling_cost, max_extra_plain, say)
    report = build_report(run, config, rows, surrogate, pool_filter, evaluations, whole, sampling_cost)
    if pool_filter is None:
        return report
    return replace(report, extra={**report.extra, "reach": surrogate.reach(pool_filter.pool_score)})


def whole_run_of(
    run: Run,
    config: ExtractionConfig,
    rows: dict,
    pool_score: Score,
    cost: SamplingCost,
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
    return whole_run(run, rows, pool_score, cost, Score.make(run, Generation.make(run, extra, extra_seed, plain)))


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
        generation = guided_generation(
            run, surrogate, method, config.n_samples, config.seed, sample_config, progress=sample_progress
        )
        points.append(SweepPoint.from_score(scale, Score.make(run, generation)))
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
        Map2D.make(run, surrogate.features, method, config.seed)
    if run.data is not None:
        say("scores of the synthetic samples against the training set")
        Score.make(run, surrogate.synthetic)
        extract(run, config, METHODS, say, sample_progress, classifier_progress)
    return surrogate
