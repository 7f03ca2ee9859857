"""Which feature clusters a model's samples by the training image they copy, and how much could
guidance toward those clusters extract at best?

    python -m benchmarks.features --threads 1       # N_syn 4,096, K 100: the bundled plain samples

Everything up to the clusters is the engine's (``build_surrogate`` without classifiers: the N_syn
plain samples, their features, K-means and the keep rule, stored in --store and reused from the
bundled store where they match), and so is a copy: a sample whose nearest training image is in the
high band of the run's bands (``side_core.kinds.scoring.bands``); the faces it copies are the training
images in that band (the score's neighbours), as in the engine's ``extracted``.

For each feature (the UNet's mid-block activations, pixels) this reports the cosine silhouette, the
cohesion range, and the purity: among samples that are copies, the share whose nearest training
image is the most common one among the copies in their K-means cluster. Then, for each keep rule
(--taus, --keep-tops), the **ideal SIDE**: what guidance at lambda = 1 with a perfect classifier
would yield, i.e. N_G draws that each pick a surrogate class uniformly and then a uniform sample
labelled with it, the class's own K-means members (``unkept=background``) or also the dropped
clusters' samples nearest to it (``unkept=nearest``), against N_G uniform draws from all samples
(plain sampling). It reports copies (AMS high), distinct copied faces and the draws needed to copy
K faces, averaged over repeats. These use the training set, so they are an analysis, not part of
the attack. Writes features.json (with the command, sampler and git revision) to --out-dir.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections import Counter

import numpy as np
import torch

from benchmarks.provenance import add_output_flags, output_dir, provenance
from side_core.cli import add_extraction_flags, extraction_config, open_run
from side_core.config import ExtractionConfig
from side_core.embed import FEATURES
from side_core.errors import SideError
from side_core.kinds.generation import Generation
from side_core.kinds.scoring import Score, bands
from side_core.metrics import distinct_curve, in_band, samples_to_k
from side_core.pipeline import build_surrogate
from side_core.run import Run
from side_core.store import write_json

log = logging.getLogger("features")


def purity(clusters: np.ndarray, copied: np.ndarray, is_copy: np.ndarray) -> float:
    """Share of copy-samples whose copied image is their cluster's most common copied image."""
    agree = 0
    for c in np.unique(clusters[is_copy]):
        members = copied[is_copy & (clusters == c)]
        agree += Counter(members.tolist()).most_common(1)[0][1]
    return agree / max(1, int(is_copy.sum()))


@dataclasses.dataclass(frozen=True)
class Copies:
    """Which training images each sample copies, by the engine's bands: (N, k) neighbours of the
    score, and which of them are in the high band."""

    index: np.ndarray  # (N, k) training indices, nearest first
    in_high: np.ndarray  # (N, k) bool
    n_train: int

    @property
    def is_copy(self) -> np.ndarray:
        return self.in_high[:, 0]  # the nearest training image is in the high band

    def statistics(self, draws: np.ndarray, k_faces: int) -> tuple[float, int, int | None]:
        """(copy share, distinct copied training images, draws needed to copy k_faces or None) of
        one sequence of sample ids, as the engine counts them (metrics.distinct_curve)."""
        n = len(draws)
        row, col = np.nonzero(self.in_high[draws])
        first = np.full(self.n_train, n, dtype=np.int64)
        np.minimum.at(first, self.index[draws][row, col], row)
        first[first == n] = -1
        curve = distinct_curve(first, n)
        return float(self.is_copy[draws].mean()), int(curve[-1]), samples_to_k(curve, k_faces)


def copies_of(run: Run, generation: Generation, k: int = 3) -> Copies:
    """The copies among a generation, scored with enough neighbours to hold every training image in
    the high band (rescored with more if a sample's k-th neighbour is still in it)."""
    high = bands(run).high
    while True:
        sims, idx = Score.make(run, generation, k=k).neighbours()
        in_high = in_band(sims, high)
        if not in_high[:, -1].any() or k >= len(run.data):
            return Copies(idx, in_high, len(run.data))
        k *= 2


def ideal_side(classes: list[np.ndarray], copies: Copies, n: int, k_faces: int, repeats: int) -> dict:
    """Mean statistics of ``repeats`` sequences of n draws: a uniform class, then a uniform member.
    ``classes=[all samples]`` is plain sampling."""
    rng = np.random.default_rng(0)
    stats = []
    for _ in range(repeats):
        picks = rng.integers(0, len(classes), n)
        draws = np.array([rng.choice(classes[c]) for c in picks])
        stats.append(copies.statistics(draws, k_faces))
    needed = [s[2] for s in stats]
    return {
        "ams_high": round(100 * float(np.mean([s[0] for s in stats])), 1),
        "distinct": round(float(np.mean([s[1] for s in stats])), 1),
        "samples_to_k": None if None in needed else round(float(np.mean(needed)), 1),
    }


