"""What plain sampling can reach on a model: the distinct training images a large number of plain
samples copy, with the richness estimates from their copy counts, scorer side and attacker side.

    python -m benchmarks.ceiling --name ceiling                      # the bundled default, 32,768 samples
    python -m benchmarks.ceiling --model fashion1k-repeats --data runs/fashion1k/images \\
        --repeats runs/fashion1k/train/repeats.json --name ceiling_fashion1k-repeats

The samples come from one plain generation (seed --seed, which no extraction method uses) in the run
store, so a later extraction benchmark on the same store reads it back instead of drawing it again.
The scorer counts each copy's nearest training image (high band): distinct images, Chao1 and the
Good-Turing missing mass. The attacker sees only near-identical groups among the samples' features
(side_core.allocation, side_core.richness): its estimate of the reachable images, and how it compares
with Chao1. Also the same at the pool size --n-pool (the first samples), where the extraction
benchmarks' surrogate stands. Writes NAME.json and NAME.md to benchmarks/results/; with --repeats (the
repeats.json that benchmarks.datasets writes beside the training copies), how often each repeat count
was copied.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from benchmarks.provenance import add_output_flags, start
from side_core.allocation import near_identical_groups, pool_neighbours
from side_core.cluster import l2_normalise
from side_core.config import MAX_SEED, ClusterConfig, SampleConfig
from side_core.data import load_training_set
from side_core.embed import FEATURES
from side_core.kinds.features import Features
from side_core.kinds.generation import Generation
from side_core.kinds.scoring import Score
from side_core.models import load_model
from side_core.richness import attacker_reach, chao1, missing_mass, scorer_reach
from side_core.run import Run
from side_core.store import write_json, write_text

log = logging.getLogger("ceiling")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="bundled name, diffusers folder or hub id")
    p.add_argument("--data", default="default", help="the training images to score against")
    p.add_argument("--store", default="runs/benchmark", help="run store (the samples are a stage there)")
    p.add_argument("--n", type=int, default=32768, help="plain samples (default 32,768)")
    p.add_argument("--n-pool", type=int, default=4096, help="also report the first N samples, a SIDE pool's size")
    p.add_argument("--seed", type=int, default=MAX_SEED - 7, help="generation seed (default: one no method uses)")
    p.add_argument(
        "--feature",
        default=ClusterConfig().feature,
        choices=FEATURES.names(),
        help="the attacker's feature for near-identical groups (%(default)s)",
    )
    p.add_argument("--name", default="ceiling", help="results base name")
    p.add_argument("--repeats", type=Path, default=None, help="repeats.json of a --repeated training folder")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None)
    add_output_flags(p)
    return p.parse_args()


def copy_counts(copied: np.ndarray, n_train: int) -> np.ndarray:
    """(n_train,) how many samples copy each training image."""
    return np.bincount(copied[copied >= 0], minlength=n_train)


def reach_at(copied: np.ndarray, features: np.ndarray, n_train: int) -> dict:
    """Scorer and attacker reach of the samples whose copies and features are given."""
    counts = copy_counts(copied, n_train)
    _, _, partner = pool_neighbours(features)
    attacker = attacker_reach(near_identical_groups(partner))
    scorer = scorer_reach(copied, len(copied))
    return {
        "n": len(copied),
        "copy_rate": round(100 * float((copied >= 0).mean()), 3),
        "distinct": int((counts > 0).sum()),
        "chao1": round(chao1(counts), 2),
        "good_turing_missing_mass": round(missing_mass(counts), 6),
        "scorer": scorer.to_json(),
        "attacker": attacker.to_json(),
        "attacker_over_chao1": round(attacker.estimate / max(chao1(counts), 1e-9), 3),
    }


def by_repeat_count(counts: np.ndarray, repeats: Path | None) -> dict | None:
    """For data written by benchmarks.datasets with --repeated: per copies-in-training, the images
    with that count, how many were copied at least once, and their copies."""
    if repeats is None:
        return None
    copies = {int(k): int(v) for k, v in json.loads(repeats.read_text())["copies"].items()}
    levels = np.array([copies.get(i, 1) for i in range(len(counts))])
    return {
        int(c): {
            "images": int((levels == c).sum()),
            "copied": int(((levels == c) & (counts > 0)).sum()),
            "copies": int(counts[levels == c].sum()),
        }
        for c in np.unique(levels)
    }


def main() -> None:
    args = parse_args()
    out, made_by = start(args, [f"{args.name}.json", f"{args.name}.md"])
    started = time.perf_counter()
    model = load_model(args.model, args.device)
    run = Run(args.store, model, load_training_set(args.data, model.channels, model.size))
    generation = Generation.make(run, args.n, args.seed, SampleConfig())
    copied = Score.make(run, generation).copied()
    features = l2_normalise(Features.make(run, generation, args.feature).vectors())
    n_train = len(run.data)
    counts = copy_counts(copied, n_train)
    result = {
        "model": run.model.facts(),
        "data": run.data.facts(),
        "n_train": n_train,
        "sample": SampleConfig().to_dict(),
        "seed": args.seed,
        "feature": args.feature,
        "plain_n": args.n,
        "plain_distinct": int((counts > 0).sum()),
        "chao1": round(chao1(counts), 2),
        "at_n": reach_at(copied, features, n_train),
        "at_pool": reach_at(copied[: args.n_pool], features[: args.n_pool], n_train),
        "copy_counts": sorted((int(c) for c in counts[counts > 0]), reverse=True),
        "by_repeat_count": by_repeat_count(counts, args.repeats),
        "generation": generation.name,
        "seconds": round(time.perf_counter() - started, 1),
        **made_by,
    }
    result["attacker_estimate"] = result["at_pool"]["attacker"]["estimate"]
    write_json(out / f"{args.name}.json", result)
    lines = [
        f"Command: `{made_by['command']}` (git {made_by['git']['revision']})",
        "",
        f"{args.n} plain samples copy {result['plain_distinct']} of {n_train} training images (high band); "
        f"Chao1 {result['chao1']:.1f}.",
        "",
        "| samples | copy rate % | distinct | Chao1 | missing mass | attacker estimate | attacker / Chao1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in (result["at_pool"], result["at_n"]):
        lines.append(
            f"| {r['n']} | {r['copy_rate']} | {r['distinct']} | {r['chao1']} | {r['good_turing_missing_mass']} | "
            f"{r['attacker']['estimate']} ({r['attacker']['found']} groups) | {r['attacker_over_chao1']} |"
        )
    if result["by_repeat_count"]:
        lines += ["", "| copies in training | images | copied at least once | copies |", "|---|---|---|---|"]
        for c, r in result["by_repeat_count"].items():
            lines.append(f"| {c} | {r['images']} | {r['copied']} | {r['copies']} |")
    lines.append(f"\nWall time: {result['seconds']:.0f} s")
    write_text(out / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
