"""Guidance scale lambda, swept for SIDE and Cond on one model, with what an attacker can see at
each scale beside what the training set says:

    python -m benchmarks.guidance --threads 1                 # N_G 128, lambda 2, 4, 8, the bundled model
    python -m benchmarks.guidance --model M --data D --scales 1,2,4,8,16 --name lambda-fashion-mnist

Every variant draws the same N_G samples (same per-shard seeds, so sample i starts from the same
noise) aimed at the same per-sample classes (drawn by the engine's allocation), and is scored against
the training set by the engine (``side_core.kinds.scoring.Score``):

- ``uncond``: plain sampling (lambda 0), the reference;
- ``side``: the engine's SIDE path, the time-dependent classifier p(y | x_t, t) on x_t (the paper);
- ``cond``: the engine's Cond path, the time-blind (clean) classifier applied to x_t as if clean.

Per variant, what needs the training set: AMS high (copies), distinct training images copied (high
band), the samples needed to copy K distinct images (K = half the best variant's distinct count, as
in benchmarks.extraction). What needs none (an attacker's evidence for choosing lambda): the share
of samples that landed in their target class (``side_core.kinds.classifier.Landed``) and the share
that have a near-identical partner in the surrogate's own pool of plain samples (cosine in the
clustering feature at or above the pool's near-identical threshold, the Filter signal). Also seconds
per sample (from the stage summaries: wall time on a shared machine) and the guiding classifier's
held-out clean accuracy.
The surrogate stages come from the bundled store where they match (``--store`` defaults to
runs/guidance/store; new stages go there, so a rerun is instant).
Writes benchmarks/results/NAME.json and NAME.md (``--name``, default guidance).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace

import torch

from benchmarks.provenance import add_output_flags, start
from side_core.classifier import ClassifierReport
from side_core.cli import add_extraction_flags, extraction_config, open_run
from side_core.cluster import l2_normalise
from side_core.kinds.classifier import Classifier, Landed
from side_core.kinds.features import Features
from side_core.kinds.generation import Generation
from side_core.kinds.scoring import Score, bands
from side_core.metrics import distinct_curve, samples_to_k
from side_core.pipeline import build_surrogate, guided_generation
from side_core.run import Run
from side_core.store import finite_or_none, write_json, write_text
from side_core.surrogate import Surrogate

log = logging.getLogger("guidance")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_extraction_flags(p, report=False, store="runs/guidance/store")
    p.set_defaults(n_samples=128)
    p.add_argument("--scales", default="2,4,8", help="guidance scales of every guided variant (default %(default)s)")
    p.add_argument("--name", default="guidance", help="results base name (default %(default)s)")
    add_output_flags(p)
    return p.parse_args()


def partnered(run: Run, surrogate: Surrogate, generation: Generation) -> float:
    """% of a generation's samples with a near-identical partner in the surrogate's pool: cosine in the
    clustering feature at or above the pool's near-identical threshold. Reads no training set."""
    feature = surrogate.features.feature
    pool = l2_normalise(surrogate.features.vectors())
    drawn = l2_normalise(Features.make(run, generation, feature).vectors())
    nearest = (torch.from_numpy(drawn) @ torch.from_numpy(pool).T).max(dim=1).values.numpy()
    return round(100 * float((nearest >= surrogate.near_identical.summary()["near_identical"]).mean()), 2)


def clean_accuracy(classifier: Classifier) -> float | None:
    """Held-out accuracy on clean samples; None where there was no held-out sample to measure it on."""
    return finite_or_none(round(ClassifierReport.from_dict(classifier.summary()).clean_accuracy, 3))


def classifier_facts(classifier: Classifier) -> dict:
    report = ClassifierReport.from_dict(classifier.summary())
    return {
        "stage": classifier.name,
        "time_dependent": classifier.time_dependent,
        "steps": classifier.train_config.steps,
        **{k: report.to_dict()[k] for k in ("clean_accuracy", "quartiles", "chance")},
        "accuracy_per_quartile": report.to_dict()["accuracy"],
        "training_seconds": classifier.summary()["seconds"],
    }


