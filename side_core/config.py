"""Configuration dataclasses, one per stage. Every field has a default and a one-line why; stage
folders in the run store are keyed by these values, and checkpoints carry them to rebuild."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class UNetConfig:
    """A small UNet2DModel that memorizes 100 faces in about half an hour on one CPU core."""

    sample_size: int = 24  # the bundled LFW faces are 25x25; one pixel cropped keeps 24 -> 12 -> 6
    channels: int = 1  # grayscale faces
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # 1.1 M parameters: fast on CPU, enough to copy
    layers_per_block: int = 1
    attention_at_lowest: bool = True  # attention only at 6x6, where it is cheap
    norm_num_groups: int = 8

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


@dataclass
class TrainConfig:
    """DDPM training on a small image set, for bundling a model that memorizes."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    num_train_timesteps: int = 1000  # the standard DDPM schedule (linear betas 1e-4 .. 0.02)
    batch_size: int = 32
    learning_rate: float = 1e-3  # high for a small model: memorization in minutes, not hours
    ema_decay: float = 0.999  # samples come from the EMA weights, as in DDPM
    max_steps: int = 100_000  # an upper bound; --minutes usually stops training first
    max_minutes: float | None = None  # wall-clock budget, so a run fits a session
    checkpoint_every: int = 200  # steps between checkpoints (EMA model folders + resume state)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        unet = dict(d.pop("unet", {}))
        if "block_out_channels" in unet:
            unet["block_out_channels"] = tuple(unet["block_out_channels"])
        return cls(unet=UNetConfig(**unet), **d)


@dataclass
class SampleConfig:
    """The denoising loop shared by plain and guided sampling."""

    # "ddpm" (ancestral) or "ddim" (deterministic). At 25 steps guidance works with DDPM, whose fresh
    # noise each step undoes the guidance's off-image push, and mostly hurts with DDIM (README, Results).
    sampler: str = "ddpm"
    num_steps: int = 25  # 25 steps already reproduce memorized faces on the bundled model
    eta: float = 0.0  # DDIM noise; 0 makes the sample a function of its initial noise
    guidance_scale: float = 0.0  # lambda of SIDE.md step 6; 0 is plain sampling
    guidance_window: tuple[int, int] | None = None  # [t_low, t_high] where guidance acts; None: all
    batch_size: int = 64  # the paper's batch; also the size of one store shard

    def key(self) -> dict:
        return asdict(self)


@dataclass
class ClassifierConfig:
    """The surrogate classifier p_phi(y | x_t, t) (SIDE.md step 5) or its time-blind twin (Cond)."""

    n_classes: int = 10
    channels: int = 1
    size: int = 24
    time_dependent: bool = True  # False: the Cond baseline, trained on clean images only
    width: int = 32  # channels of the first stage; doubled once further down
    blocks_per_stage: int = 1  # residual blocks per resolution
    n_stages: int = 3  # each stage after the first halves the resolution
    time_embed_dim: int = 64  # sinusoidal t features -> MLP -> FiLM scale and shift

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ClassifierTrainConfig:
    """How the classifier is trained on the labelled synthetic samples."""

    steps: int = 1500  # optimizer steps; a few minutes on 2 CPU cores at the defaults
    batch_size: int = 64
    learning_rate: float = 3e-4  # the paper's 1e-4 is for hours on a GPU; 3e-4 converges in minutes
    weight_decay: float = 0.05
    val_fraction: float = 0.1  # held out to report accuracy per timestep quartile honestly
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ClusterConfig:
    """Surrogate labels from K-means on L2-normalised features (SIDE.md steps 2-4)."""

    # "pixels", "unet" or "sscd". Pixels: the space the (pixel) similarity scores copies in, as SSCD
    # is for the paper; tight pixel clusters are repeated faces.
    feature: str = "pixels"
    k: int = 100  # the paper's K; with N_syn 4,096 about 40 samples per cluster
    # Keep clusters whose mean member-to-centroid cosine is at least tau (paper 0.5, for SSCD). On
    # pixels of the bundled faces cohesion spans 0.78-0.96 at K = 100; 0.89 keeps the tightest 46.
    tau: float = 0.89
    unkept: str = "background"  # samples of dropped clusters: "background" label, or "nearest" class (SIDE.md)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ExtractionConfig:
    """One extraction experiment: UnCond, Cond and SIDE at the same budget and sampler."""

    n_samples: int = 256  # N_G, the budget of every method
    n_syn: int = 4096  # plain samples that are clustered into surrogate classes (N_syn); ~5 min on 2 CPU cores
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    classifier_train: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)
    classifier_width: int = 32
    # lambda: set from the scale sweep on the bundled model (README, Results)
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(guidance_scale=4.0))
    seed: int = 0  # extraction seeds; the synthetic set uses seed + 1 so the two never share noise

    def to_dict(self) -> dict:
        return asdict(self)
