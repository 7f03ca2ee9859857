"""The run store: atomic writes, stage reuse, resuming an interrupted generation, shard workers."""

import threading
import time

import pytest
import torch

from side_core.config import SampleConfig
from side_core.errors import SideError
from side_core.kinds.features import Features
from side_core.kinds.generation import Generation
from side_core.models import load_model
from side_core.run import Run
from side_core.store import Stage, atomic_path, read_json, read_tensors, write_json

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
        Generation.make(run, 10, seed=5, config=CONFIG, progress=stop_in_third_batch)
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
    done = Generation.make(run, 10, seed=5, config=CONFIG, progress=steps.append)
    assert done.stage.done and done.path == partial.path
    assert {p.batch for p in steps} == {2}  # only the missing shard was sampled
    assert (partial.path / "shards" / "00000.safetensors").stat().st_mtime_ns == first_shard

    fresh = Run(tmp_path / "other", run.model)
    torch.testing.assert_close(done.images(), Generation.make(fresh, 10, seed=5, config=CONFIG).images())


def test_finishing_a_stage_removes_what_a_killed_writer_left(run):
    """A writer killed between its temporary file and the rename leaves the temporary file behind; the
    resumed stage finishes without it, and its manifest never named it."""
    stage = run.stage(Generation, {"n": 4, "seed": 1, "sample": CONFIG.to_dict(), "target": None}).stage
    stage.begin()
    (stage.path / "shards").mkdir()
    left = [stage.path / ".summary.json.abc.tmp", stage.path / "shards" / ".00000.safetensors.def.tmp"]
    for path in left:
        path.write_bytes(b"half")
    done = Generation.make(run, 4, seed=1, config=CONFIG)
    assert done.path == stage.path and done.stage.done
    assert not any(path.exists() for path in left)
    assert not [name for name in read_json(done.path / "done.json")["manifest"] if name.endswith(".tmp")]


def test_a_shard_another_process_holds_is_waited_for_not_made_twice(run, monkeypatch):
    """While another process holds shard 1's claim, this one makes the others, waits, and finishes
    the stage once that shard appears."""
    from side_core import stages

    monkeypatch.setattr(stages, "POLL_SECONDS", 0.01)
    sharding = stages.Sharding(12, 4)
    stage = Stage.keyed(run.root, "generate", {"test": "claims"})

    def make(i: int) -> dict[str, torch.Tensor]:
        return {"images": torch.full((sharding.size(i), 1, 2, 2), float(i))}

    made, claimed = [], threading.Event()

    def other_process() -> None:
        with stage.claim_shard(1):  # a separate open file: the claim is held as by another process
            claimed.set()
            time.sleep(0.2)
            stage.write_shard(1, make(1))

    other = threading.Thread(target=other_process)
    stage.begin()
    other.start()
    claimed.wait()
    filled = stages.fill_shards(stage, sharding, lambda i: made.append(i) or make(i))
    other.join()
    assert made == [0, 2] and filled.done
    assert [float(read_tensors(stage.shard(i))["images"][0, 0, 0, 0]) for i in range(3)] == [0.0, 1.0, 2.0]


def test_finished_stages_are_reused(run):
    first = Generation.make(run, 4, seed=0, config=CONFIG)
    calls = []
    again = Generation.make(run, 4, seed=0, config=CONFIG, progress=calls.append)
    assert again.path == first.path and calls == []


def test_read_only_roots_are_used_in_place(run, tmp_path):
    finished = Generation.make(run, 4, seed=0, config=CONFIG)
    reader = Run(tmp_path / "new", run.model, read_only_roots=(run.root,))
    assert Generation.make(reader, 4, seed=0, config=CONFIG).path == finished.path
    assert not (tmp_path / "new").exists()


def test_stages_are_found_as_their_own_kind_and_linked_by_type(run):
    generation = Generation.make(run, 4, seed=0, config=CONFIG)
    features = Features.make(run, generation, "pixels")
    assert isinstance(features.generation, Generation) and features.generation.name == generation.name
    assert torch.equal(run.find(generation.name, Generation).images(), generation.images())
    with pytest.raises(SideError, match="is not a features stage"):
        run.find(generation.name, Features)  # a generation's folder never reads as another kind
