"""Configuration dataclasses, one per stage. Every field has a one-line why; stage folders in the run
store are keyed by these values, and checkpoints carry them to rebuild.

The configs are frozen and keyword-only, and check themselves when built: a bad value is a
:class:`~side_core.errors.SideError` before any work starts, never an hour into a run. Make a changed
copy with ``dataclasses.replace``.

The open choices (sampler, feature, classifier, allocation) are the names registered beside their
implementations (side_core.registry): a config looks its choice up there when it is built, so that
importing this module imports no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from side_core.errors import SideError

UNKEPT = ("background", "nearest")  # what happens to samples of the clusters not kept
# What the classifier learns: "core", each kept cluster's pool samples that have a near-identical
# partner in the pool (everything else background); "clusters", every member of each kept cluster;
# "unfound", each kept cluster's pool samples with no near-identical partner (the repeated ones background);
# "near", each kept cluster's near misses: samples almost alike that no near-identical pair has found yet.
LABELS = ("core", "clusters", "unfound", "near")
# The labels drawn from the pool's near-identical pairs (they need its pool stage).
POOL_LABELS = ("core", "unfound", "near")
# Where a time-dependent classifier's training timesteps are drawn: "sampler", the sampler's own
# timesteps (where guidance acts); "uniform", all training timesteps (the paper).
TRAIN_TIMESTEPS = ("sampler", "uniform")
MAX_SEED = 2**32 - 1  # numpy's SeedSequence and torch accept it; shard seeds stay in 64 bits


def check_seed(seed: Any, name: str = "seed") -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SideError(f"{name} = {seed!r}: use a whole number between 0 and {MAX_SEED}.")


def _whole(name: str, value: Any, low: int, high: int | None = None, hint: str = "") -> None:
    """``value`` is an int in [low, high]."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        bound = f"of at least {low}" if high is None else f"between {low} and {high}"
        raise SideError(f"{name} = {value!r}: it must be a whole number {bound}{hint}.")


def _real(name: str, value: Any, low: float, high: float | None = None, low_open: bool = False, hint: str = "") -> None:
    """``value`` is a finite number in [low, high] (or (low, high] when ``low_open``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        above = f"above {low}" if low_open else f"at least {low}"
        bound = above if high is None else f"{above} and at most {high}"
        raise SideError(f"{name} = {value!r}: it must be a finite number {bound}{hint}.")


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise SideError(f"Unknown {name} {value!r}: use one of {', '.join(map(str, choices))}.")


class _Config:
    """What every config shares: a JSON-able dict (stage keys, checkpoints) and back."""

    def to_dict(self) -> dict:
        """The fields by name; a nested config as its own ``to_dict`` writes it (which may keep a
        retired field that stored keys hold)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value: Any) -> Any:
    return value.to_dict() if isinstance(value, _Config) else value


@dataclass(frozen=True, kw_only=True)
class UNetConfig(_Config):
    """A small UNet2DModel; the defaults are the bundled models' recipe (100 faces, 24x24 grayscale)."""

    sample_size: int = 24  # the bundled LFW faces are 25x25; one pixel cropped keeps 24 -> 12 -> 6
    channels: int = 1  # grayscale faces
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # 1.1 M parameters: fast on CPU, enough to copy
    layers_per_block: int = 1
    attention_at_lowest: bool = True  # attention only at the lowest resolution, where it is cheap
    norm_num_groups: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        _choice("channels", self.channels, (1, 3))
        _whole("layers_per_block", self.layers_per_block, 1)
        _whole("norm_num_groups", self.norm_num_groups, 1)
        if not self.block_out_channels or any(
            not isinstance(c, int) or c < 1 or c % self.norm_num_groups for c in self.block_out_channels
        ):
            raise SideError(
                f"block_out_channels = {self.block_out_channels}: each must be a positive multiple of "
                f"norm_num_groups = {self.norm_num_groups}."
            )
        factor = 2 ** (len(self.block_out_channels) - 1)  # each level after the first halves the image
        _whole("sample_size (image size)", self.sample_size, factor)
        if self.sample_size % factor:
            raise SideError(
                f"Image size {self.sample_size} cannot be halved {len(self.block_out_channels) - 1} times: use a "
                f"multiple of {factor} (e.g. {self.sample_size // factor * factor or factor})."
            )

    def unet_kwargs(self) -> dict:
        n = len(self.block_out_channels)
        attn = [self.attention_at_lowest and i == n - 1 for i in range(n)]
        return {
            "sample_size": self.sample_size,
            "in_channels": self.channels,
            "out_channels": self.channels,
            "block_out_channels": tuple(self.block_out_channels),
            "layers_per_block": self.layers_per_block,
            "down_block_types": tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
            "up_block_types": tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
            "norm_num_groups": self.norm_num_groups,
        }


