"""The UNet-head classifier: a head on the model's own frozen encoder, its guidance, and its checkpoints."""

import dataclasses

import pytest
import torch
from conftest import bright_and_dark, tiny_scheduler, tiny_unet

from side_core.classifier import (
    classifier_guidance,
    load_classifier,
    save_classifier,
    train_classifier,
    training_timesteps,
)
from side_core.config import HEAD_RECIPE, ClassifierConfig, ClassifierTrainConfig, SampleConfig, UNetHeadConfig
from side_core.errors import SideError
from side_core.resnet import SurrogateClassifier
from side_core.sampling import make_scheduler, sample
from side_core.store import read_json, read_tensors, write_json
from side_core.unet_head import UNetHead

SAMPLER = SampleConfig(num_steps=10, batch_size=32)


@pytest.fixture(scope="module")
def trained_head(bright_dark_model):
    """A time-dependent head trained 150 steps on the bright and dark images at the sampler's timesteps."""
    x0, labels = bright_and_dark()
    timesteps = [int(t) for t in make_scheduler(bright_dark_model, SAMPLER).timesteps]
    train_config = dataclasses.replace(HEAD_RECIPE, steps=150, batch_size=32)
    return train_classifier(
        x0,
        labels,
        bright_dark_model.scheduler,
        UNetHeadConfig(n_classes=2),
        train_config,
        unet=bright_dark_model.unet,
        sampler_timesteps=timesteps,
    )


def test_the_head_classifies_any_noisy_batch_and_holds_no_unet_weights():
    unet = tiny_unet()
    head = UNetHead(UNetHeadConfig(n_classes=5), unet)
    for t in (0, 1, 50, 99):
        x_t = torch.randn(3, 1, 8, 8)
        assert head(x_t, torch.full((3,), t)).shape == (3, 5)
    assert not any(name.startswith("unet") for name in head.state_dict())
    assert sum(p.numel() for p in head.parameters()) < sum(p.numel() for p in unet.parameters())
    # the Cond twin reads the features at t = 0 whatever t it is given
    blind = UNetHead(UNetHeadConfig(n_classes=5, time_dependent=False), unet)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(blind(x, torch.tensor([0, 0])), blind(x, torch.tensor([99, 5])))
    with pytest.raises(SideError, match="feature_block = 2, but the UNet has 2 down blocks"):
        UNetHead(UNetHeadConfig(n_classes=5, feature_block=2), unet)


def test_guidance_gradient_has_the_input_shape_and_leaves_the_unet_untouched():
    unet = tiny_unet()
    head = UNetHead(UNetHeadConfig(n_classes=3), unet)
    x_t, t = torch.randn(4, 1, 8, 8), torch.tensor([0, 30, 60, 99])
    grad = classifier_guidance(head, torch.tensor([0, 1, 2, 0]))(x_t, t)
    assert grad.shape == x_t.shape and grad.abs().sum() > 0
    assert all(p.grad is None for p in unet.parameters())
    # one sample's gradient does not depend on its batch (GroupNorm over each sample's features)
    alone = classifier_guidance(head, 0)(x_t[:1], t[:1])
    torch.testing.assert_close(grad[:1], alone, rtol=1e-4, atol=1e-6)


def test_training_draws_t_where_the_sampler_acts():
    paper = ClassifierTrainConfig()
    assert training_timesteps(tiny_scheduler(), paper, None).tolist() == list(range(100))
    head = HEAD_RECIPE
    assert training_timesteps(tiny_scheduler(), head, [90, 45, 0]).tolist() == [90, 45, 0]
    with pytest.raises(SideError, match="sampler_timesteps"):
        training_timesteps(tiny_scheduler(), head, None)


def test_guided_samples_move_toward_their_class(bright_dark_model, trained_head):
    """Class 0 is bright, class 1 dark: guidance toward each makes the samples brighter or darker
    than plain samples from the same noise."""
    head, report = trained_head
    assert report.clean_accuracy > 0.9
    plain = sample(bright_dark_model, 32, SAMPLER, torch.Generator().manual_seed(0)).images
    guided_config = dataclasses.replace(SAMPLER, guidance_scale=20.0)
    brightness = {}
    for cls in (0, 1):
        guidance = classifier_guidance(head, cls)
        images = sample(bright_dark_model, 32, guided_config, torch.Generator().manual_seed(0), guidance).images
        brightness[cls] = images.mean().item()
    assert brightness[0] > plain.mean().item() + 0.05 > brightness[1] + 0.1


def test_save_and_reload_on_the_models_unet(tmp_path, bright_dark_model, trained_head):
    head, report = trained_head
    save_classifier(head, report, tmp_path / "head")
    assert read_json(tmp_path / "head" / "classifier.json")["architecture"] == "unet-head"
    assert set(read_tensors(tmp_path / "head" / "classifier.safetensors")) == set(head.state_dict())
    loaded, meta = load_classifier(tmp_path / "head", unet=bright_dark_model.unet)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 40, 90])
    torch.testing.assert_close(loaded(x, t), head(x, t))
    assert loaded.config == head.config and meta["clean_accuracy"] == report.clean_accuracy
    with pytest.raises(SideError, match="pass the model's unet"):
        load_classifier(tmp_path / "head")


def test_a_checkpoint_that_names_no_architecture_is_a_resnet(tmp_path):
    """Classifiers stored before the UNet head existed name no architecture: they still load."""
    resnet = SurrogateClassifier(ClassifierConfig(n_classes=3, channels=1, size=8, width=8, n_stages=2))
    save_classifier(resnet, None, tmp_path / "old")
    meta = read_json(tmp_path / "old" / "classifier.json")
    assert meta.pop("architecture") == "resnet"
    write_json(tmp_path / "old" / "classifier.json", meta)
    loaded, _ = load_classifier(tmp_path / "old")
    assert isinstance(loaded, SurrogateClassifier) and loaded.config == resnet.config
