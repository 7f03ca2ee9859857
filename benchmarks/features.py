"""Which feature clusters a model's samples by the training image they copy, and how much could
guidance toward those clusters extract at best?

    python -m benchmarks.features                     # N_syn 4,096, K 100 (the bundled stages)

For each feature (the UNet's mid-block activations, standardized pixels) this clusters the same
plain samples and reports the cosine silhouette, the cohesion range, and the purity: among samples
that are copies (high band), the share whose copied training image is the most common one in their
cluster. Then, for each tau, the **ideal SIDE**: what guidance at lambda = 1 with a perfect
classifier would yield, i.e. N_G draws that each pick a kept class uniformly and then a uniform
sample of that class, either the class's own K-means members (``unkept=background``) or every
sample labelled with it (``unkept=nearest``), against N_G uniform draws from all samples (plain
sampling). It reports copies (AMS high), distinct copied faces and the draws needed to copy K
faces, averaged over repeats. These use the training set, so they are an analysis, not part of the
attack. Writes benchmarks/results/features.json.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter

import numpy as np
import torch

from benchmarks.provenance import add_output_flags, output_dir, provenance
from side_core.cluster import l2_normalise
from side_core.config import ClusterConfig, ExtractionConfig, SampleConfig
from side_core.data import load_training_set
from side_core.metrics import in_band
from side_core.models import load_model
from side_core.pipeline import BUNDLED_STORE, Run
from side_core.store import read_array, write_json


def purity(clusters: np.ndarray, copied: np.ndarray, is_copy: np.ndarray) -> float:
    """Share of copy-samples whose copied image is their cluster's most common copied image."""
    agree = 0
    for c in np.unique(clusters[is_copy]):
        members = copied[is_copy & (clusters == c)]
        agree += Counter(members.tolist()).most_common(1)[0][1]
    return agree / max(1, int(is_copy.sum()))


def draw_statistics(draws: np.ndarray, copied: np.ndarray, is_copy: np.ndarray, k_faces: int) -> tuple:
    """(copy share, distinct copied faces, draws needed to copy k_faces faces or None) of one sequence."""
    seen: set[int] = set()
    needed = None
    for i, sample in enumerate(draws, start=1):
        if is_copy[sample]:
            seen.add(int(copied[sample]))
            if needed is None and len(seen) >= k_faces:
                needed = i
    return float(is_copy[draws].mean()), len(seen), needed


def ideal_side(
    classes: list[np.ndarray], copied: np.ndarray, is_copy: np.ndarray, n: int, k_faces: int, repeats: int = 20
) -> dict:
    """Mean statistics of ``repeats`` sequences of n draws: a uniform class, then a uniform member.
    ``classes=[all samples]`` is plain sampling."""
    rng = np.random.default_rng(0)
    stats = []
    for _ in range(repeats):
        picks = rng.integers(0, len(classes), n)
        draws = np.array([rng.choice(classes[c]) for c in picks])
        stats.append(draw_statistics(draws, copied, is_copy, k_faces))
    needed = [s[2] for s in stats]
    return {
        "ams_high": round(100 * float(np.mean([s[0] for s in stats])), 1),
        "distinct": round(float(np.mean([s[1] for s in stats])), 1),
        "samples_to_k": None if None in needed else round(float(np.mean(needed)), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="bundled name, model folder or hub id")
    p.add_argument("--n-syn", type=int, default=ExtractionConfig().n_syn, help="plain samples to cluster")
    p.add_argument("--k", type=int, default=ClusterConfig().k, help="K-means clusters")
    p.add_argument(
        "--sampler", default=SampleConfig().sampler, choices=("ddim", "ddpm"), help="plain sampler (%(default)s)"
    )
    p.add_argument("--features", default="unet,pixels", help="features to compare")
    p.add_argument("--store", default="runs/benchmark", help="run store")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--taus", default="0.5,0.85,0.87,0.89,0.91,0.93", help="cohesion thresholds for the ideal SIDE")
    p.add_argument("--n-samples", type=int, default=512, help="N_G of the ideal SIDE")
    p.add_argument("--k-faces", type=int, default=30, help="K of samples-to-K (default 30)")
    add_output_flags(p)
    args = p.parse_args()
    out = output_dir(args, ["features.json"])
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    data = load_training_set("default", model.channels, model.size)
    run = Run(args.store, model, data, read_only_roots=(BUNDLED_STORE,))
    synthetic = run.generate(args.n_syn, ExtractionConfig().seed + 1, SampleConfig(sampler=args.sampler))
    sims, idx = run.neighbours(run.score(synthetic))
    is_copy = in_band(sims[:, 0], run.bands().high)
    rows, ideal = [], []
    for feature in args.features.split(","):
        stage = run.cluster(run.features(synthetic, feature), ClusterConfig(feature=feature, k=args.k, tau=0.0))
        clustering = run.clustering(stage)
        rows.append(
            {
                "feature": feature,
                "k": args.k,
                "silhouette": stage.summary()["silhouette"],
                "cohesion_min": float(clustering.cohesion.min()),
                "cohesion_max": float(clustering.cohesion.max()),
                "purity": round(purity(clustering.kmeans_labels, idx[:, 0], is_copy), 3),
                "n_copies": int(is_copy.sum()),
            }
        )
        print(rows[-1], flush=True)
        z = l2_normalise(read_array(run.features(synthetic, feature).file("features.npy")))
        for tau in (float(t) for t in args.taus.split(",")):
            kept = np.flatnonzero(clustering.cohesion >= tau)
            if len(kept) < 2:
                continue
            nearest = np.argmax(z @ clustering.centroids[kept].T, axis=1)  # the paper's relabelling
            row = {"feature": feature, "tau": tau, "classes": len(kept)}
            for name, classes in (
                ("background", [np.flatnonzero(clustering.kmeans_labels == c) for c in kept]),
                ("nearest", [np.flatnonzero(nearest == c) for c in range(len(kept))]),
            ):
                row[name] = ideal_side(classes, idx[:, 0], is_copy, args.n_samples, args.k_faces)
            ideal.append(row)
            print(row, flush=True)
    plain = ideal_side([np.arange(len(is_copy))], idx[:, 0], is_copy, args.n_samples, args.k_faces)
    print({"plain": plain})
    write_json(
        out / "features.json",
        {
            **provenance(),
            "model": model.source,
            "n_syn": args.n_syn,
            "sampler": args.sampler,
            "rows": rows,
            "ideal_side": {"n_samples": args.n_samples, "k_faces": args.k_faces, "plain": plain, "rows": ideal},
        },
    )


if __name__ == "__main__":
    main()
