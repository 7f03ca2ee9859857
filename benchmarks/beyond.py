"""What SIDE finds that its own pool has not: variants of the recipe (labels, allocation, guidance
window and scale) on one model, each one's guided samples counted by the training images they copy
that no pool sample copies, per 1,000 guided samples, against plain samples drawn after the pool.

    python -m benchmarks.beyond --threads 1 --name beyond-faces100
    python -m benchmarks.beyond --model M --data D --variants core:flagged,unfound:missing:0-600 --name beyond-x

A variant is LABELS:ALLOCATION[:T_LOW-T_HIGH[:SCALE]][+repel] (side_core.config.LABELS and ALLOCATIONS;
the window and scale default to every step and the engine's lambda; +repel pushes the guided samples off
the pool's near-identical samples, side_core.repulsion). Every variant shares the pool (N_syn
plain samples, features, clusters), the seed of its N_G guided samples, and the plain samples drawn
after the pool (--n-plain, one generation from a seed no method uses). Each row also has where the guided
samples landed and what a guided sample costs against a plain one, timed side by side
(``side_core.kinds.cost.SamplingCost``), so that a rate per guided sample can be read per unit of time too. Writes
NAME.json and NAME.md to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time

import numpy as np

from benchmarks.provenance import add_output_flags, start
from side_core.cli import add_extraction_flags, extraction_config, open_run
from side_core.config import MAX_SEED, ExtractionConfig
from side_core.kinds.classifier import Landed
from side_core.kinds.cost import SamplingCost
from side_core.kinds.generation import Generation
from side_core.kinds.scoring import Score
from side_core.pipeline import build_surrogate, guided_generation
from side_core.run import Run
from side_core.store import write_json, write_text

log = logging.getLogger("beyond")
REPEL = "+repel"  # a variant's suffix: its guided samples are pushed off the pool's near-identical samples


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_extraction_flags(p, report=False, store="runs/benchmark")
    p.set_defaults(n_samples=512)
    p.add_argument(
        "--variants",
        default="core:flagged,core:flagged:0-500,clusters:uniform,unfound:uniform,unfound:missing",
        help="comma-separated LABELS:ALLOCATION[:T_LOW-T_HIGH[:SCALE]][+repel]",
    )
    p.add_argument("--n-plain", type=int, default=2048, help="plain samples drawn after the pool (default 2,048)")
    p.add_argument("--name", default="beyond", help="results base name")
    add_output_flags(p)
    return p.parse_args()


def variant_config(base: ExtractionConfig, spec: str) -> ExtractionConfig:
    spec, repel = spec.removesuffix(REPEL), spec.endswith(REPEL)
    parts = spec.split(":")
    if len(parts) < 2:
        raise SystemExit(f"error: variant {spec!r}: write LABELS:ALLOCATION[:T_LOW-T_HIGH[:SCALE]][{REPEL}]")
    window = tuple(int(t) for t in parts[2].split("-")) if len(parts) > 2 and parts[2] else None
    scale = float(parts[3]) if len(parts) > 3 else base.sample.guidance_scale
    sample = dataclasses.replace(base.sample, guidance_window=window, guidance_scale=scale)
    return dataclasses.replace(base, labels=parts[0], allocation=parts[1], sample=sample, repel=repel)


def new_images(first_hit: np.ndarray, pool_found: np.ndarray) -> int:
    """Training images some sample copies (``first_hit`` >= 0) that the pool does not."""
    return int(((first_hit >= 0) & ~pool_found).sum())


def variant_row(run: Run, config: ExtractionConfig, pool_found: np.ndarray, spec: str) -> dict:
    surrogate = build_surrogate(run, config, ("side",))
    generation = guided_generation(run, surrogate, "side", config.n_samples, config.seed, config.sample)
    score = Score.make(run, generation)
    beyond = new_images(score.first_hit(), pool_found)
    summary = score.summary()
    cost = SamplingCost.make(run, surrogate.classifiers["side"], config.sample).summary()
    return {
        "variant": spec,
        "labels": config.labels,
        "allocation": config.allocation,
        "window": config.sample.guidance_window,
        "scale": config.sample.guidance_scale,
        "repel": config.repel,
        "ams_high": summary["ams"]["high"],
        "distinct": len(summary["extracted"]),
        "beyond_pool": beyond,
        "per_1000": round(1000 * beyond / config.n_samples, 2),
        "landed": Landed.make(run, generation).summary()["landed"],
        "guided_over_plain": cost["guided_over_plain"],
        "classifier_seconds": cost["classifier_seconds"],
        "plain_per_sample": cost["plain_per_sample"],
        "generation": generation.name,
    }


def main() -> None:
    args = parse_args()
    out, made_by = start(args, [f"{args.name}.json", f"{args.name}.md"])
    started = time.perf_counter()
    run = open_run(args, args.store)
    base = extraction_config(args)
    configs = {spec: variant_config(base, spec) for spec in args.variants.split(",") if spec.strip()}
    surrogate = build_surrogate(run, base, ())
    pool_score = Score.make(run, surrogate.synthetic)
    pool_found = pool_score.first_hit() >= 0
    plain_seed = MAX_SEED - 1 - base.seed  # no method's seed, nor the extraction benchmark's extra plain samples
    plain = Generation.make(run, args.n_plain, plain_seed, dataclasses.replace(base.sample, guidance_scale=0.0))
    plain_first = Score.make(run, plain).first_hit()
    uncond = new_images(plain_first, pool_found)
    rows = [variant_row(run, config, pool_found, spec) for spec, config in configs.items()]
    result = {
        "model": run.model.facts(),
        "data": run.data.facts(),
        "n_train": len(run.data),
        "config": base.to_dict(),
        "pool": int(pool_found.sum()),
        "reach": surrogate.reach(pool_score),
        "uncond_after_pool": {
            "n": args.n_plain,
            "beyond_pool": uncond,
            "per_1000": round(1000 * uncond / args.n_plain, 2),
            "at_n_g": new_images(np.where(plain_first < base.n_samples, plain_first, -1), pool_found),
        },
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
        **made_by,
    }
    write_json(out / f"{args.name}.json", result)
    u = result["uncond_after_pool"]
    lines = [
        f"Command: `{made_by['command']}` (git {made_by['git']['revision']})",
        "",
        f"The pool ({base.n_syn} plain samples) copies {result['pool']} of {len(run.data)} training images. "
        f"{u['n']} plain samples after it copy {u['beyond_pool']} more ({u['per_1000']} per 1,000; "
        f"{u['at_n_g']} in their first {base.n_samples}).",
        "",
        f"N_G = {base.n_samples} guided samples per variant, seed {base.seed}:",
        "",
        "| variant | AMS high % | distinct | beyond the pool | per 1,000 | landed | guided / plain cost |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['ams_high']} | {r['distinct']} | {r['beyond_pool']} | {r['per_1000']} | "
            f"{100 * r['landed']:.0f}% | {r['guided_over_plain']} |"
        )
    lines.append(f"\nWall time: {result['seconds']:.0f} s")
    write_text(out / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
