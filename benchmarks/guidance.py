"""Which guidance extracts more: the paper's noisy classifier on x_t, the clean classifier on x_t,
or a better-trained noisy classifier?

    python -m benchmarks.guidance --threads 1                 # N_G 128, lambda 2, 4, 8, the bundled model

Every variant draws the same N_G samples (same per-shard seeds, so sample i starts from the same
noise) aimed at the same per-sample classes (uniform over the surrogate classes, as the engine draws
them), and is scored against the training set by the engine (``Run.score``):

- ``uncond``: plain sampling (lambda 0), the reference;
- ``side``: the engine's SIDE path, the time-dependent classifier p(y | x_t, t) on x_t (the paper);
- ``cond``: the engine's Cond path, the time-blind (clean) classifier applied to x_t as if clean;
- ``side-long``: SIDE with a time-dependent classifier trained ``--long-steps`` steps.

Per variant: AMS high (copies), distinct training images copied (high band), the samples needed to
copy K distinct images (K = half the best variant's distinct count, as in benchmarks.extraction), the
share of samples
whose nearest K-means centroid is their target's cluster ("on target"), seconds per sample (from the
stage summaries: wall time on a shared machine), and the guiding classifier's held-out clean
accuracy. The surrogate stages come from the bundled store where they match (``--store`` defaults to
runs/guidance/store; new stages go there, so a rerun is instant). Guidance through the model's
estimate of the clean image, measured here before, is in benchmarks/README.md.
Writes benchmarks/results/guidance.json and guidance.md.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace

import numpy as np
import torch

from benchmarks.provenance import add_output_flags, output_dir, provenance
from side_core.classifier import ClassifierReport
from side_core.cli import add_extraction_flags, extraction_config, open_run
from side_core.cluster import l2_normalise
from side_core.config import ExtractionConfig
from side_core.embed import embed
from side_core.metrics import distinct_curve, samples_to_k
from side_core.pipeline import Run, Surrogate, Target, build_surrogate
from side_core.store import Stage, write_json, write_text

log = logging.getLogger("guidance")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_extraction_flags(p, report=False, store="runs/guidance/store")
    p.set_defaults(n_samples=128)
    p.add_argument("--scales", default="2,4,8", help="guidance scales of every guided variant (default %(default)s)")
    p.add_argument(
        "--long-steps",
        type=int,
        default=4500,
        help="training steps of the better noisy classifier (0: skip that variant; default %(default)s)",
    )
    add_output_flags(p)
    return p.parse_args()


def on_target(run: Run, surrogate: Surrogate, config: ExtractionConfig, generation: Stage) -> float | None:
    """% of a guided generation's samples whose nearest K-means centroid (in the clustering feature)
    is their target class's cluster: whether guidance reached the class, judged by no classifier."""
    targets = run.targets(generation)
    if targets is None:
        return None
    clustering = run.clustering(surrogate.clusters)
    features = l2_normalise(embed(run.images(generation), config.cluster.feature, run.model, run.sscd_path))
    nearest = np.argmax(features @ clustering.centroids.T, axis=1)
    return round(100 * float((nearest == clustering.kept[targets.numpy()]).mean()), 2)


