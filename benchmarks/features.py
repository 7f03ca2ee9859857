"""Which feature clusters a model's samples by the training image they copy?

    python -m benchmarks.features --n-syn 1024 --k 40

For each feature (the UNet's mid-block activations, standardized pixels) this clusters the same
plain samples and reports the cosine silhouette, the cohesion range, and the purity: among samples
that are copies (high band), the share whose copied training image is the most common one in their
cluster. Purity uses the training set, so it is an analysis, not part of the attack. Writes
benchmarks/results/features.json.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from side_core.config import ClusterConfig, ExtractionConfig, SampleConfig
from side_core.data import load_training_set
from side_core.metrics import in_band
from side_core.models import load_model
from side_core.pipeline import Run
from side_core.store import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def purity(clusters: np.ndarray, copied: np.ndarray, is_copy: np.ndarray) -> float:
    """Share of copy-samples whose copied image is their cluster's most common copied image."""
    agree = 0
    for c in np.unique(clusters[is_copy]):
        members = copied[is_copy & (clusters == c)]
        agree += Counter(members.tolist()).most_common(1)[0][1]
    return agree / max(1, int(is_copy.sum()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="bundled name, model folder or hub id")
    p.add_argument("--n-syn", type=int, default=ExtractionConfig().n_syn, help="plain samples to cluster")
    p.add_argument("--k", type=int, default=ClusterConfig().k, help="K-means clusters")
    p.add_argument("--features", default="unet,pixels", help="features to compare")
    p.add_argument("--store", default="runs/benchmark", help="run store")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    run = Run(args.store, model, load_training_set("default", model.channels, model.size))
    synthetic = run.generate(args.n_syn, ExtractionConfig().seed + 1, SampleConfig())
    sims, idx = run.neighbours(run.score(synthetic))
    is_copy = in_band(sims[:, 0], run.bands().high)
    rows = []
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
    write_json(RESULTS / "features.json", {"model": model.source, "n_syn": args.n_syn, "rows": rows})


if __name__ == "__main__":
    main()
