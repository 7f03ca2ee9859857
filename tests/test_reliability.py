"""Trustworthy runs: bit-identical stages however they are made, a store that finds and repairs
damage, and processes that share one store without doing work twice or reporting another's result."""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from side_core.config import (
    ClassifierTrainConfig,
    ClusterConfig,
    ExtractionConfig,
    SampleConfig,
    TrainConfig,
    UNetConfig,
)
from side_core.data import load_training_set
from side_core.errors import SideError
from side_core.kinds.generation import Generation
from side_core.models import load_model
from side_core.pipeline import build_surrogate, guided_generation
from side_core.run import Run
from side_core.store import Stage, read_tensors
from side_core.train import train_ddpm

CONFIG = ExtractionConfig(
    n_samples=8,
    n_syn=24,
    cluster=ClusterConfig(k=3, tau=0.0),
    classifier_train=ClassifierTrainConfig(steps=15, batch_size=8),
    sample=SampleConfig(num_steps=3, batch_size=4, guidance_scale=2.0),
)
PLAIN = replace(CONFIG.sample, guidance_scale=0.0)


@pytest.fixture(autouse=True)
def plain_main(monkeypatch):
    """Spawned workers first run the parent's __main__ module again; after an app test that is the
    Streamlit script it last ran (AppTest leaves it there), whose file may be gone, and every worker
    would die and be replaced forever. Give them an empty one."""
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))


def _all_outputs(root: Path, model_dir: Path, global_seed: int) -> dict[str, torch.Tensor]:
    """Plain, Cond and SIDE samples and both classifiers' weights, made in a fresh store by a fresh
    process whose global RNG is in some state (which must not matter)."""
    torch.set_num_threads(1)
    torch.manual_seed(global_seed)
    run = Run(root, load_model(model_dir, device="cpu"))
    surrogate = build_surrogate(run, CONFIG, ("side", "cond"))
    out = {"synthetic": surrogate.synthetic.images()}
    out["uncond"] = Generation.make(run, CONFIG.n_samples, CONFIG.seed, CONFIG.sample).images()
    for method, stage in surrogate.classifiers.items():
        out[method] = guided_generation(run, surrogate, method, CONFIG.n_samples, CONFIG.seed, CONFIG.sample).images()
        for name, tensor in load_file(stage.file("classifier.safetensors")).items():
            out[f"{method} classifier {name}"] = tensor
    return out


@pytest.mark.slow
def test_every_stage_is_bit_identical_in_fresh_stores(tiny_model_dir, tmp_path):
    with mp.get_context("spawn").Pool(2) as pool:
        first, second = pool.starmap(
            _all_outputs, [(tmp_path / "a", tiny_model_dir, 123), (tmp_path / "b", tiny_model_dir, 456)]
        )
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert not torch.equal(first["side"], first["uncond"])  # guidance did something


def _train(data, out: Path, max_steps: int) -> dict[str, torch.Tensor]:
    config = TrainConfig(
        unet=UNetConfig(sample_size=8, channels=1, block_out_channels=(8, 16), norm_num_groups=4),
        num_train_timesteps=50,
        batch_size=4,
        max_steps=max_steps,
        checkpoint_every=3,
    )
    return load_model(train_ddpm(data, out, config), device="cpu").unet.state_dict()


def test_ddpm_training_is_bit_identical_whether_run_once_or_resumed(tiny_data_dir, tmp_path):
    data = load_training_set(tiny_data_dir, 1, 8)
    torch.manual_seed(1)
    once = _train(data, tmp_path / "once", 6)
    torch.manual_seed(2)
    again = _train(data, tmp_path / "again", 6)
    _train(data, tmp_path / "resumed", 3)  # interrupted after its checkpoint at step 3 ...
    resumed = _train(data, tmp_path / "resumed", 6)  # ... and resumed to 6
    for name, tensor in once.items():
        assert torch.equal(tensor, again[name]), name
        assert torch.equal(tensor, resumed[name]), name


