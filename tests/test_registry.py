"""One registry per open choice: adding a feature, similarity, allocation, classifier or sampler is one
entry, which the configs accept, the command line offers and the engine uses; an unknown name is a
SideError that lists the choices."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import bright_and_dark
from diffusers import DDIMScheduler

from side_core.allocation import (
    ALLOCATIONS,
    Allocation,
    Target,
    allocation_weights,
    flagged_share,
    kept_share,
    missing_share,
)
from side_core.classifier import (
    CLASSIFIERS,
    Architecture,
    classifier_config,
    load_classifier,
    save_classifier,
    train_classifier,
)
from side_core.cli import build_parser, extraction_config
from side_core.config import ClassifierTrainConfig, ClusterConfig, ExtractionConfig, SampleConfig
from side_core.embed import FEATURES, Feature, embed, standardize
from side_core.errors import SideError
from side_core.neighbours import SIMILARITIES, SimilarityMeasure, make_similarity, search
from side_core.registry import Registry
from side_core.sampling import SAMPLERS, Sampler, make_scheduler, sample
from side_core.stages import Sharding


@pytest.fixture
def register():
    """``register(registry, name, entry)`` for one test: the entry is removed after it."""
    added = []

    def add(registry: Registry, name: str, entry) -> None:
        registry.register(name, entry)
        added.append((registry, name))

    yield add
    for registry, name in reversed(added):
        registry.unregister(name)


def extract_args(*flags: str):
    return build_parser().parse_args(["extract", "--method", "side", "--out", "out", *flags])


def extract_flags() -> dict:
    """The extract command's flags (argparse actions), by name."""
    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    return {flag: action for action in subcommands["extract"]._actions for flag in action.option_strings}


IMAGES = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


# -- the registry itself ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Named:
    help: str


def test_a_registry_keeps_its_order_and_refuses_unknown_and_repeated_names():
    colours = Registry("colour")
    colours.register("red", Named("warm"))
    colours.register("blue", Named("cold"))
    assert colours.names() == ("red", "blue") and list(colours) == ["red", "blue"]
    assert "red" in colours and "green" not in colours
    assert colours.get("blue") == Named("cold")
    assert colours.help() == "red: warm; blue: cold"
    with pytest.raises(SideError, match="^Unknown colour 'green': use one of red, blue.$"):
        colours.get("green")
    with pytest.raises(ValueError, match="already registered"):
        colours.register("red", Named("again"))
    colours.unregister("red")
    assert colours.names() == ("blue",)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SampleConfig(sampler="euler"), "Unknown sampler 'euler': use one of ddpm, ddim."),
        (lambda: ClusterConfig(feature="clip"), "Unknown feature 'clip': use one of unet, pixels, sscd."),
        (lambda: ExtractionConfig(classifier="vit"), "Unknown classifier 'vit': use one of unet-head, resnet."),
        (
            lambda: ExtractionConfig(allocation="greedy"),
            "Unknown allocation 'greedy': use one of flagged, uniform, stratified, missing.",
        ),
        (lambda: make_similarity("pixel"), "Unknown similarity 'pixel': use one of pixels, sscd."),
        (lambda: embed(IMAGES, "clip"), "Unknown feature 'clip'"),
        (lambda: Target("c", 3, allocation="greedy"), "Unknown allocation 'greedy'"),
        (lambda: classifier_config("vit", 2, 1, 8, True, 8), "Unknown classifier 'vit'"),
    ],
)
def test_an_unknown_name_is_refused_with_the_choices(build, message):
    with pytest.raises(SideError) as err:
        build()
    assert str(err.value).startswith(message)


def test_the_command_line_offers_the_registered_names_and_their_help():
    flags = extract_flags()
    for flag, registry in [
        ("--feature", FEATURES),
        ("--similarity", SIMILARITIES),
        ("--allocation", ALLOCATIONS),
        ("--classifier", CLASSIFIERS),
        ("--sampler", SAMPLERS),
    ]:
        assert tuple(flags[flag].choices) == registry.names(), flag
        for name, entry in registry.items():
            assert f"{name}: {entry.help}" in flags[flag].help, (flag, name)
    assert extract_args().similarity == "pixels"
    with pytest.raises(SystemExit):
        extract_args("--similarity", "pixel")


