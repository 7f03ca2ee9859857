"""Generations: plain or guided samples, made shard by shard (side_core.stages.Stages.fill)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from side_core.allocation import Target
from side_core.classifier import classifier_guidance, load_classifier
from side_core.config import SampleConfig, check_seed
from side_core.errors import SideError
from side_core.repulsion import Repel
from side_core.run import Run, Stored
from side_core.sampling import SampleProgress, sample, validate
from side_core.stages import Sharding, read_shards
from side_core.store import read_tensors

FRAME = "frame_"  # a captured step's tensor is named frame_TTTT in the shards


class Generation(Stored):
    """``n`` samples in shards of the sampler's batch size, shard i from its own seed; a guided
    generation's shards also hold each sample's target class.

    Files: ``shards/NNNNN.safetensors`` with ``images`` (N, C, H, W) float32 in [-1, 1], ``targets``
    (guided) and ``frame_TTTT`` (the predicted x0 at each captured step)."""

    KIND = "generate"

    @classmethod
    def make(
        cls,
        run: Run,
        n: int,
        seed: int = 0,
        config: SampleConfig = SampleConfig(),
        target: Target | None = None,
        capture_steps: tuple[int, ...] = (),
        progress: Callable[[SampleProgress], None] | None = None,
        repel: Callable[[], Repel] | None = None,
    ) -> Generation:
        """Generate ``n`` samples, for a guided generation aimed at ``target.classes`` (processes
        sharing the store split the shards, an interrupted generation resumes). ``repel`` builds the
        repulsion from ``target.avoid``'s samples (side_core.kinds.clusters.Pairs.repulsion) when needed."""
        validate(run.model, config, n)
        check_seed(seed)
        if target is None:
            # Plain sampling ignores guidance settings: share one stage whatever they are.
            config = replace(config, guidance_scale=0.0, guidance_window=None)
        inputs = {"n": n, "seed": seed, "sample": config.to_dict(), "target": target.key() if target else None}
        if capture_steps:  # only then: generations without captured steps keep their stored keys
            inputs["capture_steps"] = list(capture_steps)
        generation = run.stage(cls, inputs)
        if generation.stage.done:
            return generation
        sharding = Sharding(n, config.batch_size)
        model = run.model
        guide_model = None
        if target is not None and config.guidance_scale > 0:
            guide_model, _ = load_classifier(run.stages.find(target.classifier).path, model.device, model.unet)
        repulsion = None
        if target is not None and target.avoid:
            if repel is None:
                raise SideError(f"The target avoids {target.avoid}: pass the repulsion from its samples.")
            repulsion = repel()

        def make_shard(i: int) -> dict[str, torch.Tensor]:
            tensors, guidance = {}, None
            if target is not None:
                tensors["targets"] = torch.from_numpy(target.classes(seed, sharding, i))
                if guide_model is not None:
                    guidance = classifier_guidance(guide_model, tensors["targets"].to(model.device))
            shard_progress = None
            if progress is not None:

                def shard_progress(p: SampleProgress) -> None:
                    progress(replace(p, batch=i, n_batches=sharding.count))

            generator = torch.Generator().manual_seed(Sharding.seed(seed, i))
            result = sample(
                model,
                sharding.size(i),
                config,
                generator,
                guidance=guidance,
                progress=shard_progress,
                capture_steps=capture_steps,
                repel=repulsion,
            )
            tensors["images"] = result.images
            for t, frame in result.frames.items():
                tensors[f"{FRAME}{t:04d}"] = frame
            return tensors

        return cls(run.stages.fill(generation.stage, sharding, make_shard), run)

    @property
    def n(self) -> int:
        return self.inputs["n"]

    @property
    def target(self) -> dict[str, Any] | None:
        """The target's key (side_core.allocation.Target.key) for a guided generation, else None."""
        return self.inputs.get("target")

    @property
    def sharding(self) -> Sharding:
        return Sharding(self.n, self.inputs["sample"]["batch_size"])

    def images(self) -> torch.Tensor:
        """(N, C, H, W) float32 in [-1, 1]: the samples, in order."""
        return self._tensor("images")

    def shard_images(self, i: int) -> torch.Tensor:
        """Shard ``i``'s samples only, so that a reader can hold one shard at a time."""
        return read_tensors(self.stage.shard(i))["images"]

    def targets(self) -> torch.Tensor | None:
        """(N,) int64: each guided sample's target class; None for plain sampling."""
        return self._tensor("targets") if self.target else None

    def frames(self) -> dict[int, torch.Tensor]:
        """timestep -> (N, C, H, W) predicted x0 at that step, for the captured steps."""
        shards = read_shards(self.stage)
        keys = sorted(k for k in shards[0] if k.startswith(FRAME))
        return {int(k[len(FRAME) :]): torch.cat([s[k] for s in shards]) for k in keys}

    def _tensor(self, key: str) -> torch.Tensor:
        return torch.cat([s[key] for s in read_shards(self.stage)])
