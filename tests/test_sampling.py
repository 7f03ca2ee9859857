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


def push_down(x_t, t):
    """grad of log p(y | x) = -sum(x): the same downward push at every x, so it never saturates."""
    return -torch.ones_like(x_t)


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
        ({"guidance_scale": -1.0}, "guidance scale = -1.0"),
        ({"guidance_window": (50, 100)}, "outside the schedule"),
        ({"guidance_window": (60, 10)}, "T_LOW <= T_HIGH"),
        ({"num_steps": 0}, "sampler steps = 0"),
        ({"sampler": "euler"}, "Unknown sampler"),
    ],
)
def test_bad_sampling_parameters(model, change, message):
    with pytest.raises(SideError, match=message):
        sample(model, 2, dataclasses.replace(CONFIG, **change), guidance=darken)


def test_zero_samples_is_an_error(model):
    with pytest.raises(SideError, match="at least 1"):
        sample(model, 0, CONFIG)


@pytest.fixture(scope="module", params=["epsilon", "v_prediction", "sample"])
def typed_model(request, tmp_path_factory):
    """The tiny model with a schedule that declares each prediction type (same weights, no x0 clipping)."""
    from conftest import tiny_scheduler, tiny_unet
    from diffusers import DDPMScheduler

    from side_core.models import save_model

    scheduler = DDPMScheduler.from_config(tiny_scheduler().config, prediction_type=request.param, clip_sample=False)
    folder = tmp_path_factory.mktemp(request.param) / "model"
    save_model(tiny_unet(), scheduler, folder)
    return load_model(folder, device="cpu")


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_every_prediction_type_matches_the_diffusers_pipeline(typed_model, sampler):
    """Unguided, the loop is diffusers' own pipeline: equal to 2e-4 (1e-5 for noise-predicting models),
    also where it converts v and x0 predictions to noise and the scheduler converts them back."""
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler

    pipeline, scheduler = (DDIMPipeline, DDIMScheduler) if sampler == "ddim" else (DDPMPipeline, DDPMScheduler)
    pipe = pipeline(unet=typed_model.unet, scheduler=scheduler.from_config(typed_model.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=3, generator=torch.Generator().manual_seed(7), num_inference_steps=5, output_type="np")
    ours = sample(typed_model, 3, dataclasses.replace(CONFIG, sampler=sampler), torch.Generator().manual_seed(7))
    expected = torch.from_numpy(theirs.images).permute(0, 3, 1, 2) * 2 - 1
    converted = typed_model.scheduler.config.prediction_type != "epsilon"
    torch.testing.assert_close(ours.images, expected, atol=2e-4 if converted else 1e-5, rtol=0)


def test_guidance_shifts_the_clean_estimate_alike_for_every_prediction_type(typed_model):
    """eps_hat = eps - lambda sqrt(1 - abar) grad moves the step's x0 estimate by
    lambda (1 - abar) / sqrt(abar) grad, whether the model predicts noise, v or x0: so guidance
    pushes each kind of model toward the class by the same amount (x0 clipping off to see it)."""
    scale = 0.5
    config = dataclasses.replace(CONFIG, sampler="ddpm")
    first = dict(capture_steps=(1,))
    plain = sample(typed_model, 4, config, torch.Generator().manual_seed(1), **first).frames
    guided_config = dataclasses.replace(config, guidance_scale=scale)
    guided = sample(typed_model, 4, guided_config, torch.Generator().manual_seed(1), guidance=push_down, **first).frames
    (t,) = plain
    alpha_bar_t = typed_model.scheduler.alphas_cumprod[t]
    expected_shift = -scale * (1 - alpha_bar_t) / alpha_bar_t.sqrt()
    torch.testing.assert_close(
        guided[t] - plain[t], torch.full_like(plain[t], float(expected_shift)), atol=1e-3, rtol=1e-3
    )


def test_to_eps_recovers_the_noise():
    from side_core.sampling import to_eps

    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    alpha_bar_t = torch.tensor(0.3)
    x_t = alpha_bar_t.sqrt() * x0 + (1 - alpha_bar_t).sqrt() * eps
    v = alpha_bar_t.sqrt() * eps - (1 - alpha_bar_t).sqrt() * x0
    for output, kind in ((eps, "epsilon"), (x0, "sample"), (v, "v_prediction")):
        torch.testing.assert_close(to_eps(output, x_t, alpha_bar_t, kind), eps)
