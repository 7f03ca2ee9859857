"""Scale-out: images/s at 1 and 2 processes, peak memory per process, and memory against N_G.

    python -m benchmarks.scale                          # 1 and 2 CPU processes, 1 thread each
    python -m benchmarks.scale --device cuda --processes 1,2,4,8 --batch 512 --out-dir runs/scale-gpu

Each process count is launched for real (``python -m torch.distributed.run --nproc_per_node N``, torchrun
run by this interpreter, so no ``torchrun`` on PATH is needed) one after the other in
this one run, and every process runs the engine's own code: ``Generation.make`` (plain, then guided by
a classifier) splitting shards between processes, ``train_classifier`` with DDP, and ``search``
splitting query rows; walls are taken between barriers. Then, in a fresh single process per N_G, the
scoring path (``Score.make``, shard by shard) of N_G = 1,000 .. 50,000 random images against
``--memory-train`` random training images, and for contrast the same search with every query held
in memory, each with its peak RSS: the first stays flat as N_G grows.

Writes ``scale.json`` in ``--out-dir`` (default benchmarks/results; committed results are replaced only
with --overwrite) with the command, settings, git revision and machine that made it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.provenance import add_output_flags, output_dir, provenance

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- one launched process ---------------------------------------------------------------------------
def worker(args: argparse.Namespace) -> None:
    """Time every scaled stage in this process; the main process writes ``args.result``."""
    from side_core import distributed
    from side_core.allocation import Target
    from side_core.classifier import save_classifier, train_classifier
    from side_core.config import ClassifierConfig, ClassifierTrainConfig, SampleConfig
    from side_core.kinds.classifier import Classifier
    from side_core.kinds.generation import Generation
    from side_core.metrics import Bands
    from side_core.models import load_model
    from side_core.neighbours import search
    from side_core.run import Run
    from side_core.store import Stage

    world = distributed.start(args.device)
    model = load_model(args.model, world.device)
    run = Run(args.store, model)
    sample_config = SampleConfig(num_steps=args.steps, batch_size=args.batch)
    n_classes = 20

    def timed(fn) -> float:
        world.barrier()
        if world.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if world.device.type == "cuda":
            torch.cuda.synchronize()
        world.barrier()
        return time.perf_counter() - started

    t_generate = timed(lambda: Generation.make(run, args.n_generate, 0, sample_config))
    x0 = Generation.make(run, args.n_generate, 0, sample_config).images()
    labels = torch.arange(len(x0)) % n_classes
    config = ClassifierConfig(n_classes=n_classes, channels=model.channels, size=model.size)
    train_config = ClassifierTrainConfig(steps=args.classifier_steps, batch_size=args.classifier_batch)
    trained = {}

    def train() -> None:
        trained["model"], trained["report"] = train_classifier(
            x0, labels, model.scheduler, config, train_config, device=world.device
        )

    t_classifier = timed(train)
    # a throwaway classifier stage of its own key (not the engine's), in the run's store: the guided
    # generation finds it there by its folder name
    key = {"benchmark": "scale", "processes": world.size}
    classifier = Classifier(Stage.keyed(args.store, Classifier.KIND, key), run)
    if world.is_main:
        classifier.stage.begin()
        save_classifier(trained["model"], trained["report"], classifier.path)
        classifier.stage.finish({"n_classes": n_classes})
    world.barrier()
    guided = SampleConfig(num_steps=args.steps, batch_size=args.batch, guidance_scale=4.0)
    target = Target(classifier.name, n_classes)
    t_guided = timed(lambda: Generation.make(run, args.n_guided, 0, guided, target))

    g = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(args.n_queries, args.dim, generator=g), dim=1)
    train = torch.nn.functional.normalize(torch.randn(args.n_train, args.dim, generator=g), dim=1)
    bands = Bands.from_thresholds(0.1, 0.2, 0.3)
    t_search = timed(lambda: search(queries, train, k=3, bands=bands, device=world.device, world=world))

    peaks = [0.0] * world.size
    peak = torch.cuda.max_memory_allocated() / 2**20 if world.device.type == "cuda" else peak_rss_mib()
    if world.size > 1:
        torch.distributed.all_gather_object(peaks, round(peak, 1))
    else:
        peaks = [round(peak, 1)]
    if world.is_main:
        result = {
            "generate_images_per_s": args.n_generate / t_generate,
            "guided_images_per_s": args.n_guided / t_guided,
            "classifier_images_per_s": args.classifier_steps * args.classifier_batch / t_classifier,
            "search_queries_per_s": args.n_queries / t_search,
            "peak_memory_mib": peaks,
            "seconds": {"generate": t_generate, "guided": t_guided, "classifier": t_classifier, "search": t_search},
        }
        Path(args.result).write_text(json.dumps(result))
    distributed.stop()


def memory_probe(args: argparse.Namespace) -> None:
    """Peak RSS of scoring ``args.n_g`` stored random images, streamed or (``--whole``) in memory."""
    from side_core.data import TrainingSet
    from side_core.kinds.generation import Generation
    from side_core.kinds.scoring import Reference, Score
    from side_core.models import load_model
    from side_core.neighbours import search
    from side_core.run import Run

    model = load_model(args.model, "cpu")
    g = torch.Generator().manual_seed(1)
    train = torch.rand(args.n_train, model.channels, model.size, model.size, generator=g) * 2 - 1
    run = Run(args.store, model, TrainingSet(train, [str(i) for i in range(len(train))], "random"))
    reference = Reference.make(run)
    generation = Generation(memory_stage(args.store, args.n_g, args.batch), run)
    if not generation.stage.done:
        raise SystemExit(f"{generation.path} was not prepared")
    before = peak_rss_mib()
    started = time.perf_counter()
    if args.whole:  # every query vector in memory at once, as a search without blocks holds them
        shards = [generation.shard_images(i) for i in range(-(-args.n_g // args.batch))]
        queries = run.similarity.vectors(torch.cat(shards))
        search(queries, reference.vectors(), k=3, bands=reference.bands())
    else:
        Score.make(run, generation)
    print(json.dumps({"peak_rss_mib": round(peak_rss_mib(), 1), "before_mib": round(before, 1),
                      "seconds": round(time.perf_counter() - started, 2)}))  # fmt: skip


def memory_stage(store: str | Path, n_g: int, batch: int):
    """The stored random 'generation' of ``n_g`` images, in shards of ``batch`` (the layout Score.make reads):
    a throwaway stage of its own key, not the engine's."""
    from side_core.kinds.generation import Generation
    from side_core.store import Stage

    return Stage.keyed(store, Generation.KIND, {"benchmark": "memory", "n": n_g, "sample": {"batch_size": batch}})


