"""Every bad input is refused up front with a one-line SideError that names the problem and the fix.

Nothing here generates a sample: configs check themselves when built, and the commands check the
model and data before any stage starts (docs/errors.md lists each case and what the user gets).
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest
import torch
from conftest import save_pipeline, tiny_scheduler, tiny_unet, write_images
from PIL import Image

from side_core.cli import main
from side_core.config import (
    ClassifierConfig,
    ClassifierTrainConfig,
    ClusterConfig,
    ExtractionConfig,
    SampleConfig,
    TrainConfig,
    UNetConfig,
)
from side_core.data import load_training_set
from side_core.errors import SideError
from side_core.metrics import Bands, bands_from_train
from side_core.models import load_model
from side_core.neighbours import make_similarity, nearest_others
from side_core.store import write_json


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SampleConfig(guidance_scale=float("nan")), "guidance scale = nan"),
        (lambda: SampleConfig(guidance_scale=float("inf")), "guidance scale = inf"),
        (lambda: SampleConfig(guidance_scale=-1.0), "guidance scale = -1.0"),
        (lambda: SampleConfig(guidance_window=(60, 10)), "T_LOW <= T_HIGH"),
        (lambda: SampleConfig(guidance_window=(-5, 10)), "T_LOW <= T_HIGH"),
        (lambda: SampleConfig(num_steps=0), "sampler steps = 0"),
        (lambda: SampleConfig(batch_size=0), "batch size = 0"),
        (lambda: SampleConfig(sampler="euler"), "Unknown sampler"),
        (lambda: ClusterConfig(tau=1.5), "tau = 1.5"),
        (lambda: ClusterConfig(tau=float("nan")), "tau = nan"),
        (lambda: ClusterConfig(k=1), "K \\(clusters\\) = 1"),
        (lambda: ClusterConfig(feature="clip"), "Unknown feature"),
        (lambda: ClusterConfig(unkept="drop"), "Unknown unkept"),
        (lambda: ClassifierTrainConfig(steps=0), "classifier steps = 0: .*untrained"),
        (lambda: ClassifierTrainConfig(steps=-5), "classifier steps = -5"),
        (lambda: ClassifierTrainConfig(learning_rate=-1.0), "learning rate = -1.0"),
        (lambda: ClassifierConfig(n_classes=1, channels=1, size=8), "classes = 1: .*; lower tau or raise K"),
        (lambda: ExtractionConfig(n_samples=0), "N_G .* = 0"),
        (lambda: ExtractionConfig(n_syn=100, cluster=ClusterConfig(k=100)), "K = 100 clusters for N_syn = 100"),
        (lambda: ExtractionConfig(seed=-1), "seed = -1"),
        (lambda: ExtractionConfig(seed=10**20), "seed = 100000000000000000000"),
        (lambda: ExtractionConfig(surrogate_seed=2**32 - 1), "surrogate seed \\+ 1"),
        (lambda: ExtractionConfig(seed=1, surrogate_seed=0), "the synthetic set's seed"),
        (lambda: ExtractionConfig(allocation="greedy"), "Unknown allocation"),
        (lambda: ClusterConfig(keep_top=0.0), "keep_top"),
        (lambda: TrainConfig(max_steps=0), "max steps = 0"),
        (lambda: TrainConfig(checkpoint_every=0), "checkpoint every = 0"),
        (lambda: TrainConfig(batch_size=0), "batch size = 0"),
        (lambda: TrainConfig(learning_rate=-1.0), "learning rate = -1.0"),
        (lambda: TrainConfig(max_minutes=0.0), "minutes = 0.0"),
        (lambda: UNetConfig(sample_size=25), "Image size 25 cannot be halved 2 times: use a multiple of 4"),
        (lambda: UNetConfig(sample_size=0), "sample_size \\(image size\\) = 0"),
        (lambda: UNetConfig(channels=4), "Unknown channels"),
        (lambda: Bands.from_thresholds(2, 3, 4), "must lie in \\[-1, 1\\]"),
        (lambda: Bands.from_thresholds(0.5, 0.4, 0.9), "must increase"),
    ],
)
def test_bad_settings_are_refused_when_built(build, message):
    with pytest.raises(SideError, match=message):
        build()


def test_configs_are_frozen():
    with pytest.raises(AttributeError):
        SampleConfig().guidance_scale = 3.0  # type: ignore[misc]


# -- the CLI: exit status 2, one "error:" line, and nothing computed ---------------------------------
EXTRACT = ["--n-syn", "16", "--k", "3", "--tau", "0", "--classifier-steps", "5", "--steps", "2", "--n-samples", "4"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seed", "-1"], "seed = -1"),
        (["--seed", "100000000000000000000"], "seed = 100000000000000000000"),
        (["--threads", "-1"], "--threads -1"),
        (["--device", "bogus"], "Unknown device 'bogus'"),
        (["--guidance-scale", "nan"], "guidance scale = nan"),
        (["--guidance-scale", "inf"], "guidance scale = inf"),
        (["--guidance-window", "10", "5"], "T_LOW <= T_HIGH"),
        (["--guidance-window", "0", "5000"], "outside the schedule"),
        (["--classifier-steps", "0"], "classifier steps = 0"),
        (["--bands", "2", "3", "4"], "must lie in \\[-1, 1\\]"),
        (["--k", "16"], "K = 16 clusters for N_syn = 16"),
        (["--tau", "-0.1"], "tau = -0.1"),
        (["--steps", "1000"], "only 100 timesteps"),
        (["--feature", "sscd"], "SSCD TorchScript file"),
    ],
)
def test_extract_refuses_bad_flags_before_any_work(flags, message, tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["extract", "--method", "side", "--model", str(tiny_model_dir), "--data", str(tiny_data_dir)]
    assert main([*args, "--out", str(out), *EXTRACT, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err), err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not any(p.name.startswith("generate-") for p in (out / "store").glob("*"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu(tiny_model_dir, tmp_path, capsys):
    assert (
        main(
            [
                "extract",
                "--method",
                "uncond",
                "--model",
                str(tiny_model_dir),
                "--out",
                str(tmp_path),
                "--device",
                "cuda",
            ]
        )
        == 2
    )
    assert "no usable CUDA GPU: use --device cpu" in capsys.readouterr().err


def test_out_that_is_a_file(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "report").write_text("keep me")
    assert main(["compare", "--model", str(tiny_model_dir), "--out", str(tmp_path / "report")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert (tmp_path / "report").read_text() == "keep me"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--checkpoint-every", "0"], "checkpoint every = 0"),
        (["--size", "25"], "Image size 25 cannot be halved"),
        (["--batch-size", "0"], "batch size = 0"),
        (["--lr", "-1"], "learning rate = -1.0"),
        (["--max-steps", "0"], "max steps = 0"),
        (["--device", "bogus"], "Unknown device"),
    ],
)
def test_train_refuses_bad_flags(flags, message, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data_dir), "--out", str(out), "--size", "8", *flags]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not out.exists()


def test_train_out_that_is_a_file(tiny_data_dir, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["train", "--data", str(tiny_data_dir), "--out", str(tmp_path / "f"), "--size", "8"]) == 2
    assert "is a file" in capsys.readouterr().err


# -- model folders ---------------------------------------------------------------------------------
def _edit_config(folder, **changes):
    path = folder / "unet" / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def _edit_scheduler(folder, **changes):
    path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "unet" / "config.json").write_text("[1, 2]"), "holds a JSON list"),
        (lambda f: (f / "model_index.json").write_text('"x"'), "holds a JSON str"),
        (lambda f: _edit_config(f, sample_size=0), "sample_size = 0"),
        (lambda f: _edit_config(f, sample_size=-8), "sample_size = -8"),
        (lambda f: _edit_config(f, sample_size=[8, 16]), "8x16 \\(rectangular\\)"),
        (lambda f: _edit_config(f, sample_size="8"), "sample_size = '8'"),
        (lambda f: _edit_config(f, out_channels=2), "out_channels = 2 differs"),
        (lambda f: _edit_config(f, in_channels=4, out_channels=4), "in_channels = 4"),
        (lambda f: _edit_config(f, block_out_channels="abc"), "not a valid UNet2DModel config"),
        (lambda f: _edit_scheduler(f, beta_schedule="bogus"), "unknown beta_schedule 'bogus'"),
        (lambda f: _edit_scheduler(f, prediction_type="noise"), "unknown prediction_type 'noise'"),
        (lambda f: _edit_scheduler(f, num_train_timesteps="1000"), "num_train_timesteps = '1000'"),
        (lambda f: _edit_scheduler(f, beta_end=2.0), "beta_end = 2.0"),
    ],
)
def test_bad_model_folders(damage, message, tmp_path):
    folder = save_pipeline(tmp_path / "model")
    damage(folder)
    with pytest.raises(SideError, match=message):
        load_model(folder, device="cpu")


def test_non_finite_weights_are_refused(tmp_path):
    from side_core.models import save_model

    unet = tiny_unet()
    with torch.no_grad():
        unet.conv_out.weight[0, 0, 0, 0] = float("nan")
    save_model(unet, tiny_scheduler(), tmp_path / "model")
    with pytest.raises(SideError, match="NaN or infinite values .*conv_out.weight"):
        load_model(tmp_path / "model", device="cpu")


# -- training images -------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_named_like_an_image_is_not_read(tmp_path):
    folder = write_images(tmp_path / "imgs", 3)
    os.mkfifo(folder / "zz.png")  # opening it for reading would block for ever
    assert load_training_set(folder, 1, 8).names == ["img000.png", "img001.png", "img002.png"]


def test_a_decompression_bomb_is_skipped(tmp_path, monkeypatch, caplog):
    folder = write_images(tmp_path / "imgs", 3)
    Image.new("L", (64, 64)).save(folder / "bomb.png")
    Image.new("L", (40, 40)).save(folder / "near-bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # above 2x this PIL refuses; above 1x it warns
    data = load_training_set(folder, 1, 8)
    assert data.names == ["img000.png", "img001.png", "img002.png"]
    assert "skipping unreadable image bomb.png" in caplog.text
    assert "skipping unreadable image near-bomb.png" in caplog.text


def test_16_bit_images_keep_their_values(tmp_path):
    folder = write_images(tmp_path / "imgs", 2)
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(ramp).save(folder / "wide.png")  # a 16-bit grayscale PNG
    data = load_training_set(folder, 1, 8)
    wide = data.images[data.names.index("wide.png"), 0]
    expected = torch.from_numpy(np.round(ramp / 257.0)).float() / 127.5 - 1
    torch.testing.assert_close(wide, expected)
    assert any("16-bit grayscale scaled to 8 bits (1 images)" in s for s in data.preprocessing)


def test_exif_orientation_and_alpha_are_applied_and_recorded(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    pixels = np.zeros((8, 8), np.uint8)
    pixels[0, :] = 255  # a bright top row
    exif = Image.Exif()
    exif[0x0112] = 3  # rotated 180 degrees
    Image.fromarray(pixels).save(folder / "a.jpg", exif=exif, quality=100)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent black
    Image.fromarray(rgba, "RGBA").save(folder / "b.png")
    data = load_training_set(folder, 1, 8)
    rotated = data.images[0, 0]
    assert rotated[-1].mean() > 0.8 and rotated[0].mean() < -0.8  # the bright row is now at the bottom
    assert torch.all(data.images[1] == 1)  # transparent composited onto white
    assert any("EXIF orientation (1 images)" in s for s in data.preprocessing)
    assert any("transparency composited onto white (1 images)" in s for s in data.preprocessing)


def test_a_thumbnail_is_skipped_not_the_size_of_everything(tmp_path, caplog):
    folder = write_images(tmp_path / "imgs", 4, size=16)
    Image.new("L", (4, 4)).save(folder / "thumb.png")
    data = load_training_set(folder)
    assert data.size == 16 and len(data) == 4
    assert "skipping thumb.png: smaller than 16x16" in caplog.text
    with pytest.raises(SideError, match="Every image .* is smaller than 32x32"):
        load_training_set(folder, 1, 32)


# -- bands that stay meaningful --------------------------------------------------------------------
def _nn(images: torch.Tensor) -> np.ndarray:
    return nearest_others(make_similarity("pixels").vectors(images))[0]


@pytest.mark.parametrize(
    "images",
    [
        torch.rand(2, 1, 8, 8) * 2 - 1,  # two images
        (torch.rand(1, 1, 8, 8) * 2 - 1).repeat(6, 1, 1, 1),  # identical images
        torch.full((6, 1, 8, 8), 0.3),  # constant images
    ],
    ids=["two", "identical", "constant"],
)
def test_degenerate_training_sets_say_why(images):
    with pytest.raises(SideError, match="too few or too alike to calibrate .*--bands LOW MID HIGH"):
        bands_from_train(_nn(images))


def test_duplicated_training_images_do_not_close_the_high_band():
    """Real datasets hold near-duplicates; one duplicated pair must not put the high band at 1."""
    torch.manual_seed(0)
    train = torch.rand(40, 1, 8, 8) * 2 - 1
    train[1] = train[0]  # an exact duplicate
    train[3] = (train[2] + 0.02 * torch.randn(1, 8, 8)).clamp(-1, 1)  # a near-duplicate
    bands = bands_from_train(_nn(train))
    assert bands.high[0] < 0.9
    similarity = make_similarity("pixels")
    copy = similarity.vectors(train[10:11].clone())  # a copy of a training image that has no twin
    assert (copy @ similarity.vectors(train).T).max() >= bands.high[0]


def test_non_finite_values_never_reach_json(tmp_path):
    with pytest.raises(SideError, match="non-finite"):
        write_json(tmp_path / "r.json", {"accuracy": math.nan})
    assert not (tmp_path / "r.json").exists()