def feature_row(feature: str, clusters, clustering, copies: Copies) -> dict:
    """How one feature's K-means clusters (any keep rule: K-means is the same) sort the copies."""
    return {
        "feature": feature,
        "k": len(clustering.cohesion),
        "silhouette": clusters.summary()["silhouette"],
        "cohesion_min": round(float(clustering.cohesion.min()), 4),
        "cohesion_max": round(float(clustering.cohesion.max()), 4),
        "purity": round(purity(clustering.kmeans_labels, copies.index[:, 0], copies.is_copy), 3),
        "n_copies": int(copies.is_copy.sum()),
        "clusters": clusters.name,
    }


def with_rule(config: ExtractionConfig, feature: str, rule: tuple[str, float | None], unkept: str) -> ExtractionConfig:
    name, value = rule
    cluster = dataclasses.replace(
        config.cluster,
        feature=feature,
        keep_top=value if name == "keep_top" else config.cluster.keep_top,
        tau=value if name == "tau" else None,
        unkept=unkept,
    )
    return dataclasses.replace(config, cluster=cluster)


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_extraction_flags(p, report=False, store="runs/benchmark")
    p.set_defaults(n_samples=512)  # N_G of the ideal SIDE draws
    needs_no_file = ",".join(name for name, feature in FEATURES.items() if not feature.needs_sscd_file)
    p.add_argument("--features", default=needs_no_file, help="features to compare (replaces --feature; %(default)s)")
    p.add_argument("--taus", default="0.5,0.85,0.87,0.89,0.91,0.93", help="keep rules: the paper's cohesion thresholds")
    p.add_argument("--keep-tops", default="0.5", help="keep rules: the most cohesive fraction of the clusters")
    p.add_argument("--k-faces", type=int, default=30, help="K of samples-to-K (default 30)")
    p.add_argument("--repeats", type=int, default=20, help="sequences of N_G draws averaged per rule (default 20)")
    add_output_flags(p)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = extraction_config(args)
        rules = [("tau", t) for t in floats(args.taus)] + [("keep_top", f) for f in floats(args.keep_tops)]
        features = [f.strip() for f in args.features.split(",") if f.strip()]
        for feature in features:  # every config checked before any work
            for rule in rules:
                with_rule(config, feature, rule, "background")
    except (SideError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    out = output_dir(args, ["features.json"])
    made_by = provenance()
    try:
        run = open_run(args, args.store)  # reuses the bundled stages where they match
    except SideError as err:
        raise SystemExit(f"error: {err}") from None
    rows, ideal, skipped = [], [], []
    copies, synthetic = None, None
    try:
        for feature in features:
            first = True
            for rule in rules:
                row = {"feature": feature, "rule": rule[0], "value": rule[1]}
                for unkept in ("background", "nearest"):
                    try:
                        surrogate = build_surrogate(run, with_rule(config, feature, rule, unkept), (), say=log.debug)
                    except SideError as err:  # e.g. no two clusters reach this tau on this feature
                        skipped.append({**row, "why": str(err)})
                        log.info("skipped %s: %s", row, err)
                        break
                    if copies is None:  # the same plain samples for every feature and rule
                        synthetic = surrogate.synthetic.name
                        copies = copies_of(run, surrogate.synthetic)
                    clustering = surrogate.clusters.clustering()
                    if first:  # K-means is the same for every keep rule: one row per feature
                        first = False
                        rows.append(feature_row(feature, surrogate.clusters, clustering, copies))
                        log.info("%s", rows[-1])
                    classes = [np.flatnonzero(clustering.labels == c) for c in range(clustering.n_classes)]
                    row["classes"] = clustering.n_classes
                    row["cohesion_cut"] = round(float(clustering.cohesion[clustering.kept].min()), 4)
                    row[unkept] = ideal_side(classes, copies, config.n_samples, args.k_faces, args.repeats)
                else:
                    ideal.append(row)
                    log.info("%s", row)
    except SideError as err:
        raise SystemExit(f"error: {err}") from None
    if copies is None:
        raise SystemExit("error: no keep rule kept two clusters on any feature: lower --taus or use --keep-tops.")
    plain = ideal_side([np.arange(len(copies.is_copy))], copies, config.n_samples, args.k_faces, args.repeats)
    log.info("plain: %s", plain)
    write_json(
        out / "features.json",
        {
            **made_by,
            "model": run.model.source,
            "sampler": config.sample.sampler,
            "n_syn": config.n_syn,
            "k": config.cluster.k,
            "surrogate_seed": config.surrogate_seed,
            "synthetic": synthetic,
            "rows": rows,
            "ideal_side": {
                "n_samples": config.n_samples,
                "k_faces": args.k_faces,
                "repeats": args.repeats,
                "plain": plain,
                "rows": ideal,
            },
            "skipped": skipped,
        },
    )


if __name__ == "__main__":
    main()