def classifier_facts(stage: Stage) -> dict:
    report = ClassifierReport.from_dict(stage.summary())
    return {
        "stage": stage.path.name,
        "time_dependent": stage.inputs["config"]["time_dependent"],
        "steps": stage.inputs["train"]["steps"],
        **{k: report.to_dict()[k] for k in ("clean_accuracy", "quartiles", "chance")},
        "accuracy_per_quartile": report.to_dict()["accuracy"],
        "training_seconds": stage.summary()["seconds"],
    }


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = output_dir(args, ["guidance.json", "guidance.md"])
    made_by = provenance()
    config = extraction_config(args)
    run = open_run(args, args.store)  # reuses the bundled stages where they match
    scales = [float(s) for s in args.scales.split(",") if s.strip()]

    surrogate = build_surrogate(run, config, ("side", "cond"))
    classifiers = {"side": surrogate.classifiers["side"], "cond": surrogate.classifiers["cond"]}
    targets = {name: surrogate.target(name) for name in classifiers}

    # (variant, guiding classifier, what it sees, scale); the long classifier is trained when first needed
    variants = [("uncond", None, None, 0.0)]
    for scale in scales:
        variants += [("side", "side", "x_t", scale), ("cond", "cond", "x_t", scale)]
    if args.long_steps:
        variants += [("side-long", "side-long", "x_t", scale) for scale in scales]

    n, seed = config.n_samples, config.seed
    rows, engine_targets = [], {}
    for variant, guide, sees, scale in variants:
        if guide == "side-long" and guide not in classifiers:
            classifiers[guide] = run.classifier(
                surrogate.synthetic,
                surrogate.clusters,
                time_dependent=True,
                train_config=replace(config.classifier_train, steps=args.long_steps),
                width=config.classifier_width,
            )
            targets[guide] = Target(classifiers[guide].path.name, classifiers[guide].summary()["n_classes"])
        log.info("%s at lambda %g: %d samples", variant, scale, n)
        sample_config = replace(config.sample, guidance_scale=scale)
        generation = run.generate(n, seed, sample_config, targets[guide] if guide else None)
        if guide:  # every guided variant aims sample i at the same class
            drawn = run.targets(generation)
            engine_targets.setdefault(scale, drawn)
            if not torch.equal(drawn, engine_targets[scale]):
                raise SystemExit(f"error: {variant} at lambda {scale:g} aimed at other classes than the engine's")
        score = run.score(generation)
        summary = score.summary()
        rows.append(
            {
                "variant": variant,
                "classifier": guide,
                "classifier_sees": sees,
                "scale": scale,
                "ams": summary["ams"],
                "ums": summary["ums"],
                "p95": summary["p95"],
                "distinct": len(summary["extracted"]),
                "on_target": on_target(run, surrogate, config, generation),
                "seconds_per_sample": round(generation.summary()["seconds"] / n, 4),
                "clean_accuracy": round(ClassifierReport.from_dict(classifiers[guide].summary()).clean_accuracy, 3)
                if guide
                else None,
                "generation": generation.path.name,
                "curve": distinct_curve(run.first_hit(score, "high"), n).tolist(),
            }
        )
        log.info("  AMS high %.1f%%, distinct %d", summary["ams"]["high"], rows[-1]["distinct"])

    k = max(1, max(r["distinct"] for r in rows) // 2)  # as benchmarks.extraction: half the best final count
    for r in rows:
        r["samples_to_k"] = samples_to_k(r["curve"], k)
    report = {
        **made_by,
        "model": run.model.facts(),
        "data": run.data.facts(),
        "similarity": {**run.similarity.to_dict(), "bands": run.bands().to_dict()},
        "config": config.to_dict(),
        "sampler": config.sample.to_dict(),
        "clusters": {k: surrogate.clusters.summary().get(k) for k in ("n_classes", "in_classes", "silhouette")},
        "classifiers": {name: classifier_facts(stage) for name, stage in classifiers.items()},
        "samples_to_k": k,
        "rows": rows,
    }
    write_json(out / "guidance.json", report)
    lines = [
        f"Command: `{made_by['command']}` (git {made_by['git']['revision']}); N_G = {n}, "
        f"{config.sample.sampler.upper()} {config.sample.num_steps} steps, seed {seed}",
        "",
        "| variant | classifier sees | lambda | AMS high % | distinct (high) | samples to "
        f"{k} | on target % | s / sample | clean acc. |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = f"{r['clean_accuracy']:.3f}" if r["clean_accuracy"] is not None else "-"
        aimed = r["on_target"] if r["on_target"] is not None else "-"
        lines.append(
            f"| {r['variant']} | {r['classifier_sees'] or '-'} | {r['scale']:g} | {r['ams']['high']:.1f} | "
            f"{r['distinct']} | {r['samples_to_k'] or 'never'} | {aimed} | "
            f"{r['seconds_per_sample']:.3f} | {acc} |"
        )
    lines += ["", "Classifiers (held-out accuracy, clean and per timestep quartile; chance "]
    lines[-1] += f"{report['classifiers']['side']['chance']:.3f}):"
    for name, c in report["classifiers"].items():
        per_q = ", ".join(f"{a:.2f}" if a is not None else "-" for a in c["accuracy_per_quartile"])
        lines.append(f"- {name}: {c['steps']} steps, clean {c['clean_accuracy']:.3f}, per quartile [{per_q}]")
    write_text(out / "guidance.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
