"""Which surrogate set-up makes guidance extract more? A grid over sampler, K, kept clusters, what
dropped clusters become, and lambda, scored like benchmarks/extraction.py but without the run store.

    python -m benchmarks.grid --device cuda                          # about 8 minutes on one H200
    python -m benchmarks.grid --device cuda --samplers ddpm --ks 100,200 --keeps 30,50 \\
        --scales 1,2,4,8 --seeds 0,1,2                               # about 3 minutes

For each sampler: N_syn plain samples (seed 1), pixel features, K-means at each K; "keep n" keeps
the n most cohesive clusters (tau = the n-th cohesion, printed); for each way of labelling the
dropped clusters' samples a time-dependent classifier is trained, then N_G samples are drawn at each
lambda and seed (targets uniform over the kept classes). Plain sampling at the same seeds is the
baseline. One JSON line per run goes to stdout and to OUT_DIR/grid.jsonl (appended, after a line
saying how the run was made), and a table of means over seeds is printed at the end. On a CPU the
default grid takes hours: shrink it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import defaultdict

import numpy as np
import torch

from benchmarks.provenance import add_output_flags, output_dir, provenance
from side_core.classifier import classifier_guidance, train_classifier
from side_core.cluster import cluster
from side_core.config import UNKEPT, ClassifierConfig, ClassifierTrainConfig, ClusterConfig, SampleConfig
from side_core.data import load_training_set
from side_core.embed import embed
from side_core.metrics import bands_from_train, distinct_curve, samples_to_k
from side_core.models import load_model
from side_core.neighbours import make_similarity, search, train_nn_similarity
from side_core.sampling import sample


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--n-syn", type=int, default=4096)
    p.add_argument("--n-samples", type=int, default=512, help="N_G per run")
    p.add_argument("--steps", type=int, default=25, help="sampler steps")
    p.add_argument("--batch-size", type=int, default=512, help="samples per sampler batch (noise depends on it)")
    p.add_argument("--classifier-steps", type=int, default=ClassifierTrainConfig().steps)
    p.add_argument("--samplers", default="ddim,ddpm")
    p.add_argument("--ks", default="100,200,400")
    p.add_argument("--keeps", default="40,80,160", help="how many of the most cohesive clusters to keep")
    p.add_argument("--unkept", default=",".join(UNKEPT), help="what dropped clusters' samples become")
    p.add_argument("--scales", default="1,2,4,8,16")
    p.add_argument("--seeds", default="0", help="generation seeds of every run (1 is the synthetic set's)")
    p.add_argument("--k-faces", default="15,20,28", help="K values of samples-to-K")
    add_output_flags(p)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    model = load_model(args.model, device=args.device)
    device = model.device
    data = load_training_set("default", model.channels, model.size)
    similarity = make_similarity()
    train_vectors = similarity.vectors(data.images)
    bands = bands_from_train(train_nn_similarity(train_vectors)[0])
    k_faces = ints(args.k_faces)
    out = output_dir(args, ["grid.jsonl"]) / "grid.jsonl"
    with out.open("a") as f:  # the first line of each run says how it was made
        f.write(json.dumps({"provenance": provenance()}) + "\n")
    rows: list[dict] = []

    def score(images: torch.Tensor) -> dict:
        n = len(images)
        result = search(similarity.vectors(images), train_vectors, k=1, device=device)
        copy = result.max_similarity >= bands.high[0]
        # Distinct faces here are the copied *nearest* training images (the engine's "extracted"
        # also counts other training images inside the band; the two differ by a face or two).
        first = np.full(len(train_vectors), -1)
        for i in np.flatnonzero(copy)[::-1]:
            first[result.index[i, 0]] = i
        curve = distinct_curve(first, n)
        return {
            "ams_high": round(100 * float(copy.mean()), 1),
            **{f"distinct_{m}": int(curve[min(m, n) - 1]) for m in (64, 128, n)},
            "samples_to_k": {k: samples_to_k(curve, k) for k in k_faces},
        }

    def emit(row: dict) -> None:
        row["t"] = round(time.perf_counter() - started)
        rows.append(row)
        print(json.dumps(row), flush=True)
        with out.open("a") as f:  # appended line by line: a run cut short keeps what it measured
            f.write(json.dumps(row) + "\n")

    def draw(config: SampleConfig, seed: int, guidance=None) -> torch.Tensor:
        return sample(model, args.n_samples, config, torch.Generator().manual_seed(seed), guidance).images

    for sampler in args.samplers.split(","):
        plain = SampleConfig(sampler=sampler, num_steps=args.steps, batch_size=args.batch_size)
        synthetic = sample(model, args.n_syn, plain, torch.Generator().manual_seed(1)).images
        for seed in ints(args.seeds):
            emit({"sampler": sampler, "method": "uncond", "seed": seed, **score(draw(plain, seed))})
        features = embed(synthetic, "pixels")
        for k in ints(args.ks):
            cohesion = np.sort(cluster(features, ClusterConfig(k=k, tau=0.0)).cohesion)[::-1]
            for keep in (n for n in ints(args.keeps) if n < k):
                tau = float(cohesion[keep - 1])
                for unkept in args.unkept.split(","):
                    clustering = cluster(features, ClusterConfig(k=k, tau=tau, unkept=unkept))
                    classifier, report = train_classifier(
                        synthetic,
                        torch.from_numpy(clustering.labels),
                        model.scheduler,
                        ClassifierConfig(n_classes=clustering.n_labels, channels=model.channels, size=model.size),
                        ClassifierTrainConfig(steps=args.classifier_steps),
                        device=device,
                        n_targets=clustering.n_classes,
                    )
                    for scale in (float(s) for s in args.scales.split(",")):
                        for seed in ints(args.seeds):
                            rng = np.random.default_rng(seed + 7)
                            targets = torch.from_numpy(rng.integers(0, clustering.n_classes, args.n_samples))
                            guided = dataclasses.replace(plain, guidance_scale=scale)
                            images = draw(guided, seed, classifier_guidance(classifier, targets.to(device)))
                            emit(
                                {
                                    "sampler": sampler,
                                    "method": "side",
                                    "k": k,
                                    "keep": clustering.n_classes,
                                    "tau": round(tau, 3),
                                    "unkept": unkept,
                                    "scale": scale,
                                    "seed": seed,
                                    **score(images),
                                    "accuracy": [round(a, 2) for a in report.accuracy],
                                }
                            )
    print_means(rows, k_faces)


def print_means(rows: list[dict], k_faces: list[int]) -> None:
    """Means over seeds, one line per configuration (samples-to-K: 'never' if any seed missed)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    keys = ("sampler", "method", "k", "keep", "tau", "unkept", "scale")
    for row in rows:
        groups[tuple(row.get(k) for k in keys)].append(row)
    print("\n| " + " | ".join(keys) + " | AMS high | distinct @64 | " + " | ".join(f"to {k}" for k in k_faces) + " |")
    print("|---" * (len(keys) + 2 + len(k_faces)) + "|")
    for key, group in groups.items():
        cost = []
        for k in k_faces:
            values = [r["samples_to_k"][k] for r in group]
            cost.append("never" if None in values else f"{np.mean(values):.0f}")
        cells = ["" if v is None else str(v) for v in key]
        ams = np.mean([r["ams_high"] for r in group])
        early = np.mean([r["distinct_64"] for r in group])
        print(f"| {' | '.join(cells)} | {ams:.1f} | {early:.1f} | {' | '.join(cost)} |")


if __name__ == "__main__":
    main()
