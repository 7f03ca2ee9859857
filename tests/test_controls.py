"""What a SIDE run shows beside the paper's table, on the tiny real model: the shuffled-label control,
where guided samples land, the classifier's accuracy at the sampler's own timesteps, and the whole
run (pool plus guided samples) against plain sampling."""

import json
from dataclasses import replace

import numpy as np
import pytest

from side_core.cluster import cluster, shuffled_labels, surrogate_labels
from side_core.config import ClusterConfig, ExtractionConfig
from side_core.data import load_training_set
from side_core.kinds.classifier import Landed
from side_core.kinds.cost import SamplingCost
from side_core.kinds.generation import Generation
from side_core.kinds.scoring import Score
from side_core.models import BUNDLED_STORE, load_model
from side_core.pipeline import CONTROLS, METHODS, build_surrogate, extract
from side_core.report import Report
from side_core.report_files import markdown_table
from side_core.run import Run
from side_core.sampling import make_scheduler
from side_core.whole_run import WholeRun, chained_first_hit, whole_run_text


def blobs(n_per: int = 30, k: int = 6, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    return np.concatenate([c + 0.3 * rng.normal(size=(n_per, dim)) for c in centres]).astype(np.float32)


@pytest.mark.parametrize("unkept", ["background", "nearest"])
def test_a_pool_sample_aimed_at_its_own_label_lands(unkept):
    """The rule for new samples gives the pool's own samples the labels the clustering gave them: a
    generation aimed at those labels lands 100%."""
    features = blobs()
    c = cluster(features, ClusterConfig(k=6, keep_top=0.5, unkept=unkept))
    labels = surrogate_labels(features, c.centroids, c.cohesion, c.kept, unkept)
    assert (labels == c.labels).mean() == 1.0
    assert (labels == c.n_classes).any() == (unkept == "background")
    # a sample elsewhere takes its nearest cluster's label: a kept cluster's class, or background
    moved = features[:1] + 1e-3
    assert surrogate_labels(moved, c.centroids, c.cohesion, c.kept, unkept)[0] == c.labels[0]


def test_shuffled_labels_are_a_fixed_permutation():
    labels = np.repeat(np.arange(5), 20)
    shuffled = shuffled_labels(labels, 0)
    assert sorted(shuffled) == sorted(labels) and (shuffled != labels).any()
    assert (shuffled_labels(labels, 0) == shuffled).all() and (shuffled_labels(labels, 1) != shuffled).any()


def test_chained_first_hit_counts_each_image_at_its_first_sample():
    first = chained_first_hit([np.array([-1, 2, -1, 0]), np.array([1, 0, -1, -1])], [3, 4])
    assert first.tolist() == [4, 2, -1, 0]


@pytest.fixture(scope="module")
def run_and_report(tiny_model_dir, tiny_data_dir, tiny_extraction, tmp_path_factory):
    run = Run(
        tmp_path_factory.mktemp("runs"), load_model(tiny_model_dir, "cpu"), load_training_set(tiny_data_dir, 1, 8)
    )
    config = replace(tiny_extraction, n_samples=8, sample=replace(tiny_extraction.sample, batch_size=4))
    return run, config, extract(run, config, METHODS + CONTROLS)


def test_shuffled_control_is_its_own_classifier_guided_like_side(run_and_report):
    run, config, report = run_and_report
    assert list(report.methods) == [*METHODS, *CONTROLS]
    surrogate = build_surrogate(run, config, ("side", "shuffled"))
    side, shuffled = surrogate.classifiers["side"], surrogate.classifiers["shuffled"]
    assert side.path != shuffled.path
    assert "shuffled_labels" not in side.inputs and shuffled.inputs["shuffled_labels"] == config.surrogate_seed
    assert {k: v for k, v in shuffled.inputs.items() if k != "shuffled_labels"} == side.inputs
    cluster_labels, control_labels = side.labels(), shuffled.labels()
    assert sorted(control_labels.tolist()) == sorted(cluster_labels.tolist())
    assert not control_labels.equal(cluster_labels)
    # same noise, same targets, same lambda as SIDE: only the classifier differs
    side_gen, control_gen = (run.find(report.methods[m].generation, Generation) for m in ("side", "shuffled"))
    assert side_gen.targets().equal(control_gen.targets())
    assert side_gen.inputs["sample"] == control_gen.inputs["sample"]
    assert "ams_high_side_over_shuffled" in report.ratios()


def test_landed_is_the_share_of_guided_samples_labelled_with_their_target(run_and_report):
    run, _, report = run_and_report
    assert report.methods["uncond"].landed is None
    for method in ("cond", "side", "shuffled"):
        generation = run.find(report.methods[method].generation, Generation)
        landed = Landed.make(run, generation)
        labels, targets = landed.labels(), generation.targets().numpy()
        assert len(labels) == len(targets) == 8
        assert (
            report.methods[method].landed == landed.summary()["landed"] == round(float((labels == targets).mean()), 4)
        )
    with pytest.raises(Exception, match="plain sampling"):
        Landed.make(run, run.find(report.methods["uncond"].generation, Generation))


def test_accuracy_at_the_samplers_timesteps(run_and_report):
    run, config, report = run_and_report
    timesteps = [int(t) for t in make_scheduler(run.model, config.sample).timesteps]
    for method in ("cond", "side", "shuffled"):
        found = report.classifiers[method]
        assert found["timesteps"] == timesteps and len(timesteps) == config.sample.num_steps
        assert len(found["timestep_accuracy"]) == len(timesteps)
        assert all(a is None or 0 <= a <= 1 for a in found["timestep_accuracy"])
        assert len(found["accuracy"]) == 4  # the quartiles stay


def test_whole_run_counts_the_union_of_pool_and_method_copies(run_and_report):
    run, config, report = run_and_report
    whole = report.whole_run
    assert isinstance(whole, WholeRun) and whole.n_total == config.n_syn + config.n_samples
    pool = set(Score.make(run, build_surrogate(run, config, ()).synthetic).summary()["extracted"])
    for method, count in (("side", whole.side), ("uncond", whole.uncond)):
        assert count == len(pool | set(report.methods[method].extracted))
    for curve in (whole.side_curve, whole.uncond_curve):
        assert len(curve) == whole.n_total and list(curve) == sorted(curve)
        assert curve[config.n_syn - 1] == len(pool)  # both runs start with the same pool
    s = whole.seconds
    assert s["guided_over_plain"] == round(s["guided_per_sample"] / s["plain_per_sample"], 3)
    assert whole.n_same_time >= config.n_syn
    raw = json.loads(json.dumps(report.to_json()))
    assert raw["whole_run"]["side"] == whole.side and Report.from_json(raw) == report
    assert "Whole run" not in markdown_table(report)  # the table stays a table; report.md adds the paragraph


def test_beyond_the_pool_counts_only_what_the_pool_had_not_copied(run_and_report):
    run, config, report = run_and_report
    whole = report.whole_run
    pool = set(Score.make(run, build_surrogate(run, config, ()).synthetic).summary()["extracted"])
    beyond = whole.beyond_pool()
    assert whole.pool == len(pool)
    assert beyond["side"] == len(set(report.methods["side"].extracted) - pool)
    after = whole.n_same_time - whole.n_syn if whole.uncond_same_time is not None else config.n_samples
    assert beyond["samples"] == {"side": config.n_samples, "uncond": after}
    assert beyond["per_1000"]["side"] == round(1000 * beyond["side"] / config.n_samples, 2)
    assert "Beyond the pool" in whole_run_text(whole)
    reach = report.extra["reach"]  # from the pool: the attacker's groups, the scorer's copies
    assert reach["scorer"]["n_samples"] == reach["attacker"]["n_samples"] == config.n_syn
    assert reach["scorer"]["found"] <= len(pool) and reach["scorer"]["estimate"] >= reach["scorer"]["found"]
    assert reach["attacker"]["estimate"] >= reach["attacker"]["found"]


def test_whole_run_wall_time_reads_the_side_by_side_timing(run_and_report):
    """Both rates come from one sampling-cost stage, timed alternately; a stored report reads it again
    rather than timing anew, so a rerun reports the same seconds."""
    run, config, report = run_and_report
    cost = SamplingCost.make(run, build_surrogate(run, config, ("side",)).classifiers["side"], config.sample)
    timed = cost.summary()
    assert timed["rounds"] == 3 and timed["batch"] == config.sample.batch_size
    assert timed["plain_per_sample"] > 0 and timed["guided_per_sample"] > 0 and timed["classifier_per_step"] > 0
    steps = config.classifier_train.steps
    assert timed["classifier_seconds"] == pytest.approx(steps * timed["classifier_per_step"], abs=0.01)
    s = report.whole_run.seconds
    assert (s["plain_per_sample"], s["guided_per_sample"]) == (timed["plain_per_sample"], timed["guided_per_sample"])
    assert s["surrogate"] >= timed["classifier_seconds"]  # the classifier as timed beside the samples
    assert extract(run.reading_only(), config, ("uncond", "side")).whole_run == report.whole_run


def test_uncond_at_the_same_wall_time_draws_the_extra_plain_samples(run_and_report):
    run, config, report = run_and_report
    whole = report.whole_run
    again = extract(run, config, ("uncond", "side"), max_extra_plain=10_000).whole_run
    assert (again.side_curve, again.uncond_curve) == (whole.side_curve, whole.uncond_curve)
    if whole.n_same_time > whole.n_total:
        assert again.extra_plain == whole.n_same_time - whole.n_total
        assert again.uncond_same_time is not None and again.uncond_same_time >= whole.uncond
    else:
        assert again.extra_plain == 0 and again.uncond_same_time == whole.uncond_curve[whole.n_same_time - 1]


def test_the_bundled_store_holds_the_default_surrogate():
    """With every default, the surrogate stages and both classifiers are found in assets/store as
    they are: nothing is trained again (a change of stage key would need `prepare` rerun)."""
    model = load_model("default", "cpu")
    run = Run(BUNDLED_STORE, model)
    found = run.stored(lambda r: build_surrogate(r, ExtractionConfig(), ("side", "cond")))
    assert found is not None
    assert {stage.path.parent for stage in found.classifiers.values()} == {BUNDLED_STORE}
