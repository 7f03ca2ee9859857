"""The train command: checkpoints, resume, and a final model the loader accepts."""

import json

import pytest
import torch

from side_core.config import TrainConfig, UNetConfig
from side_core.data import load_training_set
from side_core.errors import SideError
from side_core.models import load_model
from side_core.train import train_ddpm

CONFIG = TrainConfig(
    unet=UNetConfig(sample_size=8, channels=1, block_out_channels=(8, 16), norm_num_groups=4),
    num_train_timesteps=50,
    batch_size=4,
    max_steps=6,
    checkpoint_every=3,
)


def test_train_checkpoints_resume_and_save(tiny_data_dir, tmp_path, caplog):
    caplog.set_level("INFO")
    data = load_training_set(tiny_data_dir, 1, 8)
    folder = train_ddpm(data, tmp_path, CONFIG)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000003", "step-000006"]
    first = load_model(folder, device="cpu")
    assert first.scheduler.config.num_train_timesteps == 50
    load_model(tmp_path / "checkpoints" / "step-000003", device="cpu")

    longer = TrainConfig(**{**CONFIG.__dict__, "max_steps": 9})
    train_ddpm(data, tmp_path, longer)
    assert "resuming" in caplog.text and "at step 6" in caplog.text
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["step"] for h in history] == [3, 6, 9]
    second = load_model(folder, device="cpu")
    assert not torch.equal(first.unet.conv_in.weight, second.unet.conv_in.weight)


def test_resume_with_another_recipe_is_refused(tiny_data_dir, tmp_path):
    data = load_training_set(tiny_data_dir, 1, 8)
    train_ddpm(data, tmp_path, CONFIG)
    with pytest.raises(SideError, match="different configuration"):
        train_ddpm(data, tmp_path, TrainConfig(**{**CONFIG.__dict__, "learning_rate": 0.1}))


def test_data_that_does_not_fit_the_unet(tiny_data_dir, tmp_path):
    with pytest.raises(SideError, match="pass matching"):
        train_ddpm(load_training_set(tiny_data_dir, 3, 8), tmp_path, CONFIG)