def main() -> None:
    args = parse_args()
    out, made_by = start(args, [f"{args.name}.json", f"{args.name}.md"])
    config = extraction_config(args)
    run = open_run(args, args.store)  # reuses the bundled stages where they match
    scales = [float(s) for s in args.scales.split(",") if s.strip()]

    surrogate = build_surrogate(run, config, ("side", "cond"))
    variants = [("uncond", 0.0)] + [(method, scale) for scale in scales for method in ("side", "cond")]

    n, seed = config.n_samples, config.seed
    rows, engine_targets = [], {}
    for method, scale in variants:
        guided = method != "uncond"
        log.info("%s at lambda %g: %d samples", method, scale, n)
        sample_config = replace(config.sample, guidance_scale=scale)
        if guided:  # every guided variant aims sample i at the same class
            generation = guided_generation(run, surrogate, method, n, seed, sample_config)
            drawn = generation.targets()
            engine_targets.setdefault(scale, drawn)
            if not torch.equal(drawn, engine_targets[scale]):
                raise SystemExit(f"error: {method} at lambda {scale:g} aimed at other classes than SIDE's")
        else:
            generation = Generation.make(run, n, seed, sample_config)
        score = Score.make(run, generation)
        summary = score.summary()
        classifier = surrogate.classifiers.get(method)
        rows.append(
            {
                "variant": method,
                "scale": scale,
                "ams": summary["ams"],
                "ums": summary["ums"],
                "p95": summary["p95"],
                "distinct": len(summary["extracted"]),
                "landed": round(100 * Landed.make(run, generation).summary()["landed"], 2) if guided else None,
                "partnered": partnered(run, surrogate, generation),
                "seconds_per_sample": round(generation.summary()["seconds"] / n, 4),
                # None where the classifier had no held-out sample to measure it on
                "clean_accuracy": clean_accuracy(classifier) if classifier else None,
                "generation": generation.name,
                "curve": distinct_curve(score.first_hit("high"), n).tolist(),
            }
        )
        log.info(
            "  AMS high %.1f%%, distinct %d, landed %s%%, partnered %.1f%%",
            summary["ams"]["high"],
            rows[-1]["distinct"],
            rows[-1]["landed"],
            rows[-1]["partnered"],
        )

    k = max(1, max(r["distinct"] for r in rows) // 2)  # as benchmarks.extraction: half the best final count
    for r in rows:
        r["samples_to_k"] = samples_to_k(r["curve"], k)
    report = {
        **made_by,
        "model": run.model.facts(),
        "data": run.data.facts(),
        "similarity": {**run.similarity.to_dict(), "bands": bands(run).to_dict()},
        "config": config.to_dict(),
        "sampler": config.sample.to_dict(),
        "clusters": {k: surrogate.clusters.summary().get(k) for k in ("n_classes", "in_classes", "silhouette")},
        "classifiers": {name: classifier_facts(surrogate.classifiers[name]) for name in ("side", "cond")},
        "samples_to_k": k,
        "rows": rows,
    }
    for method in ("side", "cond"):  # the scale each reading would pick, per method
        guided = [r for r in rows if r["variant"] == method]
        report[f"{method}_best"] = {
            "by_partnered": max(guided, key=lambda r: r["partnered"])["scale"],
            "by_ams_high": max(guided, key=lambda r: r["ams"]["high"])["scale"],
        }
    write_json(out / f"{args.name}.json", report)
    lines = [
        f"Command: `{made_by['command']}` (git {made_by['git']['revision']}); N_G = {n}, "
        f"{config.sample.sampler.upper()} {config.sample.num_steps} steps, seed {seed}",
        "",
        "| variant | lambda | AMS high % | distinct (high) | samples to "
        f"{k} | landed % | partnered % | s / sample | clean acc. |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = f"{r['clean_accuracy']:.3f}" if r["clean_accuracy"] is not None else "-"
        landed = r["landed"] if r["landed"] is not None else "-"
        lines.append(
            f"| {r['variant']} | {r['scale']:g} | {r['ams']['high']:.1f} | {r['distinct']} | "
            f"{r['samples_to_k'] or 'never'} | {landed} | {r['partnered']} | {r['seconds_per_sample']:.3f} | {acc} |"
        )
    lines += ["", "Lambda each reading picks (partnered: the attacker's, no training set; AMS high: the scorer's):"]
    for method in ("side", "cond"):
        best = report[f"{method}_best"]
        lines.append(f"- {method}: partnered {best['by_partnered']:g}, AMS high {best['by_ams_high']:g}")
    lines += ["", "Classifiers (held-out accuracy, clean and per timestep quartile; chance "]
    lines[-1] += f"{report['classifiers']['side']['chance']:.3f}):"
    for name, c in report["classifiers"].items():
        per_q = ", ".join(f"{a:.2f}" if a is not None else "-" for a in c["accuracy_per_quartile"])
        clean = "-" if c["clean_accuracy"] is None else f"{c['clean_accuracy']:.3f}"
        lines.append(f"- {name}: {c['steps']} steps, clean {clean}, per quartile [{per_q}]")
    write_text(out / f"{args.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