def test_importing_the_configs_imports_no_torch():
    code = "import sys, side_core.config; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- features -----------------------------------------------------------------------------------------
def test_a_new_feature_is_one_entry(register):
    register(FEATURES, "mean-colour", Feature(lambda images, inputs: images.mean(dim=(2, 3)).numpy(), "mean colour"))
    assert ClusterConfig(feature="mean-colour").feature == "mean-colour"
    assert extract_args("--feature", "mean-colour").feature == "mean-colour"
    np.testing.assert_array_equal(embed(IMAGES, "mean-colour"), IMAGES.mean(dim=(2, 3)).numpy())


def test_only_the_sscd_feature_needs_the_sscd_file():
    assert [name for name, feature in FEATURES.items() if feature.needs_sscd_file] == ["sscd"]


def test_the_app_refuses_a_feature_it_cannot_offer_rather_than_fall_back():
    """The app takes no SSCD file: it offers the other features, and says so for one that needs it."""
    from app_support import forms

    with pytest.raises(SideError, match="needs the SSCD TorchScript file, which the app does not take: use unet or"):
        forms.surrogate(ExtractionConfig(cluster=ClusterConfig(feature="sscd")))


# -- similarities -------------------------------------------------------------------------------------
def test_a_new_similarity_is_one_entry(register):
    cosine = SimilarityMeasure(lambda images, sscd: F.normalize(images.flatten(1), dim=1), "raw cosine", "raw pixels")
    register(SIMILARITIES, "raw-cosine", cosine)
    assert extract_args("--similarity", "raw-cosine").similarity == "raw-cosine"
    similarity = make_similarity("raw-cosine")
    assert similarity.to_dict() == {"name": "raw-cosine", "preprocessing": "raw pixels"}
    vectors = similarity.vectors(IMAGES)
    torch.testing.assert_close(vectors, F.normalize(IMAGES.flatten(1), dim=1), rtol=0, atol=0)
    found = search(vectors[:2], vectors)
    assert found.index[:, 0].tolist() == [0, 1] and np.allclose(found.max_similarity, 1.0)


def test_the_pixels_similarity_keeps_its_stored_name_and_its_vectors():
    similarity = make_similarity("pixels")
    assert similarity.to_dict() == {
        "name": "pixel",
        "preprocessing": "Pearson correlation of pixels (each image standardized to mean 0, std 1)",
    }
    z = standardize(IMAGES)
    assert torch.equal(similarity.vectors(IMAGES), z / z.shape[1] ** 0.5)


# -- allocations --------------------------------------------------------------------------------------
def first_class(target: Target, seed: int, sharding: Sharding, i: int) -> np.ndarray:
    return np.zeros(sharding.size(i), dtype=np.int64)


def largest_class(target: Target, seed: int, sharding: Sharding, i: int) -> np.ndarray:
    return np.full(sharding.size(i), int(np.argmax(target.weights)), dtype=np.int64)


def class_sizes(labels: np.ndarray, n_classes: int, partner: np.ndarray, kept: np.ndarray | None) -> np.ndarray:
    return np.bincount(labels, minlength=n_classes + 1)[:n_classes]


def test_a_new_allocation_is_one_entry(register):
    register(ALLOCATIONS, "first-class", Allocation(first_class, "every sample at class 0"))
    assert ExtractionConfig(allocation="first-class").allocation == "first-class"
    assert extract_args("--allocation", "first-class").allocation == "first-class"
    target = Target("c", 4, allocation="first-class")
    sharding = Sharding(10, 4)
    assert [target.classes(0, sharding, i).tolist() for i in range(3)] == [[0] * 4, [0] * 4, [0] * 2]
    assert allocation_weights("first-class", np.zeros(3, dtype=np.int64), 4, np.full(3, -1), None) is None
    with pytest.raises(SideError, match="Class weights go with the flagged and missing allocations"):
        Target("c", 4, allocation="first-class", weights=(1.0, 1.0, 1.0, 1.0))


def test_a_new_weighted_allocation_is_one_entry(register):
    register(ALLOCATIONS, "largest", Allocation(largest_class, "every sample at the largest class", class_sizes))
    labels = np.array([0, 1, 1, 1, 2, 3])  # 3 classes, 3 is background
    weights = allocation_weights("largest", labels, 3, np.full(6, -1), None)
    assert weights == (1.0, 3.0, 1.0)
    assert Target("c", 3, allocation="largest", weights=weights).classes(0, Sharding(5, 5), 0).tolist() == [1] * 5
    with pytest.raises(SideError, match="flagged and missing and largest allocations"):
        Target("c", 3, allocation="largest")


