"""End to end through the CLI on a tiny trained model: compare, extract, prepare, bad input."""

import argparse
import json
import re

import pytest
from conftest import TINY_CLI
from PIL import Image

from side_core.cli import build_parser, main


@pytest.fixture(scope="module")
def compared(bright_dark_model_dir, bright_dark_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    args = ["compare", "--model", str(bright_dark_model_dir), "--data", str(bright_dark_data_dir), "--n-samples", "24"]
    assert main([*args, *TINY_CLI, "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_compare_writes_the_stable_report(compared):
    report = json.loads((compared / "report.json").read_text())
    assert {"model", "data", "similarity", "methods"} <= set(report)
    assert {"name", "preprocessing", "bands"} <= set(report["similarity"])
    assert list(report["methods"]) == ["uncond", "cond", "side"]
    for m in report["methods"].values():
        assert m["n_generated"] == 24
        assert set(m["ams"]) == set(m["ums"]) == {"low", "mid", "high"}
        assert all(0 <= v <= 100 for v in m["ams"].values())
        assert m["extracted"] == sorted(set(m["extracted"]))
        assert 0 <= m["p95"] <= 1
        assert "generate" in m["seconds"] and "score" in m["seconds"]
    assert "classifier" in report["methods"]["side"]["seconds"]
    assert len(report["classifiers"]["side"]["accuracy"]) == 4
    table = (compared / "report.md").read_text()
    assert "| side | 24 |" in table and "python -m side_core compare" in table
    assert "Beyond the pool's" in table and "Reach, from the" in table  # what SIDE adds, what is left
    assert {"attacker", "scorer"} == set(report["reach"]) and "beyond_pool" in report["whole_run"]
    assert Image.open(compared / "extractions.png").size[0] > 100


@pytest.mark.slow
def test_rerun_reuses_every_stage(compared, bright_dark_model_dir, bright_dark_data_dir, caplog):
    caplog.set_level("INFO")
    before = sorted(p.name for p in (compared / "store").iterdir())
    args = ["compare", "--model", str(bright_dark_model_dir), "--data", str(bright_dark_data_dir), "--n-samples", "24"]
    assert main([*args, *TINY_CLI, "--out", str(compared)]) == 0
    assert sorted(p.name for p in (compared / "store").iterdir()) == before
    assert "batch 1/" not in caplog.text  # nothing was sampled again


@pytest.mark.slow
def test_extract_one_method_and_prepare(bright_dark_model_dir, bright_dark_data_dir, tmp_path):
    args = ["--model", str(bright_dark_model_dir), "--data", str(bright_dark_data_dir), *TINY_CLI]
    assert main(["extract", "--method", "side", "--n-samples", "16", "--out", str(tmp_path / "x"), *args]) == 0
    report = json.loads((tmp_path / "x" / "report.json").read_text())
    assert list(report["methods"]) == ["side"]
    assert main(["prepare", "--store", str(tmp_path / "store"), "--n-samples", "16", *args]) == 0
    names = {p.name.split("-")[0] for p in (tmp_path / "store").iterdir()}
    assert {"generate", "features", "cluster", "map", "classifier", "reference", "score"} <= names


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--k", "500"], "K = 500 clusters for N_syn = 32 samples"),
        (["--tau", "1.5"], "tau = 1.5"),
        (["--guidance-scale", "-1"], "guidance scale = -1.0"),
        (["--guidance-window", "0", "5000"], "outside the schedule"),
        (["--n-samples", "0"], "at least 1"),
    ],
)
def test_bad_parameters_fail_cleanly_and_damage_nothing(
    flags, message, bright_dark_model_dir, bright_dark_data_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text('{"kept": true}')
    args = ["compare", "--model", str(bright_dark_model_dir), "--data", str(bright_dark_data_dir), "--out", str(out)]
    assert main([*args, *TINY_CLI, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err), err
    assert (out / "report.json").read_text() == '{"kept": true}'


def test_model_and_data_that_do_not_match(tiny_model_dir, tmp_path, capsys):
    from conftest import write_images

    small = write_images(tmp_path / "small", 3, size=4)
    assert main(["compare", "--model", str(tiny_model_dir), "--data", str(small), "--out", str(tmp_path / "o")]) == 2
    assert "upscaling" in capsys.readouterr().err


def test_every_subcommand_explains_every_flag():
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subcommands.choices) == {"train", "extract", "compare", "prepare"}
    for name, sub in subcommands.choices.items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings} has no help"


@pytest.mark.slow
def test_stages_in_the_bundled_store_are_used_in_place(
    compared, bright_dark_model_dir, bright_dark_data_dir, tmp_path, monkeypatch
):
    """The CLI reads finished stages from the bundled store (here: the first compare's) and writes
    only the report into the new folder."""
    monkeypatch.setattr("side_core.models.BUNDLED_STORE", compared / "store")
    out = tmp_path / "again"
    args = ["compare", "--model", str(bright_dark_model_dir), "--data", str(bright_dark_data_dir), "--n-samples", "24"]
    assert main([*args, *TINY_CLI, "--out", str(out)]) == 0
    assert (
        json.loads((out / "report.json").read_text())["methods"]
        == json.loads((compared / "report.json").read_text())["methods"]
    )
    assert not (out / "store").exists() or not any((out / "store").iterdir())


@pytest.mark.slow
def test_background_samples_train_the_classifier_but_are_never_targets(bright_dark_model_dir, tmp_path):
    from dataclasses import replace

    from side_core.config import ClassifierTrainConfig, ClusterConfig, ExtractionConfig, SampleConfig
    from side_core.kinds.generation import Generation
    from side_core.models import load_model
    from side_core.pipeline import build_surrogate
    from side_core.run import Run

    run = Run(tmp_path / "store", load_model(bright_dark_model_dir, device="cpu"))
    config = ExtractionConfig(
        n_samples=32,
        n_syn=48,
        cluster=ClusterConfig(k=6, tau=0.0),
        labels="clusters",  # the clusters' own background, whatever the pool repeats
        allocation="uniform",
        classifier_train=ClassifierTrainConfig(steps=20, batch_size=16),
        sample=SampleConfig(num_steps=4, batch_size=16, guidance_scale=2.0),
    )
    # Choose tau between cohesions, so that some clusters are dropped whatever these samples are.
    cohesion = sorted(build_surrogate(run, config, ()).clusters.clustering().cohesion)
    config = replace(config, cluster=replace(config.cluster, tau=float(cohesion[3])))
    surrogate = build_surrogate(run, config, ("side",))
    clustering = surrogate.clusters.clustering()
    assert clustering.background and clustering.n_classes == 3
    classifier = surrogate.classifiers["side"].load()
    assert classifier.config.n_classes == clustering.n_classes + 1  # the background output
    target = surrogate.target("side")
    assert target.n_classes == clustering.n_classes
    generation = Generation.make(run, config.n_samples, config.seed, config.sample, target)
    targets = generation.targets()
    assert len(targets) == 32 and int(targets.max()) < clustering.n_classes
