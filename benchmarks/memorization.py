"""How memorized is a model? Plain-sampling extraction for each checkpoint of a training run.

    python -m benchmarks.memorization --train-dir runs/faces100 --n-data 100 --n-samples 128

Prints, per checkpoint, the share of samples in each band and the number of distinct training
images copied (high band), and writes them to benchmarks/results/memorization-<name>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from benchmarks.provenance import add_output_flags, output_dir, provenance
from side_core.cli import add_choice
from side_core.config import ExtractionConfig, SampleConfig
from side_core.data import load_training_set
from side_core.models import load_model
from side_core.pipeline import extract
from side_core.run import Run
from side_core.sampling import SAMPLERS
from side_core.store import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-dir", required=True, help="a `python -m side_core train` output folder")
    parser.add_argument("--data", default="default", help="the training images ('default' or a folder)")
    parser.add_argument("--n-data", type=int, default=None, help="first N training images (as trained)")
    parser.add_argument("--n-samples", type=int, default=128, help="plain samples per checkpoint")
    add_choice(parser, "--sampler", SampleConfig().sampler, "plain sampler", SAMPLERS)
    parser.add_argument("--every", type=int, default=1, help="evaluate every n-th checkpoint")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--store", default="runs/memorization", help="run store (finished stages are reused)")
    add_output_flags(parser)
    args = parser.parse_args()
    name = f"memorization-{Path(args.train_dir).name}.json"
    out = output_dir(args, [name])
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_dir = Path(args.train_dir)
    history = {h["step"]: h for h in json.loads((train_dir / "history.json").read_text())}
    checkpoints = sorted((train_dir / "checkpoints").iterdir())[:: args.every]
    rows = []
    print(f"{'step':>6} {'minutes':>8} {'AMS low':>8} {'AMS mid':>8} {'AMS high':>9} {'distinct':>9} {'p95':>6}")
    for folder in checkpoints:
        started = time.perf_counter()
        model = load_model(folder)
        data = load_training_set(args.data, model.channels, model.size, args.n_data)
        config = ExtractionConfig(n_samples=args.n_samples, sample=SampleConfig(sampler=args.sampler))
        report = extract(Run(args.store, model, data), config, ("uncond",))
        m = report.methods["uncond"]
        step = int(folder.name.split("-")[1])
        row = {
            "step": step,
            "minutes": history.get(step, {}).get("minutes"),
            "ams": m.ams,
            "distinct": m.distinct,
            "p95": m.p95,
            "seconds": round(time.perf_counter() - started, 1),
        }
        rows.append(row)
        a = m.ams
        print(
            f"{step:>6} {row['minutes'] or 0:>8.1f} {a['low']:>8.1f} {a['mid']:>8.1f} {a['high']:>9.1f} "
            f"{row['distinct']:>9} {m.p95:>6.3f}",
            flush=True,
        )
    write_json(out / name, {**provenance(), "train_dir": str(train_dir), "sampler": args.sampler, "rows": rows})


if __name__ == "__main__":
    main()