def test_the_allocation_weights_are_the_pool_evidence_of_each_allocation():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 60)  # 3 classes, 3 is background
    partner = np.where(rng.random(60) < 0.4, rng.integers(0, 60, 60), -1)
    kept = np.where(partner >= 0, labels, 3)
    assert allocation_weights("flagged", labels, 3, partner, None) == tuple(flagged_share(labels, 3, partner))
    assert allocation_weights("flagged", labels, 3, partner, kept) == tuple(kept_share(labels, 3, kept))
    assert allocation_weights("missing", labels, 3, partner, kept) == tuple(missing_share(labels, 3, partner))
    assert allocation_weights("uniform", labels, 3, partner, None) is None
    assert allocation_weights("stratified", labels, 3, partner, kept) is None


# -- classifiers --------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class LinearConfig:
    architecture: ClassVar[str] = "linear"
    n_classes: int
    pixels: int
    time_dependent: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


class LinearClassifier(nn.Module):
    """(x_t, t) -> logits: one linear map of the pixels and t."""

    def __init__(self, config: LinearConfig):
        super().__init__()
        self.config = config
        self.head = nn.Linear(config.pixels + 1, config.n_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([x.flatten(1), t.float()[:, None] / 100], dim=1))


def linear_config(n_classes: int, channels: int, size: int, time_dependent: bool, width: int) -> LinearConfig:
    return LinearConfig(n_classes=n_classes, pixels=channels * size * size, time_dependent=time_dependent)


def build_linear(config: LinearConfig, unet: nn.Module | None) -> LinearClassifier:
    return LinearClassifier(config)


def test_a_new_classifier_is_one_entry(register, bright_dark_model, tmp_path):
    recipe = ClassifierTrainConfig(steps=60, batch_size=16)
    register(CLASSIFIERS, "linear", Architecture(LinearConfig, linear_config, build_linear, "linear map", recipe))
    assert ExtractionConfig(classifier="linear").classifier == "linear"
    assert extraction_config(extract_args("--classifier", "linear")).classifier_train == recipe  # its own recipe
    config = classifier_config("linear", 2, 1, 8, True, 32)
    assert config == LinearConfig(n_classes=2, pixels=64)
    x0, labels = bright_and_dark()
    model, report = train_classifier(x0, labels, bright_dark_model.scheduler, config, recipe)
    assert isinstance(model, LinearClassifier) and report.clean_accuracy > 0.9
    save_classifier(model, report, tmp_path / "linear")
    loaded, _ = load_classifier(tmp_path / "linear")
    assert isinstance(loaded, LinearClassifier) and loaded.config == config
    assert torch.equal(loaded.head.weight, model.head.weight)


# -- samplers -----------------------------------------------------------------------------------------
def test_a_new_sampler_is_one_entry(register, bright_dark_model):
    register(SAMPLERS, "ddim-noisy", Sampler(DDIMScheduler, "DDIM with fresh noise at every step", {"eta": 1.0}))
    config = SampleConfig(sampler="ddim-noisy", num_steps=5, batch_size=4)
    assert extract_args("--sampler", "ddim-noisy").sampler == "ddim-noisy"
    assert isinstance(make_scheduler(bright_dark_model, config), DDIMScheduler)

    def draw(config: SampleConfig) -> torch.Tensor:
        return sample(bright_dark_model, 4, config, torch.Generator().manual_seed(0)).images

    noisy = draw(config)
    assert torch.equal(noisy, draw(config))  # its noise comes from the generator
    assert not torch.equal(noisy, draw(dataclasses.replace(config, sampler="ddim")))  # eta 1, not 0


def test_stored_sampler_keys_keep_the_ddim_noise():
    """Every stored generation's key holds "eta": 0.0 after the steps; the field itself is gone."""
    assert list(SampleConfig().to_dict()) == [
        "sampler",
        "num_steps",
        "eta",
        "guidance_scale",
        "guidance_window",
        "batch_size",
    ]
    assert ExtractionConfig().to_dict()["sample"]["eta"] == 0.0
    assert not hasattr(SampleConfig(), "eta")
