"""The surrogate classifier (:class:`Classifier`), its accuracy where guidance acts (:class:`Evaluation`),
and where the samples it guided landed among its classes (:class:`Landed`)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from side_core import distributed
from side_core.classifier import (
    Classifier as Model,
)
from side_core.classifier import (
    classifier_config,
    held_out_split,
    load_classifier,
    save_classifier,
    timestep_accuracy,
    train_classifier,
)
from side_core.cluster import shuffled_labels
from side_core.config import POOL_LABELS, ClassifierTrainConfig, ExtractionConfig, SampleConfig, check_seed
from side_core.errors import SideError
from side_core.kinds.clusters import LABELS, Clusters, NearIdentical
from side_core.kinds.features import Features
from side_core.kinds.generation import Generation
from side_core.run import Run, Stored
from side_core.sampling import make_scheduler
from side_core.store import finite_or_none, write_array

log = logging.getLogger(__name__)


class Classifier(Stored):
    """A surrogate classifier trained on a clustered generation's samples and their surrogate labels.
    Files: ``classifier.safetensors`` and ``classifier.json`` (side_core.classifier.save_classifier)."""

    KIND = "classifier"

    @classmethod
    def make(
        cls,
        run: Run,
        clusters: Clusters,
        near_identical: NearIdentical,
        config: ExtractionConfig = ExtractionConfig(),
        time_dependent: bool = True,
        shuffle_seed: int | None = None,
        progress: Callable[[int, int, float], None] | None = None,
        say: Callable[[str], None] = log.info,
    ) -> Classifier:
        """Train ``config``'s classifier (architecture, labels, recipe, width) on the samples that
        ``clusters`` labels; ``near_identical``: the same samples' near-identical pairs, which the pool labels
        (config.POOL_LABELS) are drawn from. ``time_dependent``: SIDE's p(y | x_t, t), else the Cond
        baseline's time-blind one. ``shuffle_seed``: train on those labels permuted over the samples
        by a permutation drawn from this seed instead (the shuffled-label control: same recipe, same
        samples, same class sizes, labels that say nothing about the samples)."""
        n_classes = clusters.n_classes
        pool_labelled = config.labels in POOL_LABELS
        n_labels = n_classes + int(pool_labelled or clusters.summary()["background"])  # + background
        train = config.classifier_train
        model_config = classifier_config(
            config.classifier, n_labels, run.model.channels, run.model.size, time_dependent, config.classifier_width
        )
        generation = clusters.features.generation
        inputs = {
            "generation": generation.name,
            "clusters": clusters.name,
            "config": model_config.to_dict(),
            "train": train.key(),
            # Part of every stored classifier's key (the weights are initialised from train.seed);
            # fixed, so that stored classifiers keep their keys.
            "seeded_init": True,
        }
        # Each of these only when it differs from the paper's recipe: stored ResNets keep their keys.
        if config.classifier != "resnet":
            inputs["architecture"] = config.classifier
        if pool_labelled:
            inputs["labels"], inputs["pool"] = config.labels, near_identical.name
        sampler_timesteps = None
        if time_dependent and train.timesteps == "sampler":
            sampler_timesteps = [int(t) for t in make_scheduler(run.model, config.sample).timesteps]
            inputs["sampler_timesteps"] = sampler_timesteps
        if shuffle_seed is not None:
            check_seed(shuffle_seed, "shuffle seed")
            inputs["shuffled_labels"] = shuffle_seed
        classifier = run.stage(cls, inputs)

        def make(stage) -> dict:
            kind = "time-dependent" if time_dependent else "time-blind"
            shuffled = " on shuffled labels" if shuffle_seed is not None else ""
            say(f"training the {kind} classifier{shuffled} ({train.steps} steps)")
            model, report = train_classifier(
                generation.images(),
                classifier.labels(),
                run.model.scheduler,
                model_config,
                train,
                device=run.model.device,
                progress=progress,
                n_targets=n_classes,
                unet=run.model.unet,
                sampler_timesteps=sampler_timesteps,
            )
            if not distributed.is_main():
                return {}
            save_classifier(model, report, stage.path)
            return {"n_classes": n_classes, **report.to_dict()}

        return run.build(classifier, make, together=True)

    @property
    def generation(self) -> Generation:
        return self.link("generation", Generation)

    @property
    def clusters(self) -> Clusters:
        return self.link("clusters", Clusters)

    @property
    def n_classes(self) -> int:
        return self.summary()["n_classes"]

    @property
    def label_kind(self) -> str | None:
        """The pool labels it learned (config.POOL_LABELS), or None for every member of each class."""
        return self.inputs.get("labels")

    @property
    def train_config(self) -> ClassifierTrainConfig:
        return ClassifierTrainConfig(**self.inputs["train"])

    @property
    def time_dependent(self) -> bool:
        return self.inputs["config"]["time_dependent"]

    @property
    def sampler_timesteps(self) -> list[int] | None:
        return self.inputs.get("sampler_timesteps")

    def load(self) -> Model:
        """The trained classifier, in eval mode, on the run's device."""
        return load_classifier(self.path, self.run.model.device, self.run.model.unet)[0]

    def labels(self) -> torch.Tensor:
        """(N,) int64: the labels it is trained on, one per sample of its generation: its clusters'
        surrogate labels (or the pool labels drawn from them), permuted for the shuffled-label control."""
        kind = self.label_kind
        if kind in POOL_LABELS:
            labels = self.clusters.pool_labels(kind, self.link("pool", NearIdentical))
        else:
            labels = self.clusters.labels()
        seed = self.inputs.get("shuffled_labels")
        return torch.from_numpy(labels if seed is None else shuffled_labels(labels, seed))


