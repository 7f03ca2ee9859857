"""What a plain sample, a classifier-guided sample and a classifier training step cost on this machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from side_core.classifier import classifier_guidance, training_timesteps
from side_core.config import SampleConfig
from side_core.kinds.classifier import Classifier
from side_core.run import Run, Stored
from side_core.sampling import sample

CLASSIFIER_TIMED_STEPS = 10  # classifier training steps timed per round of the sampling cost


class SamplingCost(Stored):
    """Timed side by side: in each of ``rounds`` rounds, one plain then one guided batch of
    ``config.batch_size`` samples from the same noise, guided by a classifier at
    ``config.guidance_scale``, then ``CLASSIFIER_TIMED_STEPS`` training steps of a copy of the
    classifier on its own samples and recipe. Alternating them lets every rate see the same machine
    load, which stages made at different times do not; a stage, so that a stored report reads the
    same numbers.

    Summary: ``plain_per_sample``, ``guided_per_sample`` and ``classifier_per_step`` (median seconds
    over the rounds), ``classifier_seconds`` (a step times the classifier's training steps),
    ``guided_over_plain``, ``rounds``, ``batch``."""

    KIND = "sampling_cost"

    @classmethod
    def make(cls, run: Run, classifier: Classifier, config: SampleConfig, rounds: int = 3) -> SamplingCost:
        inputs = {
            "classifier": classifier.name,
            "sample": config.to_dict(),
            "rounds": rounds,
            "classifier_steps_timed": CLASSIFIER_TIMED_STEPS,
        }
        cost = run.stage(cls, inputs)

        def make(stage) -> dict:
            guidance = classifier_guidance(classifier.load(), 0)  # the cost does not depend on the class
            plain = replace(config, guidance_scale=0.0)
            train_step = training_step(run, classifier)
            seconds: dict[str, list[float]] = {"plain": [], "guided": [], "classifier": []}
            for i in range(rounds):
                for kind, guide in (("plain", None), ("guided", guidance)):
                    start = time.perf_counter()
                    generator = torch.Generator().manual_seed(i)
                    sample(run.model, config.batch_size, plain if guide is None else config, generator, guide)
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
                "classifier_seconds": round(step * classifier.train_config.steps, 2),
                "rounds": rounds,
                "batch": config.batch_size,
            }

        return run.build(cost, make)


def training_step(run: Run, classifier: Classifier) -> Callable[[], None]:
    """One training step of a fresh copy of a stored classifier, as its training takes them: a batch
    of its recipe's size from its own samples and labels, noised at its training timesteps."""
    model = classifier.load().train().requires_grad_(True)  # the head's (or the ResNet's) own parameters only
    train = classifier.train_config
    device = run.model.device
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay)
    x0 = classifier.generation.images().to(device)
    labels = classifier.labels().to(device)
    timesteps = torch.zeros(1, dtype=torch.long)  # a time-blind classifier sees clean images at t = 0
    if classifier.time_dependent:
        timesteps = training_timesteps(run.model.scheduler, train, classifier.sampler_timesteps)
    generator = torch.Generator().manual_seed(train.seed)

    def step() -> None:
        idx = torch.randint(len(x0), (train.batch_size,), generator=generator).to(device)
        t = timesteps[torch.randint(len(timesteps), (train.batch_size,), generator=generator)].to(device)
        x = x0[idx]
        if classifier.time_dependent:
            x = run.model.scheduler.add_noise(x, torch.randn(x.shape, generator=generator).to(device), t)
        loss = torch.nn.functional.cross_entropy(model(x, t), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step
