"""Several processes: the split of work, the launcher's environment, and `compare` launched for real on
2 CPU processes (accelerate launch and torchrun), checked bit for bit against one process."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import save_pipeline, write_images
from safetensors.torch import load_file

from side_core.cli import main
from side_core.distributed import DataParallel, World, start, world_from_env
from side_core.errors import SideError
from side_core.metrics import Bands
from side_core.neighbours import QueryBlocks, search

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("size", [1, 2, 3, 4])
@pytest.mark.parametrize("align", [1, 8])
def test_rows_are_contiguous_whole_batches_in_rank_order(size, align):
    for n in (0, 1, 5, 8, 24, 37, 100):
        blocks = [World(rank, size).rows(n, align) for rank in range(size)]
        assert [i for b in blocks for i in b] == list(range(n))
        assert all(b.start % align == 0 for b in blocks if len(b))
        batches = [-(-len(b) // align) for b in blocks]  # a partial last batch counts as one
        assert max(batches) - min(batches) <= 1
    shards = [list(World(rank, size).shards(10)) for rank in range(size)]
    assert sorted(i for s in shards for i in s) == list(range(10))


def test_launcher_environment_is_read_and_checked():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "node0"}
    assert world_from_env(env) == (3, 4, 1, 2)
    assert world_from_env({}) == (0, 1, 0, 1)
    bad = [
        ({"RANK": "1"}, "WORLD_SIZE is not"),
        ({**env, "RANK": "4"}, "outside 0..3"),
        ({**env, "WORLD_SIZE": "two"}, "not an integer"),
        ({**env, "LOCAL_RANK": "2"}, "not a valid layout"),
        ({**env, "MASTER_ADDR": ""}, "MASTER_ADDR is not set"),
        ({**env, "WORLD_SIZE": "0", "RANK": "0"}, "at least 1 process"),
    ]
    for broken, message in bad:
        with pytest.raises(SideError, match=message):
            world_from_env(broken)


def test_one_process_joins_nothing(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    world = start("cpu")
    assert (world.rank, world.size, world.is_main, world.tag) == (0, 1, True, "")
    assert world.device == torch.device("cpu") and not torch.distributed.is_initialized()
    assert world.agree(False) is False
    if not torch.cuda.is_available():
        with pytest.raises(SideError, match="CUDA GPU"):
            start("cuda")


def test_a_bad_world_is_a_clear_cli_error(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["compare", "--out", "unused", "--device", "cpu"]) == 2
    assert "RANK=2 is outside 0..1" in capsys.readouterr().err


class TimeBlind(torch.nn.Module):
    """(x, t) -> logits, ignoring t: the classifier's call signature at the smallest size."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x, t):
        return self.linear(x)


def test_one_process_trains_with_the_plain_loss():
    torch.manual_seed(0)
    model = TimeBlind()
    dp = DataParallel(model)
    assert dp.net is model  # no DDP wrapper without a launcher
    x, t, y = torch.randn(6, 4), torch.zeros(6), torch.tensor([0, 1, 2, 0, 1, 2])
    loss = dp.cross_entropy(x, t, y)
    assert torch.equal(loss, F.cross_entropy(model(x, t), y)) and dp.global_loss(loss) is loss


def test_search_in_blocks_equals_search_of_the_whole_tensor():
    rng = np.random.default_rng(0)
    q = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(37, 6)).astype(np.float32)), dim=1)
    t = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(11, 6)).astype(np.float32)), dim=1)
    bands = Bands.from_thresholds(0.2, 0.5, 0.8)
    whole = search(q, t, k=3, bands=bands, chunk=4)
    sizes = (5, 16, 1, 15)  # uneven blocks, e.g. store shards; each block is chunked on its own
    starts = np.cumsum((0, *sizes))
    blocks = search(QueryBlocks(sizes, lambda i: q[starts[i] : starts[i + 1]]), t, k=3, bands=bands, chunk=4)
    np.testing.assert_allclose(blocks.similarity, whole.similarity, atol=1e-6)
    np.testing.assert_array_equal(blocks.index, whole.index)
    for name in ("low", "mid", "high"):
        np.testing.assert_array_equal(blocks.first_hit[name], whole.first_hit[name])
    with pytest.raises(SideError, match="chunk must be at least 1"):
        search(q, t, chunk=0)