class Evaluation(Stored):
    """A classifier's held-out accuracy at each timestep a sampler visits (its sampler and number of
    steps), where guidance acts. A stage of its own, keyed by the classifier stage, so that a stored
    classifier is evaluated without being trained again.

    Summary: ``timesteps`` (the sampler's, in its order), ``timestep_accuracy`` and ``n_held_out``, on
    the classifier's own held-out split and labels. Accuracy among the target classes: background
    samples are left out, as in training, and so is the background label from the prediction. Under
    core labels most training samples are background, so that label wins the plain argmax on nearly
    every noisy sample; guidance never aims at it and asks only which target class is likelier."""

    KIND = "evaluation"

    @classmethod
    def make(cls, run: Run, classifier: Classifier, config: SampleConfig) -> Evaluation:
        inputs = {"classifier": classifier.name, "sampler": config.sampler, "num_steps": config.num_steps}
        evaluation = run.stage(cls, {**inputs, "among": "targets"})  # fixed: stored evaluations keep their keys

        def make(stage) -> dict:
            train = classifier.train_config
            labels = classifier.labels()
            val_idx, _ = held_out_split(len(labels), train)
            n_targets = classifier.n_classes
            val_idx = val_idx[labels[val_idx] < n_targets]
            x0 = classifier.generation.images()[val_idx]
            timesteps = [int(t) for t in make_scheduler(run.model, config).timesteps]
            generator = torch.Generator().manual_seed(train.seed)
            accuracy = timestep_accuracy(
                classifier.load(), x0, labels[val_idx], run.model.scheduler, timesteps, generator, n_targets=n_targets
            )
            return {
                "timesteps": timesteps,
                "timestep_accuracy": [finite_or_none(round(a, 4)) for a in accuracy],
                "n_held_out": len(val_idx),
            }

        return run.build(evaluation, make)


class Landed(Stored):
    """Where a guided generation's samples fell: each one's surrogate label under the clustering its
    classifier was trained on (embedded with the clustering's feature and labelled by the same rule
    as the clustered samples, side_core.cluster.Clustering.predict), and the fraction that landed in
    the class it was aimed at. Reads no training set: an attacker can measure it too.

    Summary: ``landed`` (fraction of samples whose label is their target), ``n_generated`` and
    ``background`` (samples that fell in no class). File: ``labels.npy``, each sample's label."""

    KIND = "landed"

    @classmethod
    def make(cls, run: Run, generation: Generation) -> Landed:
        if not generation.target:
            raise SideError(
                f"Generation {generation.name} is plain sampling: only guided samples have a target to land in."
            )
        clusters = run.find(generation.target["classifier"], Classifier).clusters
        features = Features.make(run, generation, clusters.features.feature)
        landed = run.stage(cls, {"features": features.name, "clusters": clusters.name})

        def make(stage) -> dict:
            c = clusters.clustering()
            labels = c.predict(features.vectors())
            write_array(stage.file(LABELS), labels)
            return {
                "landed": round(float((labels == generation.targets().numpy()).mean()), 4),
                "n_generated": len(labels),
                "background": int((labels == c.n_classes).sum()),
            }

        return run.build(landed, make)

    def labels(self):
        """(N,) int64: each guided sample's surrogate label (n_classes: background)."""
        return self.array(LABELS)