@dataclass(frozen=True, kw_only=True)
class TrainConfig(_Config):
    """DDPM training on a small image set, for bundling a model that memorizes."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    num_train_timesteps: int = 1000  # the standard DDPM schedule (linear betas 1e-4 .. 0.02)
    batch_size: int = 32
    learning_rate: float = 1e-3  # high for a small model: memorization in minutes, not hours
    ema_decay: float = 0.999  # samples come from the EMA weights, as in DDPM
    max_steps: int = 100_000  # an upper bound; --minutes usually stops training first
    max_minutes: float | None = None  # wall-clock budget, so a run fits a session
    checkpoint_every: int = 200  # steps between checkpoints (EMA model folders + resume state)
    seed: int = 0  # weight initialisation, batches, noise and timesteps

    def __post_init__(self) -> None:
        _whole("num_train_timesteps", self.num_train_timesteps, 2)
        _whole("batch size", self.batch_size, 1)
        _real("learning rate", self.learning_rate, 0.0, low_open=True)
        _real("EMA decay", self.ema_decay, 0.0, 1.0, hint=" (0.999 is usual)")
        _whole("max steps", self.max_steps, 1)
        if self.max_minutes is not None:
            _real("minutes", self.max_minutes, 0.0, low_open=True)
        _whole("checkpoint every", self.checkpoint_every, 1, hint=" (steps between checkpoints)")
        check_seed(self.seed)


@dataclass(frozen=True, kw_only=True)
class SampleConfig(_Config):
    """The denoising loop shared by plain and guided sampling."""

    # A name in side_core.sampling.SAMPLERS. At 25 steps guidance works with DDPM, whose fresh noise
    # each step undoes the guidance's off-image push, and mostly hurts with DDIM (benchmarks/README.md).
    sampler: str = "ddpm"
    num_steps: int = 25  # 25 steps already reproduce memorized faces on the bundled model
    guidance_scale: float = 0.0  # lambda of the paper's classifier guidance; 0 is plain sampling
    guidance_window: tuple[int, int] | None = None  # [t_low, t_high] where guidance acts; None: all
    batch_size: int = 64  # the paper's batch; also the size of one store shard

    def __post_init__(self) -> None:
        from side_core.sampling import SAMPLERS

        SAMPLERS.get(self.sampler)
        _whole("sampler steps", self.num_steps, 1)
        _real("guidance scale", self.guidance_scale, 0.0, hint="; 0 is plain sampling")
        if self.guidance_window is not None:
            window = tuple(self.guidance_window)
            if len(window) != 2 or not all(isinstance(t, int) and not isinstance(t, bool) for t in window):
                raise SideError(f"Guidance window {self.guidance_window!r}: give two whole timesteps T_LOW T_HIGH.")
            if not 0 <= window[0] <= window[1]:
                raise SideError(f"Guidance window [{window[0]}, {window[1]}]: use 0 <= T_LOW <= T_HIGH.")
            object.__setattr__(self, "guidance_window", window)
        _whole("batch size", self.batch_size, 1)

    def to_dict(self) -> dict:
        # Every stored generation is keyed by this dict with a DDIM noise "eta" of 0, the only value it
        # ever took (the DDIM sampler fixes it): kept, in its place, so that they keep their keys.
        d = super().to_dict()
        return {"sampler": d.pop("sampler"), "num_steps": d.pop("num_steps"), "eta": 0.0, **d}


@dataclass(frozen=True, kw_only=True)
class ClassifierConfig(_Config):
    """The surrogate classifier p_phi(y | x_t, t) of the paper (arXiv 2410.02467), a ResNet, or its time-blind
    twin (Cond). Classes, channels and size come from the clustering and the model; they have no default."""

    architecture: ClassVar[str] = "resnet"
    n_classes: int
    channels: int
    size: int
    time_dependent: bool = True  # False: the Cond baseline, trained on clean images only
    width: int = 32  # channels of the first stage; doubled once further down
    blocks_per_stage: int = 1  # residual blocks per resolution
    n_stages: int = 3  # each stage after the first halves the resolution
    time_embed_dim: int = 64  # sinusoidal t features -> MLP -> FiLM scale and shift

    def __post_init__(self) -> None:
        _whole("classifier classes", self.n_classes, 2, hint="; lower tau or raise K")
        _whole("channels", self.channels, 1)
        _whole("image size", self.size, 1)
        _whole("classifier width", self.width, 1)
        _whole("blocks per stage", self.blocks_per_stage, 1)
        _whole("classifier stages", self.n_stages, 1)
        _whole("time embedding size", self.time_embed_dim, 2)
        if self.time_embed_dim % 2:
            raise SideError(f"time_embed_dim = {self.time_embed_dim}: it must be even (sine and cosine halves).")


@dataclass(frozen=True, kw_only=True)
class UNetHeadConfig(_Config):
    """A head on the target model's own UNet encoder (side_core.unet_head). The UNet is the model's:
    only the head's weights are trained and saved. Classes come from the clustering: no default."""

    architecture: ClassVar[str] = "unet-head"
    n_classes: int
    time_dependent: bool = True  # False: the Cond baseline, features at t = 0 of clean images only
    feature_block: int = 1  # the down block whose output joins the mid block's: mid-level detail
    width: int = 64  # channels of the head's 3x3 conv

    def __post_init__(self) -> None:
        _whole("classifier classes", self.n_classes, 2, hint="; lower tau or raise K")
        _whole("feature block", self.feature_block, 0, hint=" (an index into the UNet's down blocks)")
        _whole("head width", self.width, 1)