# -- a store that repairs itself ---------------------------------------------------------------------
@pytest.fixture
def run(tiny_model_dir, tmp_path):
    return Run(tmp_path / "store", load_model(tiny_model_dir, device="cpu"))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _flip_a_byte(path: Path) -> None:
    """Same size, different content: only the checksum can tell."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte, Path.unlink], ids=["truncated", "overwritten", "deleted"])
def test_a_damaged_shard_of_a_finished_generation_is_named_and_made_again(run, damage, caplog):
    stage = Generation.make(run, 12, seed=2, config=PLAIN)
    before = stage.images()
    damage(stage.stage.shard(1))
    made = []
    again = Generation.make(run, 12, seed=2, config=PLAIN, progress=made.append)
    assert again.stage.done and {p.batch for p in made} == {1}  # only the damaged shard
    assert "shards/00001.safetensors" in caplog.text and "damaged" in caplog.text
    assert torch.equal(again.images(), before)


def test_a_run_that_verified_a_stage_still_sees_it_change(run, caplog):
    """A Run remembers the stages it found intact (by their files' sizes and times), so a
    look-up costs a stat; a later write still changes what it remembers."""
    stage = Generation.make(run, 8, seed=6, config=PLAIN)
    before = stage.images()
    assert Generation.make(run, 8, seed=6, config=PLAIN).path == stage.path  # verified, and remembered
    assert stage.path in run.stages._intact
    _flip_a_byte(stage.stage.shard(1))
    made = []
    again = Generation.make(run, 8, seed=6, config=PLAIN, progress=made.append)
    assert {p.batch for p in made} == {1} and "checksum differs" in caplog.text
    assert torch.equal(again.images(), before)


def test_a_truncated_shard_of_an_unfinished_generation_is_not_counted(run):
    class Stop(Exception):
        pass

    def stop_in_third_batch(p):
        if p.batch == 2:
            raise Stop

    with pytest.raises(Stop):
        Generation.make(run, 12, seed=4, config=PLAIN, progress=stop_in_third_batch)
    (partial,) = [Stage.open(p) for p in run.root.glob("generate-*")]
    _truncate(partial.shard(0))
    made = []
    stage = Generation.make(run, 12, seed=4, config=PLAIN, progress=made.append)
    assert stage.stage.done and {p.batch for p in made} == {0, 2}
    fresh = Run(run.root.parent / "fresh", run.model)
    assert torch.equal(stage.images(), Generation.make(fresh, 12, seed=4, config=PLAIN).images())


def test_damaged_files_of_other_stages_are_made_again(run, caplog):
    surrogate = build_surrogate(run, CONFIG, ("side",))
    classifier = surrogate.classifiers["side"]
    # a copy: safetensors maps the file, so damaging it in place would change these tensors too
    weights = {k: v.clone() for k, v in read_tensors(classifier.file("classifier.safetensors")).items()}
    _flip_a_byte(classifier.file("classifier.safetensors"))
    _truncate(surrogate.clusters.file("labels.npy"))
    again = build_surrogate(run, CONFIG, ("side",))
    assert "labels.npy" in caplog.text and "classifier.safetensors" in caplog.text
    assert again.classifiers["side"].path == classifier.path
    repaired = read_tensors(classifier.file("classifier.safetensors"))
    assert all(torch.equal(repaired[k], weights[k]) for k in weights)  # made again, bit for bit


def test_a_damaged_read_only_stage_is_made_under_root_and_left_alone(run, tmp_path):
    stage = Generation.make(run, 8, seed=0, config=PLAIN)
    _truncate(stage.stage.shard(0))
    damaged_bytes = stage.stage.shard(0).read_bytes()
    reader = Run(tmp_path / "new", run.model, read_only_roots=(run.root,))
    made = Generation.make(reader, 8, seed=0, config=PLAIN)
    assert made.path.parent == tmp_path / "new" and made.stage.done
    assert stage.stage.shard(0).read_bytes() == damaged_bytes


def test_asking_whether_a_damaged_stage_is_stored_changes_nothing(run):
    """The read-only look-up answers "not stored" for a damaged stage and leaves its files alone;
    only doing the work repairs it."""
    stage = Generation.make(run, 8, seed=7, config=PLAIN)
    _flip_a_byte(stage.stage.shard(1))
    damaged_bytes = stage.stage.shard(1).read_bytes()

    def work(r: Run) -> Generation:
        return Generation.make(r, 8, seed=7, config=PLAIN)

    assert run.stored(work) is None
    assert stage.stage.done and stage.stage.shard(1).read_bytes() == damaged_bytes
    assert run.stored(lambda r: Generation.make(r, 8, seed=8, config=PLAIN)) is None  # never made: still nothing
    assert len(list(run.root.glob("generate-*"))) == 1
    assert run.stored(work) is None and work(run).stage.done
    assert run.stored(work).path == stage.path


def test_a_stage_without_a_manifest_is_made_again_and_says_why(run, caplog):
    """A store made before stages listed their files' checksums cannot be verified: its stages are
    made again, with a message that says so."""
    stage = Generation.make(run, 4, seed=9, config=PLAIN)
    before = stage.images()
    summary = stage.summary()
    (stage.path / "done.json").write_text(json.dumps(summary))  # no manifest
    made = []
    again = Generation.make(run, 4, seed=9, config=PLAIN, progress=made.append)
    assert "lists no checksums" in caplog.text and "before version 0.1.0" in caplog.text
    assert again.stage.done and "manifest" in json.loads((again.path / "done.json").read_text())
    assert torch.equal(again.images(), before) and made == []  # its shards verify on their own


def test_reading_a_damaged_file_names_it(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(SideError, match="x.safetensors .*damaged"):
        read_tensors(tmp_path / "x.safetensors")


def test_finding_a_damaged_stage_by_name_says_how_to_repair_it(run):
    stage = Generation.make(run, 4, seed=0, config=PLAIN)
    _flip_a_byte(stage.stage.shard(0))
    with pytest.raises(SideError, match="damaged .*00000.safetensors checksum differs.*repairs it"):
        run.find(stage.name, Generation)


# -- several processes on one store ------------------------------------------------------------------
def _generate_in_process(model_dir: str, root: str, n: int) -> tuple[list[int], torch.Tensor]:
    """The shards this process made, and the finished generation's samples."""
    torch.set_num_threads(1)
    run = Run(root, load_model(model_dir, device="cpu"))
    made = []
    stage = Generation.make(
        run, n, seed=3, config=PLAIN, progress=lambda p: made.append(p.batch) if p.step == 1 else None
    )
    return made, stage.images()


def _surrogate_in_process(model_dir: str, root: str) -> tuple[list[str], dict]:
    torch.set_num_threads(1)
    run = Run(root, load_model(model_dir, device="cpu"))
    said = []
    surrogate = build_surrogate(run, CONFIG, ("side",), say=said.append)
    return said, surrogate.classifiers["side"].summary()


@pytest.mark.slow
def test_processes_sharing_a_store_split_a_generation_and_match_one_process(tiny_model_dir, tmp_path):
    n = 40  # ten shards of 4
    # Fresh processes all: the promise is bit-identity between fresh processes on one machine (a
    # long-lived process that ran other work may differ in the last bits; README, "Trustworthy runs").
    with mp.get_context("spawn").Pool(2) as pool:
        (made_a, images_a), (made_b, images_b) = pool.starmap(
            _generate_in_process, [(str(tiny_model_dir), str(tmp_path / "shared"), n)] * 2
        )
    with mp.get_context("spawn").Pool(1) as pool:
        ((_, alone),) = pool.starmap(_generate_in_process, [(str(tiny_model_dir), str(tmp_path / "alone"), n)])
    assert sorted(made_a + made_b) == list(range(10))  # every shard made exactly once
    assert torch.equal(images_a, images_b) and torch.equal(images_a, alone)


@pytest.mark.slow
def test_processes_sharing_a_store_train_a_classifier_once_and_report_the_stored_one(tiny_model_dir, tmp_path):
    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_surrogate_in_process, [(str(tiny_model_dir), str(tmp_path / "shared"))] * 2)
    trained = [line for said, _ in results for line in said if line.startswith("training the")]
    assert len(trained) == 1
    (stage,) = (tmp_path / "shared").glob("classifier-*")
    stored = Stage.open(stage).summary()
    assert results[0][1] == results[1][1] == stored
