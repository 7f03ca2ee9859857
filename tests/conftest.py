"""Shared fixtures: real diffusers components at tiny size (no mocks), built and saved by the tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from PIL import Image

torch.set_num_threads(1)  # CI has 2 cores; tests are small, and one thread avoids oversubscription


def tiny_unet(channels: int = 1, size: int = 8) -> UNet2DModel:
    """A 2-level UNet2DModel, as in diffusers' own pipeline tests."""
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )


def tiny_scheduler() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=100)


def save_pipeline(folder, channels: int = 1, size: int = 8):
    from side_core.models import save_model

    save_model(tiny_unet(channels, size), tiny_scheduler(), folder)
    return folder


def write_images(folder, n: int, size: int = 8, mode: str = "L", seed: int = 0):
    """n random PNG images, sharp blocks so that they are far from each other."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = 1 if mode == "L" else 3
    for i in range(n):
        blocks = rng.integers(0, 256, (size // 2, size // 2, channels), dtype=np.uint8)
        pixels = blocks.repeat(2, axis=0).repeat(2, axis=1)
        Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode).save(folder / f"img{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A DDPMPipeline folder (model_index.json, unet/, scheduler/): 1 channel, 8x8, 100 timesteps."""
    return save_pipeline(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """Twelve 8x8 grayscale PNGs."""
    return write_images(tmp_path_factory.mktemp("data") / "faces", 12)