@dataclass(frozen=True, kw_only=True)
class ClassifierTrainConfig(_Config):
    """How the classifier is trained on the labelled synthetic samples. The defaults are the ResNet's
    recipe (the paper's classifier, trained from scratch); each classifier's entry in
    side_core.classifier.CLASSIFIERS holds its own (:func:`recipe`)."""

    steps: int = 1500  # optimizer steps; a few minutes on 2 CPU cores at the defaults
    batch_size: int = 64
    learning_rate: float = 3e-4  # the paper's 1e-4 is for hours on a GPU; 3e-4 converges in minutes
    weight_decay: float = 0.05
    val_fraction: float = 0.1  # held out to report accuracy per timestep quartile honestly
    seed: int = 0  # weight initialisation, the held-out split, batches, noise and timesteps
    timesteps: str = "uniform"  # where t is drawn (TRAIN_TIMESTEPS); "sampler" trains where guidance acts

    def __post_init__(self) -> None:
        _whole("classifier steps", self.steps, 1, hint="; an untrained classifier cannot guide")
        _whole("classifier batch size", self.batch_size, 1)
        _real("classifier learning rate", self.learning_rate, 0.0, low_open=True)
        _real("weight decay", self.weight_decay, 0.0)
        _real("held-out fraction", self.val_fraction, 0.0, 0.5)
        check_seed(self.seed)
        _choice("training timesteps", self.timesteps, TRAIN_TIMESTEPS)

    def key(self) -> dict:
        """The config's part of a classifier stage's key. Fields added since classifiers were first
        stored are left out at their defaults, the values those classifiers were trained with, so
        that they keep their keys."""
        later = {"timesteps": "uniform"}
        return {k: v for k, v in self.to_dict().items() if k not in later or v != later[k]}


# The UNet head's recipe. It trains in ~2 minutes on 2 CPU cores: its features are the UNet's, so 400
# steps at a high rate suffice; the ResNet learns its features from scratch (the defaults).
HEAD_RECIPE = ClassifierTrainConfig(steps=400, batch_size=128, learning_rate=1e-3, timesteps="sampler")


def recipe(classifier: str) -> ClassifierTrainConfig:
    """The training recipe of a classifier (its entry in side_core.classifier.CLASSIFIERS)."""
    from side_core.classifier import CLASSIFIERS  # the registry imports torch: not at this module's import

    return CLASSIFIERS.get(classifier).recipe


