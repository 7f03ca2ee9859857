"""The one denoising loop, plain or guided.

Notation (SIDE's classifier guidance, arXiv 2410.02467; diffusers' DDIM/DDPM schedulers do the update itself):
    x_t          the noisy batch at timestep t                 (N, C, H, W) float32
    eps_pred     eps_theta(x_t, t), the UNet's noise prediction (converted to noise when the model
                 predicts v or x0, so that guidance acts in one space for every model)
    alpha_bar_t  scheduler.alphas_cumprod[t]
    grad         grad_{x_t} log p(y | x_t, t), from the guidance callable
    eps_hat      eps_pred - guidance_scale * sqrt(1 - alpha_bar_t) * grad
    x0_pred      the scheduler's estimate of the clean image at this step

Guidance is a plain callable ``(x_t, t) -> grad``; the loop never knows what a classifier is. So is
repulsion (side_core.repulsion), ``x0_pred -> x0_pred'``: after guidance, the clean-image estimate
implied by eps_hat is moved and eps_hat becomes the noise that implies the moved estimate.
With ``guidance_scale == 0`` (or no callable) the loop takes exactly the unguided path, so the
same generator gives bit-identical samples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler, SchedulerMixin

from side_core.config import SampleConfig
from side_core.errors import SideError
from side_core.models import LoadedModel
from side_core.registry import Registry
from side_core.repulsion import Repel

GuidanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Sampler:
    """A denoising update: a diffusers scheduler class, built from the model's own training schedule,
    whose ``step`` takes a generator and returns ``pred_original_sample``; ``step_kwargs`` go to every step."""

    scheduler_class: type[SchedulerMixin]
    help: str
    step_kwargs: Mapping[str, Any] = field(default_factory=dict)


SAMPLERS: Registry[Sampler] = Registry("sampler")
SAMPLERS.register("ddpm", Sampler(DDPMScheduler, "ancestral, fresh noise at every step"))
# eta 0: the sample is a function of its initial noise
SAMPLERS.register("ddim", Sampler(DDIMScheduler, "deterministic, no noise after the first", {"eta": 0.0}))


@dataclass
class SampleProgress:
    """Reported after every denoising step of every batch."""

    batch: int  # index of the batch being sampled
    n_batches: int
    step: int  # 1-based step within the batch
    n_steps: int
    t: int  # the timestep just denoised
    x0_pred: torch.Tensor  # (B, C, H, W) current estimate of the clean batch, in [-1, 1]


@dataclass
class SampleResult:
    images: torch.Tensor  # (N, C, H, W) float32 in [-1, 1], on the CPU
    # timestep -> (N, C, H, W) predicted x0 at that step, for the steps asked for in capture_steps
    frames: dict[int, torch.Tensor] = field(default_factory=dict)


def make_scheduler(model: LoadedModel, config: SampleConfig) -> SchedulerMixin:
    """A fresh sampling scheduler of ``config.sampler`` built from the model's own training schedule."""
    # The loop hands the scheduler a noise prediction whatever the model predicts (see to_eps).
    scheduler_class = SAMPLERS.get(config.sampler).scheduler_class
    scheduler = scheduler_class.from_config(model.scheduler.config, prediction_type="epsilon")
    scheduler.set_timesteps(config.num_steps)
    return scheduler


