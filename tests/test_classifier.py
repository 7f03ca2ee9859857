"""The surrogate classifier: training on noised inputs, per-quartile accuracy, save/reload, and
guidance that moves samples toward the chosen class."""

import dataclasses
import json

import torch
from conftest import bright_and_dark

from side_core.classifier import (
    ClassifierReport,
    classifier_guidance,
    load_classifier,
    save_classifier,
    timestep_accuracy,
    train_classifier,
)
from side_core.config import ClassifierConfig, ClassifierTrainConfig, SampleConfig
from side_core.resnet import SurrogateClassifier
from side_core.sampling import sample


def share_of_class(classifier, images: torch.Tensor, cls: int) -> float:
    with torch.no_grad():
        predicted = classifier(images, torch.zeros(len(images), dtype=torch.long)).argmax(1)
    return (predicted == cls).float().mean().item()


def test_accuracy_is_reported_per_timestep_quartile(trained_classifier):
    _, report = trained_classifier
    assert report.quartiles == [(0, 24), (25, 49), (50, 74), (75, 99)]
    assert report.clean_accuracy == 1.0
    assert report.accuracy[0] > 0.9  # little noise: easy
    assert report.chance == 0.5
    assert report.loss_history and report.loss_history[-1][1] < report.loss_history[0][1]
    assert ClassifierReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report  # a stage's summary


def test_accuracy_among_the_targets_leaves_the_other_labels_out(bright_dark_model, trained_classifier):
    """With n_targets, labels past the first n_targets never win the prediction (as a background label
    that guidance never aims at): among one target, every bright sample is right even at pure noise."""
    classifier, _ = trained_classifier
    x0, labels = bright_and_dark()
    bright = labels == 0

    def accuracy(n_targets):
        generator = torch.Generator().manual_seed(0)
        return timestep_accuracy(
            classifier, x0[bright], labels[bright], bright_dark_model.scheduler, [99, 50, 5], generator, 1, n_targets
        )

    assert accuracy(1) == [1.0, 1.0, 1.0]
    assert accuracy(None)[-1] > 0.9 and accuracy(None) == accuracy(2)  # all labels: the plain argmax


def test_guidance_moves_samples_toward_the_class(bright_dark_model, trained_classifier):
    classifier, _ = trained_classifier
    config = SampleConfig(num_steps=10, batch_size=32)
    guided_config = dataclasses.replace(config, guidance_scale=20.0)
    plain = sample(bright_dark_model, 32, config, torch.Generator().manual_seed(0)).images
    for cls in (0, 1):
        guidance = classifier_guidance(classifier, cls)
        guided = sample(bright_dark_model, 32, guided_config, torch.Generator().manual_seed(0), guidance).images
        assert share_of_class(classifier, guided, cls) > share_of_class(classifier, plain, cls) + 0.1


def test_guidance_of_one_sample_does_not_depend_on_its_batch(trained_classifier):
    """GroupNorm, not BatchNorm: a sample's gradient is the same alone or in a batch."""
    classifier, _ = trained_classifier
    x = torch.randn(4, 1, 8, 8)
    t = torch.full((4,), 50)
    grad = classifier_guidance(classifier, 1)
    torch.testing.assert_close(grad(x, t)[:1], grad(x[:1], t[:1]), rtol=1e-4, atol=1e-6)


def test_save_and_reload(tmp_path, trained_classifier):
    classifier, report = trained_classifier
    save_classifier(classifier, report, tmp_path / "clf")
    loaded, meta = load_classifier(tmp_path / "clf")
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 40, 90])
    torch.testing.assert_close(loaded(x, t), classifier(x, t))
    assert meta["clean_accuracy"] == report.clean_accuracy
    assert loaded.config == classifier.config


def test_time_blind_classifier_ignores_t(bright_dark_model):
    x0, labels = bright_and_dark(32)
    config = ClassifierConfig(n_classes=2, channels=1, size=8, width=8, n_stages=2, time_dependent=False)
    train_config = ClassifierTrainConfig(steps=20, batch_size=16)
    classifier, _ = train_classifier(x0, labels, bright_dark_model.scheduler, config, train_config)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(classifier(x, torch.tensor([0, 0])), classifier(x, torch.tensor([99, 5])))


def test_any_channels_and_size():
    classifier = SurrogateClassifier(ClassifierConfig(n_classes=5, channels=3, size=64))
    assert classifier(torch.randn(2, 3, 64, 64), torch.tensor([1, 2])).shape == (2, 5)
