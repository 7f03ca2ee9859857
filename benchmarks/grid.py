"""Which surrogate set-up makes guidance extract more? A grid of extraction configs, each run by the
engine (``side_core.pipeline.extract``) in one run store, so every stage is cached and reused and
"distinct" is the engine's: the training images some sample copies (high band, the score's
``extracted``), with the cost curve from the score's first hits (``metrics.distinct_curve``).

    python -m benchmarks.grid --threads 1 --n-samples 64 --n-syn 256 --k 8 \\
        --classifier-steps 50 --scales 2,4 --out-dir /tmp/grid          # a smoke test, about 2 min
    python -m benchmarks.grid --device cuda --samplers ddpm,ddim --ks 100,200 \\
        --keep-tops 0.3,0.5 --unkepts background,nearest --scales 1,2,4,8 --seeds 0,2,3   # a GPU grid

Axes (comma lists); an axis not given is the one value of the matching extraction flag:
--samplers (--sampler), --ks (--k), the keep rule --keep-tops and/or --taus (--keep-top or --tau),
--unkepts (--unkept), --scales (--guidance-scale), --allocations (--allocation), --seeds (the
generation seeds, --seed) and --surrogate-seeds (--surrogate-seed: the synthetic set's, K-means' and
the classifiers' seed; the synthetic set uses surrogate seed + 1, which a generation seed may not
equal). Every other
extraction flag (--n-samples, --n-syn, --feature, --classifier-steps, --steps, --batch-size, --model,
--data, --bands, --device, --threads, ...) holds for every point. Plain sampling (UnCond) at each
sampler and generation seed is the baseline; --methods side,cond adds the time-blind classifier.

Every config is checked before any work. Writes to --out-dir (default benchmarks/results):
grid.jsonl (a first line with the command, git revision, machine, samplers and the fixed config,
then one line per run, written as it is measured) and grid.md (means over generation and surrogate
seeds). A grid cut short is resumed by running the same command again: finished stages come from
--store (default runs/grid/store). On a CPU a full-size point (N_syn 4,096, 1,500 classifier steps)
takes about 5 minutes for its surrogate, then about 20 s per 256 samples: shrink the grid. A point
the engine refuses (e.g. a tau that keeps fewer than two clusters at some K) is recorded with its
error, and the grid goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from benchmarks.provenance import add_output_flags, output_dir, provenance
from side_core.allocation import ALLOCATIONS
from side_core.cli import add_extraction_flags, extraction_config, open_run
from side_core.config import ExtractionConfig
from side_core.errors import SideError
from side_core.kinds.scoring import Score
from side_core.metrics import distinct_curve, samples_to_k
from side_core.pipeline import METHODS, build_surrogate, extract
from side_core.run import Run
from side_core.sampling import SAMPLERS
from side_core.store import finite_or_none, write_text

log = logging.getLogger("grid")
GUIDED = tuple(m for m in METHODS if m != "uncond")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_extraction_flags(p, report=False, store="runs/grid/store")
    p.set_defaults(n_samples=512)
    axes = p.add_argument_group("grid axes (comma lists; absent: the single-valued flag's value)")
    axes.add_argument("--samplers", help=", ".join(SAMPLERS.names()))
    axes.add_argument("--ks", help="K-means clusters")
    axes.add_argument("--keep-tops", help="keep rule: the most cohesive fraction of the clusters (tau unset)")
    axes.add_argument("--taus", help="keep rule: the paper's absolute cohesion threshold")
    axes.add_argument("--unkepts", help="background, nearest: what the dropped clusters' samples become")
    axes.add_argument("--scales", help="guidance scales (lambda)")
    axes.add_argument("--allocations", help=f"{', '.join(ALLOCATIONS.names())}: how targets spread over classes")
    axes.add_argument("--seeds", help="generation seeds (the N_G samples)")
    axes.add_argument("--surrogate-seeds", help="seeds of the surrogate (synthetic set, K-means, classifiers)")
    p.add_argument("--methods", default="side", help="guided methods run at each point (side, cond)")
    p.add_argument("--k-faces", default="15,20,28,30", help="K values of samples-to-K (distinct faces)")
    add_output_flags(p)
    return p.parse_args()


def values(text: str | None, default, kind=str) -> list:
    """A comma list of ``kind``, or ``[default]`` when the axis is not given."""
    if text is None:
        return [default]
    out = [kind(x.strip()) for x in text.split(",") if x.strip()]
    if not out:
        raise SideError(f"Empty grid axis {text!r}: give at least one value.")
    return out


@dataclasses.dataclass(frozen=True)
class Point:
    """One guided run of the grid: a method and the ExtractionConfig it runs with."""

    method: str
    config: ExtractionConfig

    def key(self) -> dict:
        """The axis values of this point (what the grid varies), as stored in each results line."""
        c = self.config
        guided = self.method != "uncond"
        return {
            "sampler": c.sample.sampler,
            "method": self.method,
            "k": c.cluster.k if guided else None,
            "keep_top": c.cluster.keep_top if guided and c.cluster.tau is None else None,
            "tau": c.cluster.tau if guided else None,
            "unkept": c.cluster.unkept if guided else None,
            "scale": c.sample.guidance_scale if guided else 0.0,
            "allocation": c.allocation if guided else None,
            "surrogate_seed": c.surrogate_seed if guided else None,
            "seed": c.seed,
        }


def configure(base: ExtractionConfig, **axis) -> ExtractionConfig:
    """``base`` at one grid point. The surrogate seed also seeds K-means and the classifiers."""
    rule, value = axis["rule"]
    s = axis["surrogate_seed"]
    cluster = dataclasses.replace(
        base.cluster,
        k=axis["k"],
        keep_top=value if rule == "keep_top" else base.cluster.keep_top,
        tau=value if rule == "tau" else None,
        unkept=axis["unkept"],
        seed=s,
    )
    return dataclasses.replace(
        base,
        cluster=cluster,
        classifier_train=dataclasses.replace(base.classifier_train, seed=s),
        sample=dataclasses.replace(base.sample, sampler=axis["sampler"], guidance_scale=axis["scale"]),
        allocation=axis["allocation"],
        seed=axis["seed"],
        surrogate_seed=s,
    )


def grid_points(args: argparse.Namespace, base: ExtractionConfig) -> list[Point]:
    """Every run of the grid, each config built (and so checked) before any work: the UnCond
    baseline at each sampler and generation seed, then each guided method at each point."""
    methods = values(args.methods, "side")
    unknown = set(methods) - set(GUIDED)
    if unknown:
        raise SideError(f"Unknown --methods {sorted(unknown)}: use {', '.join(GUIDED)}.")
    c = base.cluster
    rules = [("keep_top", v) for v in values(args.keep_tops, None, float)] if args.keep_tops else []
    rules += [("tau", v) for v in values(args.taus, None, float)] if args.taus else []
    if not rules:
        rules = [("tau", c.tau) if c.tau is not None else ("keep_top", c.keep_top)]
    axes = {
        "sampler": values(args.samplers, base.sample.sampler),
        "surrogate_seed": values(args.surrogate_seeds, base.surrogate_seed, int),
        "k": values(args.ks, c.k, int),
        "rule": rules,
        "unkept": values(args.unkepts, c.unkept),
        "scale": values(args.scales, base.sample.guidance_scale, float),
        "allocation": values(args.allocations, base.allocation),
        "seed": values(args.seeds, base.seed, int),
    }
    points = []
    for sampler in axes["sampler"]:
        for seed in axes["seed"]:  # plain sampling depends on neither the surrogate nor lambda
            first = dict(zip(axes, (v[0] for v in axes.values()), strict=True))
            points.append(Point("uncond", configure(base, **{**first, "sampler": sampler, "seed": seed})))
        for combo in itertools.product(*list(axes.values())[1:]):
            axis = {"sampler": sampler, **dict(zip(list(axes)[1:], combo, strict=True))}
            config = configure(base, **axis)
            points += [Point(m, config) for m in methods]
    return points


def measure(run: Run, point: Point, k_faces: list[int]) -> dict:
    """One point through the engine: its report row, distinct faces and the cost curve."""
    config, method = point.config, point.method
    row = point.key()
    surrogate = build_surrogate(run, config, (method,), say=log.debug) if method != "uncond" else None
    report = extract(run, config, (method,))
    result = report.methods[method]
    n = result.n_generated
    curve = distinct_curve(run.find(result.score, Score).first_hit("high"), n)
    if surrogate is not None:
        clustering = surrogate.clusters.clustering()
        row.update(
            n_classes=report.clusters["n_classes"],
            in_classes=report.clusters["in_classes"],
            cohesion_cut=round(float(clustering.cohesion[clustering.kept].min()), 4),
            accuracy=[finite_or_none(round(a, 3)) for a in surrogate.classifier_report(method).accuracy],
        )
    row.update(
        n_generated=n,
        ams_high=result.ams["high"],
        ums_high=result.ums["high"],
        p95=result.p95,
        distinct=result.distinct,
        **{f"distinct_{m}": int(curve[m - 1]) for m in (64, 128) if m < n},
        samples_to_k={k: samples_to_k(curve, k) for k in k_faces},
        score=result.score,
    )
    return row


GROUP = ("sampler", "method", "k", "keep_top", "tau", "unkept", "scale", "allocation")


def means_table(rows: list[dict], k_faces: list[int]) -> list[str]:
    """Means over generation and surrogate seeds, one line per configuration (samples-to-K: 'never'
    if any seed missed K)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in GROUP)].append(row)
    head = [*GROUP, "runs", "classes", "AMS high", "distinct", "distinct @64", *(f"to {k}" for k in k_faces)]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for key, group in groups.items():
        cost = []
        for k in k_faces:
            got = [r["samples_to_k"][k] for r in group]
            cost.append("never" if None in got else f"{np.mean(got):.1f}")
        classes = [r["n_classes"] for r in group if "n_classes" in r]
        early = [r.get("distinct_64", r["distinct"]) for r in group]
        cells = [
            *("" if v is None else str(v) for v in key),
            str(len(group)),
            f"{np.mean(classes):.1f}" if classes else "",
            f"{np.mean([r['ams_high'] for r in group]):.1f}",
            f"{np.mean([r['distinct'] for r in group]):.1f}",
            f"{np.mean(early):.1f}",
            *cost,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        base = extraction_config(args)
        points = grid_points(args, base)  # every config checked here, before any work
        k_faces = values(args.k_faces, None, int)
    except (SideError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    out = output_dir(args, ["grid.jsonl", "grid.md"])
    made_by = provenance()
    samplers = sorted({p.config.sample.sampler for p in points})
    log.info("%d runs (%d guided) on samplers %s", len(points), sum(p.method != "uncond" for p in points), samplers)
    jsonl = out / "grid.jsonl"
    header = {"provenance": made_by, "samplers": samplers, "store": str(Path(args.store)), "base": base.to_dict()}
    jsonl.write_text(json.dumps(header) + "\n")  # a fresh file: one command per results file
    try:
        run = open_run(args, args.store)  # reuses the bundled stages where they match
    except SideError as err:
        raise SystemExit(f"error: {err}") from None
    started = time.perf_counter()
    rows, failed = [], []
    for i, point in enumerate(points, start=1):
        try:
            row = measure(run, point, k_faces)
        except SideError as err:  # e.g. a tau that keeps fewer than two clusters at this K: the rest goes on
            row = {**point.key(), "error": str(err)}
            failed.append(row)
            log.warning("[%d/%d] %s: %s", i, len(points), json.dumps(point.key()), err)
        else:
            rows.append(row)
            log.info("[%d/%d] %s", i, len(points), json.dumps(row))
        row["t"] = round(time.perf_counter() - started)
        with jsonl.open("a") as f:  # line by line: a grid cut short keeps what it measured
            f.write(json.dumps(row) + "\n")
    lines = [
        f"Command: `{made_by['command']}` (git {made_by['git']['revision']}"
        f"{', uncommitted changes' if made_by['git']['uncommitted_changes'] else ''}); "
        f"samplers {', '.join(samplers)}; N_G {base.n_samples}, N_syn {base.n_syn}, feature {base.cluster.feature}, "
        f"classifier steps {base.classifier_train.steps}, {base.sample.num_steps} steps",
        "",
        "Means over generation and surrogate seeds; distinct = training images copied (high band); "
        "'to K': samples needed to copy K distinct ones.",
        "",
        *means_table(rows, k_faces),
        "",
        *(f"Not run: {json.dumps({k: v for k, v in r.items() if v is not None})}" for r in failed),
        *([""] if failed else []),
        f"Wall time: {time.perf_counter() - started:.0f} s",
    ]
    write_text(out / "grid.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