def to_eps(
    model_output: torch.Tensor, x_t: torch.Tensor, alpha_bar_t: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """The noise prediction implied by a model's output, from x_t = sqrt(abar) x0 + sqrt(1 - abar) eps:
    ``epsilon`` as is; ``sample`` (x0) gives eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar); ``v_prediction``
    (v = sqrt(abar) eps - sqrt(1 - abar) x0) gives eps = sqrt(abar) v + sqrt(1 - abar) x_t."""
    if prediction_type == "epsilon":
        return model_output
    if prediction_type == "sample":
        return (x_t - alpha_bar_t.sqrt() * model_output) / (1 - alpha_bar_t).sqrt()
    if prediction_type == "v_prediction":
        return alpha_bar_t.sqrt() * model_output + (1 - alpha_bar_t).sqrt() * x_t
    raise SideError(f"Unknown prediction_type {prediction_type!r}: use epsilon, v_prediction or sample.")


def validate(model: LoadedModel, config: SampleConfig, n: int) -> None:
    """What a SampleConfig cannot check by itself: its fit to this model's schedule, and N."""
    t_max = model.scheduler.config.num_train_timesteps - 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SideError(f"The number of samples must be a whole number of at least 1 (got {n!r}).")
    if config.num_steps > t_max + 1:
        raise SideError(
            f"{config.num_steps} sampler steps, but the model's schedule has only {t_max + 1} timesteps: "
            f"use at most {t_max + 1}."
        )
    if config.guidance_window is not None and config.guidance_window[1] > t_max:
        t_low, t_high = config.guidance_window
        raise SideError(
            f"Guidance window [{t_low}, {t_high}] is outside the schedule: use 0 <= t_low <= t_high <= {t_max}."
        )


def sample(
    model: LoadedModel,
    n: int,
    config: SampleConfig = SampleConfig(),
    generator: torch.Generator | None = None,
    guidance: GuidanceFn | None = None,
    progress: Callable[[SampleProgress], None] | None = None,
    capture_steps: Sequence[int] = (),
    repel: Repel | None = None,
) -> SampleResult:
    """Draw ``n`` samples in batches of ``config.batch_size``.

    ``guidance`` is a callable ``(x_t, t) -> grad log p(y | x_t, t)`` for the current batch; to aim
    batches at different targets, call this once per batch. ``capture_steps`` are 1-based step indices whose
    x0_pred is returned in ``SampleResult.frames`` (keyed by timestep), e.g. to replay how a sample
    forms. ``repel`` moves each step's clean-image estimate (side_core.repulsion). Initial noise comes
    from ``generator`` (a CPU generator by default), batch by batch.
    """
    validate(model, config, n)
    guided = guidance is not None and config.guidance_scale > 0
    device, dtype = model.device, model.unet.dtype
    shape = (model.channels, model.size, model.size)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    n_batches = -(-n // config.batch_size)
    images, frames = [], {}
    for b in range(n_batches):
        size = min(config.batch_size, n - b * config.batch_size)
        # Draw on the generator's device, then move: identical noise on CPU and CUDA.
        x_t = torch.randn((size, *shape), generator=generator, device=generator.device).to(device, dtype)
        scheduler = make_scheduler(model, config)
        final, batch_frames = _denoise(
            model,
            scheduler,
            x_t,
            config=config,
            guidance=guidance if guided else None,
            repel=repel,
            generator=generator,
            batch=b,
            n_batches=n_batches,
            progress=progress,
            capture_steps=capture_steps,
        )
        images.append(final)
        for t, x0 in batch_frames.items():
            frames.setdefault(t, []).append(x0)
    return SampleResult(torch.cat(images), {t: torch.cat(v) for t, v in frames.items()})


def _repelled(
    eps_pred: torch.Tensor,
    x_t: torch.Tensor,
    alpha_bar: torch.Tensor,
    scheduler: SchedulerMixin,
    repel: Repel,
) -> torch.Tensor:
    """eps_pred, changed only for the samples whose x0_pred the repulsion moves (bit-identical elsewhere)."""
    x0 = (x_t - (1 - alpha_bar).sqrt() * eps_pred) / alpha_bar.sqrt()
    if scheduler.config.clip_sample:  # the estimate the scheduler will use
        limit = scheduler.config.clip_sample_range
        x0 = x0.clamp(-limit, limit)
    moved = repel(x0)
    pushed = (moved != x0).flatten(1).any(dim=1)[:, None, None, None]
    return torch.where(pushed, (x_t - alpha_bar.sqrt() * moved) / (1 - alpha_bar).sqrt(), eps_pred)


def _denoise(
    model: LoadedModel,
    scheduler: SchedulerMixin,
    x_t: torch.Tensor,
    *,
    config: SampleConfig,
    guidance: GuidanceFn | None,
    repel: Repel | None,
    generator: torch.Generator,
    batch: int,
    n_batches: int,
    progress: Callable[[SampleProgress], None] | None,
    capture_steps: Sequence[int],
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Denoise one batch; return the final x0 and {t: x0_pred} for the captured steps."""
    alphas_cumprod = scheduler.alphas_cumprod.to(x_t.device)
    prediction_type = model.scheduler.config.prediction_type
    window = config.guidance_window
    step_kwargs = SAMPLERS.get(config.sampler).step_kwargs
    frames: dict[int, torch.Tensor] = {}
    n_steps = len(scheduler.timesteps)
    for i, t in enumerate(scheduler.timesteps, start=1):
        t_int = int(t)
        # 1. predict the noise
        with torch.no_grad():
            eps_pred = to_eps(model.unet(x_t, t).sample, x_t, alphas_cumprod[t_int], prediction_type)
        # 2. classifier guidance: shift eps along grad log p(y | x_t, t), inside the window only
        if guidance is not None and (window is None or window[0] <= t_int <= window[1]):
            grad = guidance(x_t, torch.full((len(x_t),), t_int, device=x_t.device))
            eps_pred = eps_pred - config.guidance_scale * (1 - alphas_cumprod[t_int]).sqrt() * grad
        # 2b. repulsion: where the scheduler's clean-image estimate moves, the noise that implies the moved one
        if repel is not None:
            eps_pred = _repelled(eps_pred, x_t, alphas_cumprod[t_int], scheduler, repel)
        # 3. the ordinary scheduler step x_t -> x_{t-1}
        step = scheduler.step(eps_pred, t, x_t, generator=generator, **step_kwargs)
        x_t = step.prev_sample
        x0_pred = step.pred_original_sample
        if i in capture_steps:
            frames[t_int] = x0_pred.detach().float().cpu()
        if progress is not None:
            progress(SampleProgress(batch, n_batches, i, n_steps, t_int, x0_pred))
    return x_t.detach().float().clamp(-1, 1).cpu(), frames
