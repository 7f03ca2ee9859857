"""The surrogate condition (SIDE steps 1-5, made by side_core.pipeline.build_surrogate): plain samples,
their features, classes and near-identical pairs, and the classifiers trained on them; what a guided
generation aims at, and what plain sampling reaches by the pool's own evidence."""

from __future__ import annotations

from dataclasses import dataclass

from side_core.allocation import ALLOCATIONS, Target, allocation_weights, near_identical_groups
from side_core.classifier import ClassifierReport
from side_core.config import POOL_LABELS
from side_core.kinds.classifier import Classifier, Evaluation
from side_core.kinds.clusters import Clusters, NearIdentical
from side_core.kinds.features import Features
from side_core.kinds.generation import Generation
from side_core.kinds.scoring import Score
from side_core.richness import attacker_reach, scorer_reach


@dataclass
class Surrogate:
    """The surrogate-condition stages: the pool of plain samples, their features, clusters and
    near-identical pairs, and the classifiers."""

    synthetic: Generation  # the pool: N_syn plain samples
    features: Features
    clusters: Clusters
    near_identical: NearIdentical  # near-identical pairs among the pool's samples
    # method -> classifier: "side" time-dependent, "cond" time-blind, "shuffled" time-dependent on shuffled labels
    classifiers: dict[str, Classifier]
    allocation: str = "uniform"
    repel: bool = False  # guided samples are pushed off the pool's near-identical samples

    def target(self, method: str, cls: int | None = None) -> Target:
        """Aim at class ``cls`` of the method's classifier, or at all its classes spread by the
        allocation (weighted by the pool's evidence: no training data)."""
        classifier = self.classifiers[method]
        if cls is not None:
            return Target(classifier.name, classifier.n_classes, cls)
        weights = None
        if ALLOCATIONS.get(self.allocation).weighted:
            kind = classifier.label_kind
            kept = self.clusters.pool_labels(kind, self.near_identical) if kind in POOL_LABELS else None
            labels, partner = self.clusters.labels(), self.near_identical.partner()
            weights = allocation_weights(self.allocation, labels, classifier.n_classes, partner, kept)
        avoid = self.near_identical.name if self.repel else None
        return Target(classifier.name, classifier.n_classes, allocation=self.allocation, weights=weights, avoid=avoid)

    def classifier_report(self, method: str, evaluation: Evaluation | None = None) -> ClassifierReport:
        """The held-out accuracies of the method's classifier, per timestep quartile and clean, and
        with its evaluation stage at each of the sampler's timesteps."""
        summary = self.classifiers[method].summary()
        if evaluation is not None:
            found = evaluation.summary()
            summary = {**summary, "timesteps": found["timesteps"], "timestep_accuracy": found["timestep_accuracy"]}
        return ClassifierReport.from_dict(summary)

    def seconds(self, method: str) -> dict[str, float]:
        """Wall time of each surrogate stage behind a guided method."""
        stages = {"synthetic": self.synthetic, "features": self.features, "clusters": self.clusters}
        return {
            name: stage.summary()["seconds"]
            for name, stage in {**stages, "classifier": self.classifiers[method]}.items()
        }

    def reach(self, pool_score: Score) -> dict[str, dict]:
        """How many images plain sampling reaches, estimated from the pool (side_core.richness): by the
        attacker from its near-identical groups alone, and by the scorer from the images the pool
        copies (``pool_score``: the pool's score)."""
        copied = pool_score.copied()
        groups = near_identical_groups(self.near_identical.partner())
        return {"attacker": attacker_reach(groups).to_json(), "scorer": scorer_reach(copied, len(copied)).to_json()}
