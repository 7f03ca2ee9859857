"""DDPM training of a UNet2DModel on a small image set: how the bundled models were made.

Loss: || eps - eps_theta(x_t, t) ||^2 with x_t = scheduler.add_noise(x0, eps, t), t uniform.
Samples come from an exponential moving average (EMA) of the weights. Every ``checkpoint_every``
steps the EMA model is saved as a diffusers folder under ``checkpoints/`` (so memorization can be
measured as it grows) and ``resume.pt`` is replaced; training resumes from it when re-run.
"""

from __future__ import annotations

import copy
import logging
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

from side_core.config import TrainConfig
from side_core.data import TrainingSet
from side_core.errors import SideError
from side_core.models import save_model
from side_core.store import atomic_path, read_json, write_json

log = logging.getLogger(__name__)


@dataclass
class TrainProgress:
    step: int
    max_steps: int
    loss: float
    elapsed_s: float


def _recipe(config: dict) -> dict:
    """The settings a resumed run must share; the budget and checkpoint spacing may change."""
    return {k: v for k, v in config.items() if k not in ("max_steps", "max_minutes", "checkpoint_every")}


def train_ddpm(
    data: TrainingSet,
    out: str | Path,
    config: TrainConfig = TrainConfig(),
    device: str | torch.device = "cpu",
    progress: Callable[[TrainProgress], None] | None = None,
) -> Path:
    """Train on ``data`` into ``out``; return the final model folder ``out/model``."""
    out = Path(out)
    if data.channels != config.unet.channels or data.size != config.unet.sample_size:
        raise SideError(
            f"The training images are {data.channels}x{data.size}x{data.size} but the UNet is "
            f"configured for {config.unet.channels}x{config.unet.sample_size}x{config.unet.sample_size}: "
            "pass matching --channels/--size."
        )
    if out.exists() and not out.is_dir():
        raise SideError(f"--out {out} is a file: give a folder (it is created, or resumed if it holds a run).")
    if len(data) < 1:
        raise SideError("The training set is empty: give at least one image.")
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):  # seeded weights, without touching the caller's global RNG
        torch.manual_seed(config.seed)
        unet = UNet2DModel(**config.unet.unet_kwargs()).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    scheduler = DDPMScheduler(num_train_timesteps=config.num_train_timesteps)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.learning_rate)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    step, elapsed_before, history = 0, 0.0, []

    resume = out / "resume.pt"
    if resume.exists():
        try:
            state = torch.load(resume, map_location=device, weights_only=True)
        except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
            raise SideError(
                f"Cannot resume from {resume} ({type(err).__name__}: {err}): delete it to start over, or restore it."
            ) from err
        if _recipe(state["config"]) != _recipe(config.to_dict()):
            raise SideError(
                f"{out} holds a training run with a different configuration: use a new --out folder, "
                "or the same settings to resume."
            )
        unet.load_state_dict(state["unet"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, elapsed_before = state["step"], state["elapsed_s"]
        history = read_json(out / "history.json") if (out / "history.json").exists() else []
        log.info("resuming %s at step %d (%.1f min trained)", out, step, elapsed_before / 60)
    else:
        write_json(out / "train_config.json", {"config": config.to_dict(), "data": data.facts()})

    x_all = data.images.to(device)
    t0 = time.perf_counter()
    running = None
    unet.train()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0

    def checkpoint() -> None:
        save_model(ema, scheduler, out / "checkpoints" / f"step-{step:06d}")
        history.append({"step": step, "loss": running, "minutes": round(elapsed() / 60, 2)})
        write_json(out / "history.json", history)
        with atomic_path(resume) as tmp:
            torch.save(
                {
                    "step": step,
                    "elapsed_s": elapsed(),
                    "config": config.to_dict(),
                    "unet": unet.state_dict(),
                    "ema": ema.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                },
                tmp,
            )

    out_of_time = False
    while step < config.max_steps and not out_of_time:
        idx = torch.randint(len(x_all), (config.batch_size,), generator=generator)
        x0 = x_all[idx.to(device)]
        eps = torch.randn(x0.shape, generator=generator).to(device)
        t = torch.randint(config.num_train_timesteps, (len(x0),), generator=generator).to(device)
        x_t = scheduler.add_noise(x0, eps, t)
        loss = F.mse_loss(unet(x_t, t).sample, eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        decay = min(config.ema_decay, (1 + step) / (10 + step))  # warm-up: early EMA tracks fast
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), unet.parameters(), strict=True):
                p_ema.lerp_(p, 1 - decay)
        if not math.isfinite(loss.item()):
            raise SideError(
                f"Training diverged (loss {loss.item()} at step {step}): lower the learning rate (--lr); the last "
                f"checkpoint in {out / 'checkpoints'} is intact."
            )
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        out_of_time = config.max_minutes is not None and elapsed() > config.max_minutes * 60
        if progress is not None:
            progress(TrainProgress(step, config.max_steps, running, elapsed()))
        if step % config.checkpoint_every == 0 or step == config.max_steps or out_of_time:
            checkpoint()

    if history and history[-1]["step"] != step:
        checkpoint()
    ema.eval()
    save_model(ema, scheduler, out / "model")
    log.info("trained %d steps in %.1f min; model saved to %s", step, elapsed() / 60, out / "model")
    return out / "model"