@dataclass(frozen=True, kw_only=True)
class ClusterConfig(_Config):
    """Surrogate labels from K-means on L2-normalised features (the paper's surrogate conditions)."""

    # A name in side_core.embed.FEATURES. Pixels: the space the pixels similarity scores copies in, as
    # SSCD is for the paper; tight pixel clusters are repeated faces.
    feature: str = "pixels"
    k: int = 100  # the paper's K; with N_syn 4,096 about 40 samples per cluster
    # Which clusters become surrogate classes, by cohesion (mean member-to-centroid cosine). The
    # default keeps the most cohesive fraction keep_top: a rule that means the same for any model and
    # feature, where an absolute cosine does not (on pixels, cohesion spans 0.78-0.96 for the bundled
    # faces and 0.88-0.98 for Fashion-MNIST). tau set: the paper's absolute rule, cohesion >= tau.
    keep_top: float = 0.5
    tau: float | None = None
    unkept: str = "background"  # samples of dropped clusters: "background" label, or "nearest" class (paper)
    seed: int = 0

    def __post_init__(self) -> None:
        from side_core.embed import FEATURES

        FEATURES.get(self.feature)
        _whole("K (clusters)", self.k, 2)
        _real("keep_top (fraction of clusters kept)", self.keep_top, 0.0, 1.0, low_open=True)
        if self.tau is not None:
            _real("tau", self.tau, 0.0, 1.0, hint="; cohesion is a cosine")
        _choice("unkept", self.unkept, UNKEPT)
        check_seed(self.seed)

    @property
    def keep_rule(self) -> str:
        """Which clusters become classes, in words (for logs, reports and the app)."""
        if self.tau is not None:
            return f"keeping cohesion >= tau {self.tau:g}"
        return f"keeping the top {self.keep_top:.0%} by cohesion"


@dataclass(frozen=True, kw_only=True)
class ExtractionConfig(_Config):
    """One extraction experiment: UnCond, Cond and SIDE at the same budget and sampler."""

    n_samples: int = 256  # N_G, the budget of every method
    n_syn: int = 4096  # plain samples that are clustered into surrogate classes (N_syn); ~5 min on 2 CPU cores
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    classifier: str = "unet-head"  # the guiding classifier (side_core.classifier.CLASSIFIERS); "resnet": the paper's
    labels: str = "core"  # what the classifier learns (LABELS); "clusters" is the paper's
    classifier_train: ClassifierTrainConfig = field(default_factory=lambda: HEAD_RECIPE)  # the unet-head's
    classifier_width: int = 32  # the ResNet's first-stage channels
    # lambda: set from the scale sweep on the bundled model (benchmarks/README.md)
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(guidance_scale=4.0))
    # how guided samples spread over the classes (side_core.allocation.ALLOCATIONS); the paper's: "uniform"
    allocation: str = "flagged"
    repel: bool = False  # push guided samples off the pool's near-identical samples (side_core.repulsion)
    seed: int = 0  # the N_G samples of every method
    # The surrogate: the synthetic set's shards use surrogate_seed + 1; K-means and the classifiers
    # take their own seeds (cluster.seed, classifier_train.seed; the CLI sets all from one flag).
    surrogate_seed: int = 0

    def __post_init__(self) -> None:
        from side_core.allocation import ALLOCATIONS
        from side_core.classifier import CLASSIFIERS

        _whole("N_G (samples per method)", self.n_samples, 1)
        _whole("N_syn (samples to cluster)", self.n_syn, 3)
        # K-means needs K < N_syn: with K == N_syn every cluster is one sample and the silhouette is undefined.
        if self.cluster.k >= self.n_syn:
            raise SideError(
                f"K = {self.cluster.k} clusters for N_syn = {self.n_syn} samples: K must be smaller than N_syn; "
                "lower K or raise N_syn (about 40 samples per cluster works well)."
            )
        _whole("classifier width", self.classifier_width, 1)
        CLASSIFIERS.get(self.classifier)
        _choice("labels", self.labels, LABELS)
        ALLOCATIONS.get(self.allocation)
        if not isinstance(self.repel, bool):
            raise SideError(f"repel = {self.repel!r}: give True or False.")
        check_seed(self.seed)
        check_seed(self.surrogate_seed)
        check_seed(self.synthetic_seed, "surrogate seed + 1 (the synthetic set's seed)")
        if self.seed == self.synthetic_seed:
            raise SideError(
                f"seed = {self.seed} is the synthetic set's seed (surrogate seed + 1): the N_G samples would repeat "
                "the first samples the surrogate was built from; use another seed."
            )

    @property
    def synthetic_seed(self) -> int:
        return self.surrogate_seed + 1


def paper_recipe(config: ExtractionConfig) -> ExtractionConfig:
    """``config`` with the paper's SIDE recipe: the ResNet classifier trained on every member of each
    kept cluster, guided samples spread uniformly over the classes (the classifier's seed is kept)."""
    train = replace(recipe("resnet"), seed=config.classifier_train.seed)
    return replace(config, classifier="resnet", labels="clusters", allocation="uniform", classifier_train=train)
