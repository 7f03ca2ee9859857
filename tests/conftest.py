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


def bright_and_dark(n: int = 32, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes anyone can tell apart: 0 bright (mean +0.5), 1 dark (mean -0.5), in [-1, 1]."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    x0 = (0.5 - labels.float())[:, None, None, None] + 0.2 * torch.randn(n, 1, size, size, generator=g)
    return x0.clamp(-1, 1), labels


@pytest.fixture(scope="session")
def bright_dark_model_dir(tmp_path_factory):
    """A tiny DDPM really trained (300 steps, ~10 s) on bright and dark images, so its samples
    fall into the two classes and guidance has something to choose between."""
    from side_core.config import TrainConfig, UNetConfig
    from side_core.data import TrainingSet
    from side_core.train import train_ddpm

    x0, _ = bright_and_dark()
    data = TrainingSet(x0, [f"img{i}" for i in range(len(x0))], "bright and dark")
    config = TrainConfig(
        unet=UNetConfig(sample_size=8, channels=1, block_out_channels=(8, 16), norm_num_groups=4),
        num_train_timesteps=100,
        max_steps=300,
        checkpoint_every=300,
    )
    return train_ddpm(data, tmp_path_factory.mktemp("bright_dark"), config)


@pytest.fixture(scope="session")
def bright_dark_model(bright_dark_model_dir):
    """The bright-and-dark DDPM, loaded on the CPU."""
    from side_core.models import load_model

    return load_model(bright_dark_model_dir, device="cpu")


@pytest.fixture(scope="session")
def trained_classifier(bright_dark_model):
    """A time-dependent classifier trained 150 steps on the bright and dark images (~5 s), and its
    report: trained once for every test that needs a classifier that really tells the classes apart."""
    from side_core.classifier import train_classifier
    from side_core.config import ClassifierConfig, ClassifierTrainConfig

    x0, labels = bright_and_dark()
    config = ClassifierConfig(n_classes=2, channels=1, size=8, width=8, n_stages=2)
    return train_classifier(
        x0, labels, bright_dark_model.scheduler, config, ClassifierTrainConfig(steps=150, batch_size=32)
    )


@pytest.fixture(scope="session")
def tiny_extraction():
    """An extraction at tiny size for the tiny model: 24 pool samples in 3 classes (tau 0 keeps every
    cluster of an untrained model), 10 classifier steps, 3 sampler steps; tests set N_G."""
    from dataclasses import replace

    from side_core.config import ExtractionConfig

    base = ExtractionConfig()
    return replace(
        base,
        n_syn=24,
        cluster=replace(base.cluster, feature="unet", k=3, tau=0.0),
        classifier_train=replace(base.classifier_train, steps=10),
        sample=replace(base.sample, num_steps=3),
    )


# The command line's tiny budgets, for end-to-end runs on the bright/dark model.
TINY_CLI = ["--n-syn", "32", "--k", "3", "--tau", "0", "--classifier-steps", "30", "--steps", "4", "--batch-size", "16"]


@pytest.fixture(scope="session")
def bright_dark_data_dir(tmp_path_factory):
    """The bright/dark model's own training images, as PNG files."""
    from side_core.images import to_uint8

    folder = tmp_path_factory.mktemp("bright_dark_png")
    for i, image in enumerate(to_uint8(bright_and_dark()[0])):
        Image.fromarray(image.squeeze(-1), "L").save(folder / f"{i:02d}.png")
    return folder