def prepare_memory_store(args: argparse.Namespace, store: Path, sizes: list[int]) -> None:
    """Random 'generations' of each N_G in the store's shard layout, and the reference stage."""
    from side_core.data import TrainingSet
    from side_core.kinds.scoring import Reference
    from side_core.models import load_model
    from side_core.run import Run

    model = load_model(args.model, "cpu")
    g = torch.Generator().manual_seed(1)
    train = torch.rand(args.memory_train, model.channels, model.size, model.size, generator=g) * 2 - 1
    Reference.make(Run(store, model, TrainingSet(train, [str(i) for i in range(len(train))], "random")))
    for n_g in sizes:
        stage = memory_stage(store, n_g, args.batch)
        stage.begin()
        for i, start in enumerate(range(0, n_g, args.batch)):
            size = min(args.batch, n_g - start)
            images = torch.rand(size, model.channels, model.size, model.size, generator=g) * 2 - 1
            stage.write_shard(i, {"images": images})
        stage.finish({"n": n_g, "n_shards": i + 1})


# -- the parent: launches, collects, writes ------------------------------------------------------------
RATES = ("generate_images_per_s", "guided_images_per_s", "classifier_images_per_s", "search_queries_per_s")


def best(kept: dict | None, row: dict) -> dict:
    """Each rate's best over launches, and the largest peak memory seen per process."""
    if kept is None:
        return row
    merged = {key: max(kept[key], row[key]) for key in RATES}
    peaks = zip(kept["peak_memory_mib"], row["peak_memory_mib"], strict=True)
    merged["peak_memory_mib"] = [max(a, b) for a, b in peaks]
    return merged


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_command(args: argparse.Namespace, n: int, store: Path, result: Path) -> list[str]:
    """The command that launches ``n`` worker processes: torchrun run by this interpreter, so it works
    from a virtual environment that is not on PATH."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_port", str(free_port()),
        "-m", "benchmarks.scale",
        "--worker", "--result", str(result), "--store", str(store), "--model", args.model, "--device", args.device,
        "--batch", str(args.batch), "--steps", str(args.steps), "--n-generate", str(args.n_generate),
        "--n-guided", str(args.n_guided), "--classifier-steps", str(args.classifier_steps),
        "--classifier-batch", str(args.classifier_batch), "--n-queries", str(args.n_queries),
        "--n-train", str(args.n_train), "--dim", str(args.dim),
    ]  # fmt: skip


def launch(args: argparse.Namespace, n: int, store: Path, result: Path) -> dict:
    command = worker_command(args, n, store, result)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return json.loads(result.read_text())


def probe(args: argparse.Namespace, store: Path, n_g: int, whole: bool) -> dict:
    command = [sys.executable, "-m", "benchmarks.scale", "--memory-probe", "--store", str(store)]
    command += [
        "--model",
        args.model,
        "--n-g",
        str(n_g),
        "--n-train",
        str(args.memory_train),
        "--batch",
        str(args.batch),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(
        [*command, *(["--whole"] if whole else [])], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"memory probe N_G={n_g} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="model (bundled name, folder or hub id)")
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl, one GPU per process)")
    p.add_argument("--processes", default="1,2", help="process counts to launch, one after another")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--repeats", type=int, default=2, help="launches per process count, alternating; best kept")
    p.add_argument("--batch", type=int, default=32, help="samples per shard, and query rows per block")
    p.add_argument("--steps", type=int, default=25, help="sampler steps")
    p.add_argument("--n-generate", type=int, default=256, help="plain samples to time")
    p.add_argument("--n-guided", type=int, default=128, help="guided samples to time")
    p.add_argument("--classifier-steps", type=int, default=60, help="DDP classifier steps to time")
    p.add_argument("--classifier-batch", type=int, default=64, help="global classifier batch")
    p.add_argument("--n-queries", type=int, default=20_000, help="neighbour search: query vectors")
    p.add_argument("--n-train", type=int, default=5_000, help="neighbour search: training vectors")
    p.add_argument("--dim", type=int, default=576, help="neighbour search: vector size (24x24 pixels)")
    p.add_argument("--memory-ng", default="1000,10000,50000", help="N_G values for the memory curve ('' skips)")
    p.add_argument("--memory-train", type=int, default=25_000, help="training images for the memory curve")
    add_output_flags(p)
    # internal: one launched process, or one memory measurement
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--n-g", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if args.memory_probe:
        return memory_probe(args)

    load_at_start = os.getloadavg()
    out = output_dir(args, ["scale.json"]) / "scale.json"  # checked before any work
    processes = [int(n) for n in args.processes.split(",")]
    sizes = [int(n) for n in args.memory_ng.split(",") if n]
    rows: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="side-scale-") as tmp:
        # Process counts alternate and each keeps its best rate of --repeats, so that a change in the
        # machine's load hits all of them alike.
        for repeat in range(args.repeats):
            for n in processes:
                row = launch(args, n, Path(tmp) / f"store-{n}-{repeat}", Path(tmp) / f"result-{n}.json")
                print(f"{n} process(es): " + ", ".join(f"{k} {round(v, 2)}" for k, v in row.items() if k in RATES))
                rows[n] = best(rows.get(n), row)
        memory = []
        if sizes:
            store = Path(tmp) / "memory"
            prepare_memory_store(args, store, sizes)
            for n_g in sizes:
                streamed, whole = probe(args, store, n_g, False), probe(args, store, n_g, True)
                memory.append(
                    {
                        "n_g": n_g,
                        "scoring_peak_rss_mib": streamed["peak_rss_mib"],
                        "scoring_seconds": streamed["seconds"],
                        "whole_peak_rss_mib": whole["peak_rss_mib"],
                    }
                )
                print(f"N_G {n_g}: " + ", ".join(f"{k} {v}" for k, v in memory[-1].items() if k != "n_g"))

    def column(key: str) -> list[float]:
        return [round(rows[n][key], 2) for n in processes]

    first = processes[0]
    results = {
        **provenance(),  # command, git revision, machine, date
        "processes": processes,
        "generate_images_per_s": column("generate_images_per_s"),
        "speedup_2": round(rows[2]["generate_images_per_s"] / rows[first]["generate_images_per_s"], 3)
        if 2 in rows
        else None,
        "guided_images_per_s": column("guided_images_per_s"),
        "classifier_images_per_s": column("classifier_images_per_s"),
        "search_queries_per_s": column("search_queries_per_s"),
        "speedup": {key: [round(rows[n][key] / rows[first][key], 3) for n in processes] for key in RATES},
        "peak_memory_mib_per_process": [rows[n]["peak_memory_mib"] for n in processes],
        "peak_memory_kind": "cuda max_memory_allocated" if args.device.startswith("cuda") else "process max RSS",
        "memory_vs_n_g": memory,
        "setup": {
            **{
                k: v
                for k, v in vars(args).items()
                if k not in ("worker", "memory_probe", "whole", "result", "store", "n_g")
            },
            "launcher": "python -m torch.distributed.run --nproc_per_node N",
            "load_average_at_start": load_at_start,  # 1, 5, 15 minutes: other work on the machine
            "load_average_at_end": os.getloadavg(),
        },
    }
    print(format_table(results))
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


def format_table(r: dict) -> str:
    lines = ["| figure | " + " | ".join(f"{n} process{'es' if n > 1 else ''}" for n in r["processes"]) + " |"]
    lines.append("|---|" + "---|" * len(r["processes"]))
    for key, name in (
        ("generate_images_per_s", "generation (images/s)"),
        ("guided_images_per_s", "guided generation (images/s)"),
        ("classifier_images_per_s", "classifier training (images/s)"),
        ("search_queries_per_s", "neighbour search (queries/s)"),
    ):
        cells = [f"{v} ({s}x)" for v, s in zip(r[key], r["speedup"][key], strict=True)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    peaks = [", ".join(str(m) for m in per) for per in r["peak_memory_mib_per_process"]]
    lines.append("| peak memory per process (MiB) | " + " | ".join(peaks) + " |")
    if r["memory_vs_n_g"]:
        lines += ["", "| N_G | scoring peak RSS (MiB) | scoring s | all queries in memory: peak RSS (MiB) |",
                  "|---|---|---|---|"]  # fmt: skip
        for m in r["memory_vs_n_g"]:
            lines.append(
                f"| {m['n_g']:,} | {m['scoring_peak_rss_mib']} | {m['scoring_seconds']} | {m['whole_peak_rss_mib']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
