"""The stages of a SIDE run, each a method of :class:`Run` that says what keys it and how it is made:

    generate (plain or guided samples) -> features -> cluster, pool, map -> classifier -> evaluation
    landed (where guided samples fell among the clusters)
    reference (the training set under the similarity) -> score -> filter

Each stage method returns a finished :class:`~side_core.store.Stage` whose folder is keyed by the
stage's inputs, so asking again returns the stored result at once; where stages are found, locked,
verified and repaired is side_core.stages. The order in which SIDE runs them is side_core.pipeline.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from side_core import distributed
from side_core.allocation import (
    NEAR_IDENTICAL_QUANTILE,
    Target,
    near_identical_groups,
    pool_labels,
    pool_neighbours,
)
from side_core.classifier import (
    classifier_config,
    classifier_guidance,
    held_out_split,
    load_classifier,
    save_classifier,
    timestep_accuracy,
    train_classifier,
    training_timesteps,
)
from side_core.cluster import (
    Clustering,
    cluster,
    l2_normalise,
    map_2d,
    shuffled_labels,
    silhouette,
    surrogate_labels,
)
from side_core.config import LABELS, POOL_LABELS, ClassifierTrainConfig, ClusterConfig, SampleConfig, check_seed
from side_core.data import TrainingSet
from side_core.embed import embed
from side_core.errors import SideError
from side_core.metrics import BAND_RULE, Bands, bands_from_train, distinct_curve, in_band, summarize
from side_core.models import LoadedModel
from side_core.neighbours import QueryBlocks, make_similarity, nearest_others, search
from side_core.repulsion import Repel, found_references, sparse_repellency
from side_core.sampling import SampleProgress, make_scheduler, sample, validate
from side_core.stages import Sharding, StageMissing, Stages, read_shards
from side_core.store import Stage, finite_or_none, read_array, read_tensors, stage_key, write_array, write_tensors

log = logging.getLogger(__name__)

T = TypeVar("T")
CLASSIFIER_TIMED_STEPS = 10  # classifier training steps timed per round of the sampling cost


def stored_pool_labels(kind: str, clusters: Stage, pool: Stage, features: Stage) -> np.ndarray:
    """(N,) int64: the pool labels of ``kind`` (config.POOL_LABELS, side_core.allocation.pool_labels) of
    a stored clustering and pool stage; the features are read only for the near-miss labels, which need them."""
    labels, partner = read_array(clusters.file("labels.npy")), read_array(pool.file("partner.npy"))
    vectors = l2_normalise(read_array(features.file("features.npy"))) if kind == "near" else None
    return pool_labels(kind, labels, clusters.summary()["n_classes"], partner, vectors)


class Run:
    """A run store at ``root`` for one model and (optionally) one training set."""

    def __init__(
        self,
        root: str | Path,
        model: LoadedModel,
        data: TrainingSet | None = None,
        similarity: str = "pixel",
        sscd_path: str | Path | None = None,
        bands: Bands | None = None,
        read_only_roots: tuple[str | Path, ...] = (),
    ):
        # Finished stages in read_only_roots are used in place (e.g. the precomputed run in assets/);
        # anything new is written under root.
        self.stages = Stages(root, read_only_roots, str(model.device))
        self.model = model
        self.data = data
        self.similarity = make_similarity(similarity, sscd_path, device=model.device)
        self.sscd_path = str(sscd_path) if sscd_path else None
        self.fixed_bands = bands
        if data is not None and (data.channels, data.size) != (model.channels, model.size):
            raise SideError(
                f"The training images are {data.channels}x{data.size}x{data.size} but the model makes "
                f"{model.channels}x{model.size}x{model.size}: load the data for this model's channels and size."
            )

    @property
    def root(self) -> Path:
        return self.stages.root

    def stage(self, name: str, inputs: dict, model_specific: bool = True) -> Stage:
        """The stage of this name for these inputs (side_core.stages); most are keyed by the model too."""
        if model_specific:
            inputs = {"model": self.model.fingerprint, **inputs}
        return self.stages.get(name, inputs)

    def find(self, stage_name: str) -> Stage:
        """Reopen a finished stage by its folder name (as stored in reports and targets)."""
        return self.stages.find(stage_name)

    def stored(self, work: Callable[[Run], T]) -> T | None:
        """``work(run)`` if every stage it asks for is finished and intact; otherwise None, having
        made, deleted and repaired nothing.

        One callable both does a piece of work and, through here, answers "is it stored?", so the
        two can never ask for different stages."""
        try:
            return work(self.reading_only())
        except StageMissing:
            return None

    def reading_only(self) -> Run:
        """This run, answering from finished, intact stages only: asking it for any other stage
        raises :class:`~side_core.stages.StageMissing` (:meth:`Stages.reading_only`)."""
        view = copy.copy(self)  # every attribute as it is, whatever __init__ adds
        view.stages = self.stages.reading_only()
        return view

    # -- 1. generation -------------------------------------------------------------------------
    def generate(
        self,
        n: int,
        seed: int = 0,
        config: SampleConfig = SampleConfig(),
        target: Target | None = None,
        capture_steps: tuple[int, ...] = (),
        progress: Callable[[SampleProgress], None] | None = None,
    ) -> Stage:
        """Generate ``n`` samples in shards of ``config.batch_size``, shard i from its own seed and,
        for a guided generation, aimed at ``target.classes`` (side_core.stages.Stages.fill: processes
        sharing the store split the shards, an interrupted generation resumes)."""
        validate(self.model, config, n)
        check_seed(seed)
        if target is None:
            # Plain sampling ignores guidance settings: share one stage whatever they are.
            config = replace(config, guidance_scale=0.0, guidance_window=None)
        inputs = {"n": n, "seed": seed, "sample": config.to_dict(), "target": target.key() if target else None}
        if capture_steps:
            inputs["capture_steps"] = list(capture_steps)
        stage = self.stage("generate", inputs)
        if stage.done:
            return stage
        sharding = Sharding(n, config.batch_size)
        guide_model = None
        if target is not None and config.guidance_scale > 0:
            guide_model, _ = load_classifier(self.find(target.classifier).path, self.model.device, self.model.unet)
        repel = self.repulsion(self.find(target.avoid)) if target is not None and target.avoid else None

        def make_shard(i: int) -> dict[str, torch.Tensor]:
            tensors, guidance = {}, None
            if target is not None:
                tensors["targets"] = torch.from_numpy(target.classes(seed, sharding, i))
                if guide_model is not None:
                    guidance = classifier_guidance(guide_model, tensors["targets"].to(self.model.device))
            shard_progress = None
            if progress is not None:

                def shard_progress(p: SampleProgress) -> None:
                    progress(replace(p, batch=i, n_batches=sharding.count))

            generator = torch.Generator().manual_seed(Sharding.seed(seed, i))
            result = sample(
                self.model,
                sharding.size(i),
                config,
                generator,
                guidance=guidance,
                progress=shard_progress,
                capture_steps=capture_steps,
                repel=repel,
            )
            tensors["images"] = result.images
            for t, frame in result.frames.items():
                tensors[f"frame_{t:04d}"] = frame
            return tensors

        return self.stages.fill(stage, sharding, make_shard)

    def repulsion(self, pool: Stage) -> Repel:
        """Sparse repellency from a pool's near-identical samples (side_core.repulsion)."""
        generation = self.find(self.find(pool.inputs["features"]).inputs["generation"])
        references, radius = found_references(self.images(generation), read_array(pool.file("partner.npy")))
        # on the sampler's device and dtype once, not at every denoising step
        return sparse_repellency(references.to(self.model.device, self.model.unet.dtype), radius)

    def sampling_cost(self, classifier: Stage, config: SampleConfig, rounds: int = 3) -> Stage:
        """What a plain and a classifier-guided sample and a classifier training step cost on this
        machine, timed side by side: in each of ``rounds`` rounds, one plain then one guided batch of
        ``config.batch_size`` samples from the same noise, guided by ``classifier`` at
        ``config.guidance_scale``, then ``CLASSIFIER_TIMED_STEPS`` training steps of a copy of
        ``classifier`` on its own samples and recipe. Alternating them lets every rate see the same
        machine load, which stages made at different times do not; a stage, so that a stored report
        reads the same numbers.

        Summary: ``plain_per_sample``, ``guided_per_sample`` and ``classifier_per_step`` (median
        seconds over the rounds), ``classifier_seconds`` (a step times the classifier's training steps),
        ``guided_over_plain``, ``rounds``, ``batch``."""
        stage = self.stage(
            "sampling_cost",
            {
                "classifier": classifier.path.name,
                "sample": config.to_dict(),
                "rounds": rounds,
                "classifier_steps_timed": CLASSIFIER_TIMED_STEPS,
            },
        )

        def make(stage: Stage) -> dict:
            guide_model, _ = load_classifier(classifier.path, self.model.device, self.model.unet)
            guidance = classifier_guidance(guide_model, 0)  # the cost does not depend on the class
            plain = replace(config, guidance_scale=0.0)
            train_step = self._classifier_step(classifier)
            seconds: dict[str, list[float]] = {"plain": [], "guided": [], "classifier": []}
            for i in range(rounds):
                for kind, guide in (("plain", None), ("guided", guidance)):
                    start = time.perf_counter()
                    generator = torch.Generator().manual_seed(i)
                    sample(self.model, config.batch_size, plain if guide is None else config, generator, guide)
                    seconds[kind].append((time.perf_counter() - start) / config.batch_size)
                train_step()  # the first step also builds the optimizer state: not timed
                start = time.perf_counter()
                for _ in range(CLASSIFIER_TIMED_STEPS):
                    train_step()
                seconds["classifier"].append((time.perf_counter() - start) / CLASSIFIER_TIMED_STEPS)
            plain_rate, guided_rate, step = (float(np.median(seconds[k])) for k in ("plain", "guided", "classifier"))
            return {
                "plain_per_sample": round(plain_rate, 5),
                "guided_per_sample": round(guided_rate, 5),
                "guided_over_plain": round(guided_rate / plain_rate, 3),
                "classifier_per_step": round(step, 5),
                "classifier_seconds": round(step * classifier.inputs["train"]["steps"], 2),
                "rounds": rounds,
                "batch": config.batch_size,
            }

        return self.stages.build(stage, make)

    def _classifier_step(self, classifier: Stage) -> Callable[[], None]:
        """One training step of a fresh copy of a stored classifier, as its training takes them: a batch
        of its recipe's size from its own samples and labels, noised at its training timesteps."""
        model, _ = load_classifier(classifier.path, self.model.device, self.model.unet)
        model.train().requires_grad_(True)  # the head's (or the ResNet's) own parameters only
        train = ClassifierTrainConfig(**classifier.inputs["train"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay)
        x0 = self.images(self.find(classifier.inputs["generation"])).to(self.model.device)
        labels = self.classifier_labels(classifier).to(self.model.device)
        timesteps = torch.zeros(1, dtype=torch.long)  # a time-blind classifier sees clean images at t = 0
        if model.config.time_dependent:
            timesteps = training_timesteps(self.model.scheduler, train, classifier.inputs.get("sampler_timesteps"))
        generator = torch.Generator().manual_seed(train.seed)

        def step() -> None:
            idx = torch.randint(len(x0), (train.batch_size,), generator=generator).to(self.model.device)
            t = timesteps[torch.randint(len(timesteps), (train.batch_size,), generator=generator)].to(x0.device)
            x = x0[idx]
            if model.config.time_dependent:
                x = self.model.scheduler.add_noise(x, torch.randn(x.shape, generator=generator).to(x.device), t)
            loss = torch.nn.functional.cross_entropy(model(x, t), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    def images(self, stage: Stage) -> torch.Tensor:
        """(N, C, H, W) float32 in [-1, 1]: a generation stage's samples, in order."""
        return self._shard_tensor(stage, "images")

    def targets(self, stage: Stage) -> torch.Tensor | None:
        return self._shard_tensor(stage, "targets") if stage.inputs.get("target") else None

    def frames(self, stage: Stage) -> dict[int, torch.Tensor]:
        """timestep -> (N, C, H, W) predicted x0 at that step, for captured steps."""
        shards = read_shards(stage)
        keys = sorted(k for k in shards[0] if k.startswith("frame_"))
        return {int(k[6:]): torch.cat([s[k] for s in shards]) for k in keys}

    def _shard_tensor(self, stage: Stage, key: str) -> torch.Tensor:
        return torch.cat([s[key] for s in read_shards(stage)])

    # -- 2. features, clusters, map --------------------------------------------------------------
    def features(self, generation: Stage, feature: str = "unet") -> Stage:
        stage = self.stage(
            "features",
            {
                "generation": generation.path.name,
                "feature": feature,
                "sscd": self.sscd_path if feature == "sscd" else None,
            },
        )

        def make(stage: Stage) -> dict:
            features = embed(self.images(generation), feature, self.model, self.sscd_path, world=distributed.current())
            if not distributed.is_main():
                return {}
            write_array(stage.file("features.npy"), features)
            return {}

        return self.stages.build(stage, make, together=True)

    def cluster(self, features: Stage, config: ClusterConfig) -> Stage:
        stage = self.stage("cluster", {"features": features.path.name, **config.to_dict()})

        def make(stage: Stage) -> dict:
            f = read_array(features.file("features.npy"))
            c = cluster(f, config)
            for name, array in c.to_arrays().items():
                write_array(stage.file(f"{name}.npy"), array)
            return {
                "n_classes": c.n_classes,
                "background": c.background,
                "in_classes": int((c.labels < c.n_classes).sum()),
                "silhouette": finite_or_none(round(silhouette(f, c.kmeans_labels, config.seed), 4)),
            }

        return self.stages.build(stage, make)

    def pool(self, features: Stage, quantile: float = NEAR_IDENTICAL_QUANTILE) -> Stage:
        """Near-identical pairs in a generation, from its features (side_core.allocation): each
        sample's nearest-other similarity, first near-identical partner, and the threshold."""
        stage = self.stage("pool", {"features": features.path.name, "quantile": quantile})

        def make(stage: Stage) -> dict:
            nn, threshold, partner = pool_neighbours(l2_normalise(read_array(features.file("features.npy"))), quantile)
            write_array(stage.file("nn_similarity.npy"), nn)
            write_array(stage.file("partner.npy"), partner)
            return {"near_identical": round(threshold, 6), "flagged": int((partner >= 0).sum())}

        return self.stages.build(stage, make)

    def filter(self, pool: Stage, synthetic: Stage) -> Stage:
        """The Filter baseline on a pool of plain samples: those with a near-identical partner in the
        pool are reported as memorized, with no classifier and no guided sample. A stage of its own
        (it reads the whole pool), so a stored comparison, e.g. each app rerun, only reads it.

        Summary: ``flagged``, ``groups``, ``precision_high``, ``extracted`` and ``curve``, entry n-1 of
        which counts the distinct high-band training images among the samples flagged once only the
        first n pool samples exist (a sample is flagged when both it and its partner are drawn);
        ``plain_curve``: the same pool read as plain sampling (UnCond at the budget SIDE spent on it)."""
        pool_score = self.score(synthetic)
        stage = self.stage("filter", {"pool": pool.path.name, "score": pool_score.path.name})

        def make(stage: Stage) -> dict:
            partner = read_array(pool.file("partner.npy"))
            high = self.bands().high
            copy = in_band(self.neighbours(pool_score)[0][:, 0], high)
            flagged = np.flatnonzero(partner >= 0)
            flagged_at = np.maximum(flagged, partner[flagged])  # reported once its partner is drawn too
            # every training image in the high band of a flagged sample counts, as in the methods' rows
            train_vectors = read_tensors(self.reference().file("vectors.safetensors"))["vectors"]
            similarity = self.similarity.vectors(self.images(synthetic)[flagged]) @ train_vectors.T
            rows, images = np.nonzero(in_band(similarity.numpy(), high))
            first_hit = np.full(len(self.data), len(partner), dtype=np.int64)
            np.minimum.at(first_hit, images, flagged_at[rows])
            first_hit[first_hit == len(partner)] = -1
            curve = distinct_curve(first_hit, len(partner))
            return {
                "n_generated": len(partner),
                "near_identical": pool.summary()["near_identical"],
                "flagged": len(flagged),
                "groups": int(near_identical_groups(partner).max() + 1),
                "precision_high": round(100 * float(copy[flagged].mean()), 3) if len(flagged) else None,
                "extracted": np.flatnonzero(first_hit >= 0).tolist(),
                "curve": curve.tolist(),
                "plain_curve": distinct_curve(self.first_hit(pool_score), len(partner)).tolist(),
            }

        return self.stages.build(stage, make)

    def clustering(self, stage: Stage) -> Clustering:
        fields = ("kmeans_labels", "centroids", "cohesion", "sizes", "kept", "labels")
        return Clustering(**{k: read_array(stage.file(f"{k}.npy")) for k in fields})

    def map2d(self, features: Stage, method: str = "umap", seed: int = 0) -> Stage:
        stage = self.stage("map", {"features": features.path.name, "method": method, "seed": seed})

        def make(stage: Stage) -> dict:
            write_array(stage.file("xy.npy"), map_2d(read_array(features.file("features.npy")), method, seed))
            return {}

        return self.stages.build(stage, make)

    # -- 3. classifiers --------------------------------------------------------------------------
    def classifier(
        self,
        generation: Stage,
        clusters: Stage,
        time_dependent: bool = True,
        train_config: ClassifierTrainConfig = ClassifierTrainConfig(),
        width: int = 32,
        progress: Callable[[int, int, float], None] | None = None,
        say: Callable[[str], None] = log.info,
        shuffle_seed: int | None = None,
        architecture: str = "resnet",
        labels: str = "clusters",
        pool: Stage | None = None,
        sample_config: SampleConfig = SampleConfig(),
    ) -> Stage:
        """A surrogate classifier trained on the generation's samples and the clusters' labels.

        ``architecture``: "resnet" (the paper's, ``width`` its channels) or "unet-head" (a head on
        this model's UNet encoder, side_core.unet_head). ``labels``: "clusters" (every member of each
        kept cluster) or "core" (only members with a near-identical partner in ``pool``, the pool
        stage of the same generation; side_core.allocation.core_labels). ``sample_config``: the
        sampler whose timesteps t is drawn from when ``train_config.timesteps == "sampler"``.
        ``shuffle_seed``: train on those labels permuted over the samples by a permutation drawn from
        this seed instead (the shuffled-label control: same recipe, same samples, same class sizes,
        labels that say nothing about the samples); None: the labels themselves."""
        cluster_summary = clusters.summary()
        n_classes = cluster_summary["n_classes"]
        n_labels = n_classes + int(labels in POOL_LABELS or cluster_summary["background"])  # + background
        config = classifier_config(architecture, n_labels, self.model.channels, self.model.size, time_dependent, width)
        if labels not in LABELS:
            raise SideError(f"Unknown labels {labels!r}: use one of {', '.join(LABELS)}.")
        inputs = {
            "generation": generation.path.name,
            "clusters": clusters.path.name,
            "config": config.to_dict(),
            "train": train_config.key(),
            # Part of every stored classifier's key (the weights are initialised from train.seed);
            # fixed, so that stored classifiers keep their keys.
            "seeded_init": True,
        }
        # Each of these only when it differs from the paper's recipe: stored ResNets keep their keys.
        if architecture != "resnet":
            inputs["architecture"] = architecture
        if labels in POOL_LABELS:
            if pool is None:
                raise SideError(f"{labels!r} labels need the pool stage (near-identical partners) of the same samples.")
            inputs["labels"], inputs["pool"] = labels, pool.path.name
        sampler_timesteps = None
        if time_dependent and train_config.timesteps == "sampler":
            sampler_timesteps = [int(t) for t in make_scheduler(self.model, sample_config).timesteps]
            inputs["sampler_timesteps"] = sampler_timesteps
        if shuffle_seed is not None:  # only then: the cluster-label classifiers keep their stored keys
            check_seed(shuffle_seed, "shuffle seed")
            inputs["shuffled_labels"] = shuffle_seed
        stage = self.stage("classifier", inputs)

        def make(stage: Stage) -> dict:
            kind = "time-dependent" if time_dependent else "time-blind"
            shuffled = " on shuffled labels" if shuffle_seed is not None else ""
            say(f"training the {kind} classifier{shuffled} ({train_config.steps} steps)")
            model, report = train_classifier(
                self.images(generation),
                self.classifier_labels(stage),
                self.model.scheduler,
                config,
                train_config,
                device=self.model.device,
                progress=progress,
                n_targets=n_classes,
                unet=self.model.unet,
                sampler_timesteps=sampler_timesteps,
            )
            if not distributed.is_main():
                return {}
            save_classifier(model, report, stage.path)
            return {"n_classes": n_classes, **report.to_dict()}

        return self.stages.build(stage, make, together=True)

    def classifier_labels(self, classifier: Stage) -> torch.Tensor:
        """(N,) int64: the labels a classifier stage is trained on, one per sample of its generation:
        its clusters' surrogate labels (or their core), permuted for the shuffled-label control."""
        clusters = self.find(classifier.inputs["clusters"])
        kind = classifier.inputs.get("labels")
        if kind in POOL_LABELS:
            features = self.find(clusters.inputs["features"])
            labels = stored_pool_labels(kind, clusters, self.find(classifier.inputs["pool"]), features)
        else:
            labels = read_array(clusters.file("labels.npy"))
        seed = classifier.inputs.get("shuffled_labels")
        return torch.from_numpy(labels if seed is None else shuffled_labels(labels, seed))

    def evaluation(self, classifier: Stage, config: SampleConfig) -> Stage:
        """A classifier's held-out accuracy at each timestep the sampler of ``config`` visits (its
        sampler and number of steps), where guidance acts. A stage of its own, keyed by the classifier
        stage, so that a stored classifier is evaluated without being trained again.

        Summary: ``timesteps`` (the sampler's, in its order), ``timestep_accuracy`` and ``n_held_out``,
        on the classifier's own held-out split and labels. Accuracy among the target classes: background
        samples are left out, as in training, and so is the background label from the prediction. Under
        core labels most training samples are background, so that label wins the plain argmax on
        nearly every noisy sample; guidance never aims at it and asks only which target class is likelier.
        """
        stage = self.stage(
            "evaluation",
            {
                "classifier": classifier.path.name,
                "sampler": config.sampler,
                "num_steps": config.num_steps,
                "among": "targets",
            },
        )

        def make(stage: Stage) -> dict:
            model, _ = load_classifier(classifier.path, self.model.device, self.model.unet)
            train_config = ClassifierTrainConfig(**classifier.inputs["train"])
            labels = self.classifier_labels(classifier)
            val_idx, _ = held_out_split(len(labels), train_config)
            n_targets = self.find(classifier.inputs["clusters"]).summary()["n_classes"]
            val_idx = val_idx[labels[val_idx] < n_targets]
            x0 = self.images(self.find(classifier.inputs["generation"]))[val_idx]
            timesteps = [int(t) for t in make_scheduler(self.model, config).timesteps]
            generator = torch.Generator().manual_seed(train_config.seed)
            accuracy = timestep_accuracy(
                model, x0, labels[val_idx], self.model.scheduler, timesteps, generator, n_targets=n_targets
            )
            return {
                "timesteps": timesteps,
                "timestep_accuracy": [finite_or_none(round(a, 4)) for a in accuracy],
                "n_held_out": len(val_idx),
            }

        return self.stages.build(stage, make)

    def landed(self, generation: Stage) -> Stage:
        """Where a guided generation's samples fell: each one's surrogate label under the clustering its
        classifier was trained on (embedded with the clustering's feature and labelled by the same
        rule as the clustered pool, side_core.cluster.surrogate_labels), and the fraction that landed
        in the class it was aimed at. Reads no training set: an attacker can measure it too.

        Summary: ``landed`` (fraction of samples whose label is their target), ``n_generated`` and
        ``background`` (samples that fell in no class); ``labels.npy`` holds each sample's label."""
        target = generation.inputs.get("target")
        if not target:
            raise SideError(
                f"Generation {generation.path.name} is plain sampling: only guided samples have a target to land in."
            )
        clusters = self.find(self.find(target["classifier"]).inputs["clusters"])
        features = self.features(generation, self.find(clusters.inputs["features"]).inputs["feature"])
        stage = self.stage("landed", {"features": features.path.name, "clusters": clusters.path.name})

        def make(stage: Stage) -> dict:
            c = self.clustering(clusters)
            labels = surrogate_labels(
                read_array(features.file("features.npy")), c.centroids, c.cohesion, c.kept, clusters.inputs["unkept"]
            )
            write_array(stage.file("labels.npy"), labels)
            return {
                "landed": round(float((labels == self.targets(generation).numpy()).mean()), 4),
                "n_generated": len(labels),
                "background": int((labels == c.n_classes).sum()),
            }

        return self.stages.build(stage, make)

    def landed_labels(self, landed: Stage) -> np.ndarray:
        """(N,) int64: a landed stage's surrogate label of each guided sample (n_classes: background)."""
        return read_array(landed.file("labels.npy"))

    # -- 4. scoring ------------------------------------------------------------------------------
    def reference(self) -> Stage:
        """Training-set vectors under the similarity, their nearest-neighbour similarities, bands."""
        if self.data is None:
            raise SideError("Scoring needs the training set: load one (e.g. 'default') for this run.")
        inputs = {
            "data": stage_key({"facts": self.data.facts(), "names": self.data.names}),
            "similarity": self.similarity.to_dict(),
            "bands": self.fixed_bands.to_dict() if self.fixed_bands else None,
            "band_rule": None if self.fixed_bands else BAND_RULE,
        }
        stage = self.stage("reference", inputs, model_specific=False)

        def make(stage: Stage) -> dict:
            vectors = self.similarity.vectors(self.data.images)
            nn_sim, nn_idx = nearest_others(vectors, device=self.model.device)
            bands = self.fixed_bands or bands_from_train(nn_sim)
            write_tensors(stage.file("vectors.safetensors"), {"vectors": vectors})
            write_array(stage.file("nn_similarity.npy"), nn_sim)
            write_array(stage.file("nn_index.npy"), nn_idx)
            return {"bands": bands.to_dict(), "n_train": len(self.data)}

        return self.stages.build(stage, make)

    def bands(self) -> Bands:
        return Bands.from_dict(self.reference().summary()["bands"])

    def score(self, generation: Stage, k: int = 3) -> Stage:
        """Nearest training images of every sample, and the method's AMS/UMS/p95/extracted."""
        reference = self.reference()
        stage = self.stage(
            "score",
            {"generation": generation.path.name, "reference": reference.path.name, "k": k},
            model_specific=False,
        )

        def make(stage: Stage) -> dict:
            bands = self.bands()
            train_vectors = read_tensors(reference.file("vectors.safetensors"))["vectors"]
            sharding = Sharding(generation.inputs["n"], generation.inputs["sample"]["batch_size"])
            queries = QueryBlocks(  # one shard at a time: memory does not grow with N_G
                sharding.sizes,
                lambda i: self.similarity.vectors(read_tensors(generation.shard(i))["images"]),
            )
            world = distributed.current()
            result = search(queries, train_vectors, k=k, bands=bands, device=self.model.device, world=world)
            if not world.is_main:
                return {}
            write_array(stage.file("similarity.npy"), result.similarity)
            write_array(stage.file("index.npy"), result.index)
            for name, first in result.first_hit.items():
                write_array(stage.file(f"first_hit_{name}.npy"), first)
            return summarize(result.max_similarity, result.band_hits, bands)

        return self.stages.build(stage, make, together=True)

    def first_hit(self, score: Stage, band: str = "high") -> np.ndarray:
        """(M,) int64: index of the first sample in ``band`` with each training image (-1: none)."""
        return read_array(score.file(f"first_hit_{band}.npy"))

    def neighbours(self, score: Stage) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) similarities (descending) and (N, k) training indices of a scored generation."""
        return read_array(score.file("similarity.npy")), read_array(score.file("index.npy"))

    def map_points(self, stage: Stage) -> np.ndarray:
        """(N, 2) float32: a map stage's 2-D positions of the samples."""
        return read_array(stage.file("xy.npy"))

    def feature_vectors(self, stage: Stage) -> np.ndarray:
        """(N, D) float32: a features stage's per-sample features."""
        return read_array(stage.file("features.npy"))

    def train_similarity(self) -> np.ndarray:
        """(M,) float32: each training image's similarity to its nearest other training image."""
        return read_array(self.reference().file("nn_similarity.npy"))