# -- launched for real ------------------------------------------------------------------------------
TINY = [
    "--n-samples", "24", "--n-syn", "32", "--k", "3", "--tau", "0", "--classifier-steps", "30", "--steps", "4",
    "--batch-size", "8", "--feature", "unet", "--device", "cpu",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(launcher: list[str], args: list[str]) -> str:
    """Run ``python -m side_core ARGS`` under a launcher (or none) with 1 thread per process; return its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(key, None)
    done = subprocess.run(
        [*launcher, "-m", "side_core", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def _shards(store: Path, stage: str) -> dict[str, torch.Tensor]:
    return {p.name: load_file(p)["images"] for p in sorted((store / stage / "shards").glob("*.safetensors"))}


def _assert_same_samples(store_a: Path, store_b: Path, stage: str) -> None:
    a, b = _shards(store_a, stage), _shards(store_b, stage)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{stage}/{k} differs by up to {(a[k] - b[k]).abs().max().item():.3g}"


def _weights(store: Path, stage: str) -> dict[str, torch.Tensor]:
    return load_file(store / stage / "classifier.safetensors")


@pytest.mark.slow
def test_compare_on_two_launched_processes_equals_one_process(tmp_path):
    model, data = save_pipeline(tmp_path / "model"), write_images(tmp_path / "data", 12)
    common = ["compare", "--model", str(model), "--data", str(data), *TINY]
    # one plain process, in a fresh interpreter like the launched ones (this one's earlier tests can move
    # the last bits of oneDNN's results)
    _launch([sys.executable], [*common, "--out", str(tmp_path / "one")])
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    accelerate = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2"]
    accelerate += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    output = _launch([*accelerate, "--main_process_port", str(_free_port())], [*common, "--out", str(tmp_path / "two")])

    # the report is written once, by the main process, and is complete
    assert output.count("report: ") == 1 and output.count("| uncond | 24 |") == 1
    assert not [line for line in output.splitlines() if "[1/2]" in line and " INFO " in line]  # warnings only
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    assert set(two) == set(one) and list(two["methods"]) == ["uncond", "cond", "side"]
    for name in ("report.json", "report.md", "extractions.png"):
        assert (tmp_path / "two" / name).stat().st_size > 0
    assert not [p for p in (tmp_path / "two").rglob("*.tmp")]
    # plain samples and everything computed from them: bit for bit
    store1, store2 = tmp_path / "one" / "store", tmp_path / "two" / "store"
    assert two["methods"]["uncond"] == {**one["methods"]["uncond"], "seconds": two["methods"]["uncond"]["seconds"]}
    stages = {m: row["generation"] for m, row in one["methods"].items()}
    synthetic = next(p.name for p in store1.glob("generate-*") if p.name not in stages.values())
    for stage in (synthetic, stages["uncond"]):
        _assert_same_samples(store1, store2, stage)
    plain = (synthetic, stages["uncond"])
    # features of plain samples (guided samples are embedded too, to see where they landed; they
    # follow the DDP-trained classifier, so they move in the last bits) and the clusters
    of_plain = [
        p for p in store1.glob("features-*") if json.loads((p / "inputs.json").read_text())["generation"] in plain
    ]
    assert of_plain
    for stage in (*of_plain, *store1.glob("cluster-*")):
        for array in stage.glob("*.npy"):
            np.testing.assert_array_equal(np.load(array), np.load(store2 / stage.name / array.name))
    # DDP moves the classifier only by the order of floating-point sums (world size 2 vs 1)
    side_classifier = json.loads((store1 / stages["side"] / "inputs.json").read_text())["target"]["classifier"]
    w1, w2 = _weights(store1, side_classifier), _weights(store2, side_classifier)
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-4

    # torchrun, on the one-process store without SIDE's classifier and both guided generations: the
    # time-blind classifier is reused, so Cond's samples must equal one process's bit for bit, and
    # SIDE's classifier is trained again with DDP on 2 processes, equal to the first 2-process one.
    store3 = tmp_path / "three" / "store"
    shutil.copytree(store1, store3)
    for stage in (
        side_classifier,
        *(one["methods"][m][key] for m in ("cond", "side") for key in ("generation", "score")),
    ):
        shutil.rmtree(store3 / stage)
    torchrun = ["torchrun", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    _launch(torchrun, [*common, "--out", str(tmp_path / "three"), "--store", str(store3)])
    w3 = _weights(store3, side_classifier)
    assert all(torch.equal(w2[k], w3[k]) for k in w2)
    for method, reference in (("cond", store1), ("side", store2)):
        _assert_same_samples(reference, store3, stages[method])
