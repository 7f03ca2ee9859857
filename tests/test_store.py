"""The run store: atomic writes, stage reuse, resuming an interrupted generation, shard workers."""

import pytest
import torch

from side_core.config import SampleConfig
from side_core.models import load_model
from side_core.pipeline import Run
from side_core.store import Stage, atomic_path, write_json

CONFIG = SampleConfig(num_steps=3, batch_size=4)


class Interrupt(Exception):
    pass


@pytest.fixture
def run(tiny_model_dir, tmp_path):
    return Run(tmp_path / "store", load_model(tiny_model_dir, device="cpu"))


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"v": 1})
    with pytest.raises(Interrupt), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise Interrupt
    assert path.read_text().strip().replace(" ", "").replace("\n", "") == '{"v":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_interrupted_generation_resumes_and_matches(run, tmp_path):
    def stop_in_third_batch(p):
        if p.batch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        run.generate(10, seed=5, config=CONFIG, progress=stop_in_third_batch)
    folders = [p for p in run.root.iterdir() if p.name.startswith("generate-")]
    assert len(folders) == 1
    partial = Stage.open(folders[0])
    assert not partial.done
    assert sorted(p.name for p in (partial.path / "shards").glob("*.safetensors")) == [
        "00000.safetensors",
        "00001.safetensors",
    ]
    first_shard = (partial.path / "shards" / "00000.safetensors").stat().st_mtime_ns

    steps = []
    done = run.generate(10, seed=5, config=CONFIG, progress=steps.append)
    assert done.done and done.path == partial.path
    assert {p.batch for p in steps} == {2}  # only the missing shard was sampled
    assert (partial.path / "shards" / "00000.safetensors").stat().st_mtime_ns == first_shard

    fresh = Run(tmp_path / "other", run.model)
    torch.testing.assert_close(run.images(done), fresh.images(fresh.generate(10, seed=5, config=CONFIG)))


def test_workers_fill_disjoint_shards(run):
    part = run.generate(12, seed=1, config=CONFIG, shards=range(0, 3, 2))
    assert not part.done
    whole = run.generate(12, seed=1, config=CONFIG, shards=range(1, 3, 2))
    assert whole.done and run.images(whole).shape == (12, 1, 8, 8)


def test_finished_stages_are_reused(run):
    first = run.generate(4, seed=0, config=CONFIG)
    calls = []
    again = run.generate(4, seed=0, config=CONFIG, progress=calls.append)
    assert again.path == first.path and calls == []


def test_read_only_roots_are_used_in_place(run, tmp_path):
    finished = run.generate(4, seed=0, config=CONFIG)
    reader = Run(tmp_path / "new", run.model, read_only_roots=(run.root,))
    assert reader.generate(4, seed=0, config=CONFIG).path == finished.path
    assert not (tmp_path / "new").exists()
