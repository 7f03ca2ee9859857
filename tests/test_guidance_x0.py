"""Guidance through the predicted clean image: a clean classifier on the model's x0 estimate,
differentiated through the UNet back to x_t."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import bright_and_dark

from side_core.classifier import (
    SurrogateClassifier,
    classifier_guidance,
    clean_image_guidance,
    predicted_x0,
    train_classifier,
)
from side_core.config import ClassifierConfig, ClassifierTrainConfig, SampleConfig
from side_core.sampling import sample

CLEAN = ClassifierConfig(n_classes=2, channels=1, size=8, width=8, n_stages=2, time_dependent=False)


@pytest.fixture(scope="module")
def clean_classifier(bright_dark_model):
    x0, labels = bright_and_dark()
    classifier, report = train_classifier(
        x0, labels, bright_dark_model.scheduler, CLEAN, ClassifierTrainConfig(steps=150)
    )
    assert report.clean_accuracy == 1.0
    return classifier


def target_log_prob(classifier, images: torch.Tensor, cls: int) -> float:
    with torch.no_grad():
        logits = classifier(images, torch.zeros(len(images), dtype=torch.long))
    return F.log_softmax(logits, dim=1)[:, cls].mean().item()


def test_gradient_has_the_input_shape_and_is_finite(bright_dark_model):
    torch.manual_seed(0)
    classifier = SurrogateClassifier(CLEAN).eval().requires_grad_(False)
    x_t = torch.randn(3, 1, 8, 8)
    t = torch.full((3,), 60)
    grad = clean_image_guidance(bright_dark_model, classifier, torch.tensor([0, 1, 0]))(x_t, t)
    assert grad.shape == x_t.shape and grad.dtype == x_t.dtype
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # the same gradient as differentiating the composition by hand
    x = x_t.clone().requires_grad_(True)
    log_probs = F.log_softmax(classifier(predicted_x0(bright_dark_model, x, t), torch.zeros_like(t)), dim=1)
    log_probs[torch.arange(3), torch.tensor([0, 1, 0])].sum().backward()
    assert torch.allclose(grad, x.grad, atol=1e-6)


def test_predicted_x0_inverts_the_forward_process(bright_dark_model):
    x0 = bright_and_dark(4)[0]
    eps, t = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)), torch.full((4,), 5)
    x_t = bright_dark_model.scheduler.add_noise(x0, eps, t)
    # at small t the trained model's estimate is close to the clean image; it stays in [-1, 1]
    estimate = predicted_x0(bright_dark_model, x_t, t)
    assert estimate.abs().max() <= 1.0
    assert (estimate - x0).abs().mean() < 0.15


def test_guided_samples_move_toward_the_target_class(bright_dark_model, clean_classifier):
    config = SampleConfig(num_steps=10, batch_size=16)
    guided_config = dataclasses.replace(config, guidance_scale=10.0)
    plain = sample(bright_dark_model, 16, config, torch.Generator().manual_seed(0)).images
    for cls in (0, 1):
        guidance = clean_image_guidance(bright_dark_model, clean_classifier, cls)
        guided = sample(bright_dark_model, 16, guided_config, torch.Generator().manual_seed(0), guidance).images
        assert target_log_prob(clean_classifier, guided, cls) > target_log_prob(clean_classifier, plain, cls) + 0.1


def test_noisy_guidance_is_unchanged_by_the_shared_helper(clean_classifier):
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    grad = classifier_guidance(clean_classifier, 1)(x, torch.zeros(2, dtype=torch.long))
    x = x.clone().requires_grad_(True)
    F.log_softmax(clean_classifier(x, torch.zeros(2, dtype=torch.long)), dim=1)[:, 1].sum().backward()
    assert torch.equal(grad, x.grad)
