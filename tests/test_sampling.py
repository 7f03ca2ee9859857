"""The denoising loop: reproducibility, scale 0, validation, capture, guidance direction."""

import dataclasses

import pytest
import torch

from side_core.config import SampleConfig
from side_core.errors import SideError
from side_core.models import load_model
from side_core.sampling import sample


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir, device="cpu")


def darken(x_t, t):
    """grad of log p(dark | x) for p(dark | x) = sigmoid(-sum x): pushes every pixel down."""
    return -torch.sigmoid(x_t.flatten(1).sum(1))[:, None, None, None].expand_as(x_t)


CONFIG = SampleConfig(num_steps=5, batch_size=4)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_scale_zero_reproduces_unguided_exactly(model, sampler):
    config = dataclasses.replace(CONFIG, sampler=sampler)
    plain = sample(model, 6, config, torch.Generator().manual_seed(3)).images
    zero = sample(model, 6, config, torch.Generator().manual_seed(3), guidance=darken).images
    assert plain.shape == (6, 1, 8, 8)
    assert torch.equal(plain, zero)


def test_guidance_moves_samples_along_the_gradient(model):
    plain = sample(model, 8, CONFIG, torch.Generator().manual_seed(1)).images
    guided_config = dataclasses.replace(CONFIG, guidance_scale=5.0)
    guided = sample(model, 8, guided_config, torch.Generator().manual_seed(1), guidance=darken).images
    assert guided.mean() < plain.mean() - 0.05


def test_guidance_window_limits_where_guidance_acts(model):
    seen = []

    def record(x_t, t):
        seen.append(int(t[0]))
        return torch.zeros_like(x_t)

    config = dataclasses.replace(CONFIG, guidance_scale=1.0, guidance_window=(0, 40))
    sample(model, 2, config, torch.Generator().manual_seed(0), guidance=record)
    assert seen and all(t <= 40 for t in seen)
    assert len(seen) < config.num_steps


def test_capture_and_progress(model):
    reports = []
    result = sample(model, 5, CONFIG, torch.Generator().manual_seed(0), progress=reports.append, capture_steps=(1, 5))
    assert len(reports) == 2 * CONFIG.num_steps  # two batches of at most 4
    assert reports[-1].step == reports[-1].n_steps == 5
    assert len(result.frames) == 2
    assert all(frame.shape == (5, 1, 8, 8) for frame in result.frames.values())
    # the last captured x0 estimate is the final sample itself (DDIM's final step returns it)
    last_t = min(result.frames)
    assert torch.allclose(result.frames[last_t].clamp(-1, 1), result.images, atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"guidance_scale": -1.0}, "Guidance scale must be >= 0"),
        ({"guidance_window": (50, 100)}, "outside the schedule"),
        ({"guidance_window": (60, 10)}, "outside the schedule"),
        ({"num_steps": 0}, "Sampler steps"),
        ({"sampler": "euler"}, "Unknown sampler"),
    ],
)
def test_bad_sampling_parameters(model, change, message):
    with pytest.raises(SideError, match=message):
        sample(model, 2, dataclasses.replace(CONFIG, **change), guidance=darken)


def test_zero_samples_is_an_error(model):
    with pytest.raises(SideError, match="at least 1"):
        sample(model, 0, CONFIG)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_unguided_loop_matches_the_diffusers_pipeline(model, sampler):
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler

    if sampler == "ddim":
        pipe = DDIMPipeline(unet=model.unet, scheduler=DDIMScheduler.from_config(model.scheduler.config))
    else:
        pipe = DDPMPipeline(unet=model.unet, scheduler=DDPMScheduler.from_config(model.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=3, generator=torch.Generator().manual_seed(7), num_inference_steps=5, output_type="np")
    ours = sample(model, 3, dataclasses.replace(CONFIG, sampler=sampler), torch.Generator().manual_seed(7))
    expected = torch.from_numpy(theirs.images).permute(0, 3, 1, 2) * 2 - 1
    torch.testing.assert_close(ours.images, expected, atol=1e-5, rtol=0)
