"""The surrogate classifier, its training, evaluation, guidance and checkpoints.

Two architectures (``ExtractionConfig.classifier``), each an entry of :data:`CLASSIFIERS`: a head on the
target model's own UNet encoder (side_core.unet_head, the default), and the paper's small ResNet
(side_core.resnet). ``time_dependent=True`` gives SIDE's noise-aware classifier p_phi(y | x_t, t),
trained on x_t = scheduler.add_noise(x0, eps, t) with t drawn over all training timesteps or over the
sampler's own; ``False`` gives the Cond baseline's classifier, trained on clean images and blind to t.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

from side_core.config import HEAD_RECIPE, ClassifierConfig, ClassifierTrainConfig, UNetHeadConfig
from side_core.distributed import DataParallel
from side_core.errors import SideError
from side_core.registry import Registry
from side_core.resnet import SurrogateClassifier
from side_core.sampling import GuidanceFn
from side_core.store import finite_or_none, read_json, read_tensors, write_json, write_tensors
from side_core.unet_head import UNetHead

log = logging.getLogger(__name__)


Classifier = SurrogateClassifier | UNetHead  # (x_t (N, C, H, W), t (N,)) -> (N, n_classes) logits


@dataclass
class ClassifierReport:
    """Held-out accuracy, per quartile of the training timesteps, clean, and (where evaluated) at each
    timestep the sampler visits, where guidance acts."""

    quartiles: list[tuple[int, int]]  # [t_low, t_high] of each quartile
    accuracy: list[float]  # accuracy in each quartile (time-blind classifiers: on the same x_t)
    clean_accuracy: float  # accuracy on clean held-out samples (t = 0)
    chance: float
    loss_history: list[tuple[int, float]]  # (step, smoothed training loss)
    timesteps: list[int] = field(default_factory=list)  # the sampler's timesteps, in its order (empty: not evaluated)
    timestep_accuracy: list[float] = field(default_factory=list)  # accuracy at each of them

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierReport:
        """Read what :meth:`to_dict` wrote (a classifier stage's summary); null accuracies are NaN."""
        return cls(
            quartiles=[tuple(q) for q in d["quartiles"]],
            accuracy=[_nan_if_null(a) for a in d["accuracy"]],
            clean_accuracy=_nan_if_null(d["clean_accuracy"]),
            chance=float(d["chance"]),
            loss_history=[tuple(p) for p in d["loss_history"]],
            timesteps=[int(t) for t in d.get("timesteps", [])],
            timestep_accuracy=[_nan_if_null(a) for a in d.get("timestep_accuracy", [])],
        )

    def timestep_mean(self, low: int, high: int) -> float:
        """Mean accuracy over the evaluated sampler timesteps t with low <= t <= high (NaN: none there)."""
        inside = [a for t, a in zip(self.timesteps, self.timestep_accuracy, strict=True) if low <= t <= high]
        return float(np.mean(inside)) if inside else float("nan")

    def to_dict(self) -> dict:
        """JSON-able; an accuracy over no held-out samples (NaN) is null."""
        return {
            "quartiles": [list(q) for q in self.quartiles],
            "accuracy": [finite_or_none(a) for a in self.accuracy],
            "clean_accuracy": finite_or_none(self.clean_accuracy),
            "chance": self.chance,
            "loss_history": [list(p) for p in self.loss_history],
            "timesteps": list(self.timesteps),
            "timestep_accuracy": [finite_or_none(a) for a in self.timestep_accuracy],
        }


def _nan_if_null(a: float | None) -> float:
    return float("nan") if a is None else float(a)


def train_classifier(
    x0: torch.Tensor,
    labels: torch.Tensor,
    scheduler: DDPMScheduler,
    config: ClassifierConfig,
    train_config: ClassifierTrainConfig = ClassifierTrainConfig(),
    device: str | torch.device = "cpu",
    progress: Callable[[int, int, float], None] | None = None,
    n_targets: int | None = None,
    unet: UNet2DModel | None = None,
    sampler_timesteps: Sequence[int] | None = None,
) -> tuple[Classifier, ClassifierReport]:
    """Train on labelled clean samples x0 (N, C, H, W) in [-1, 1] with labels (N,) int64.

    The time-dependent classifier sees scheduler.add_noise(x0, eps, t), t uniform over the training
    timesteps or, with ``train_config.timesteps == "sampler"``, over ``sampler_timesteps``; the
    time-blind one sees x0. A :class:`UNetHeadConfig` needs the model's ``unet``; only the head is
    trained. ``progress(step, total, loss)`` is called every step.
    Accuracy is reported on held-out samples with labels below ``n_targets`` (default: all), so
    that a background label, which guidance never aims at, does not inflate it.
    """
    if len(x0) != len(labels):
        raise SideError(f"{len(x0)} samples but {len(labels)} labels: they must match.")
    device = torch.device(device)
    generator = torch.Generator().manual_seed(train_config.seed)
    val_idx, train_idx = held_out_split(len(x0), train_config, generator)
    x_train, y_train = x0[train_idx].to(device), labels[train_idx].to(device)
    with torch.random.fork_rng(devices=[]):  # seeded weights, without touching the caller's global RNG
        torch.manual_seed(train_config.seed)
        model = build_classifier(config, unet).to(device)
    dp = DataParallel(model)  # DDP over the launched processes, if any (they all call this together)
    opt = torch.optim.AdamW(model.parameters(), lr=train_config.learning_rate, weight_decay=train_config.weight_decay)
    train_t = training_timesteps(scheduler, train_config, sampler_timesteps) if config.time_dependent else None
    running, history = None, []
    model.train()
    for step in range(1, train_config.steps + 1):
        idx = torch.randint(len(x_train), (train_config.batch_size,), generator=generator).to(device)
        x, y = x_train[idx], y_train[idx]
        if config.time_dependent:
            t = train_t[torch.randint(len(train_t), (len(x),), generator=generator)].to(device)
            eps = torch.randn(x.shape, generator=generator).to(device)
            x = scheduler.add_noise(x, eps, t)
        else:
            t = torch.zeros(len(x), dtype=torch.long, device=device)
        # Cosine decay: the last steps refine rather than jump.
        for group in opt.param_groups:
            group["lr"] = train_config.learning_rate * 0.5 * (1 + math.cos(math.pi * step / train_config.steps))
        loss = dp.cross_entropy(x, t, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss = dp.global_loss(loss)
        if not math.isfinite(loss.item()):
            raise SideError(
                f"Classifier training diverged (loss {loss.item()} at step {step}): lower the classifier "
                "learning rate, or check that the generated samples are finite."
            )
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 50 == 0 or step == train_config.steps:
            history.append((step, round(running, 4)))
        if progress is not None:
            progress(step, train_config.steps, running)
    model.eval().requires_grad_(False)
    if n_targets is not None:
        val_idx = val_idx[labels[val_idx] < n_targets]
    report = evaluate(model, x0[val_idx], labels[val_idx], scheduler, generator)
    report.loss_history = history
    log.info(
        "classifier (%s) held-out accuracy per t quartile %s, clean %.2f, chance %.2f",
        "time-dependent" if config.time_dependent else "time-blind",
        [round(a, 2) for a in report.accuracy],
        report.clean_accuracy,
        report.chance,
    )
    return model, report


@dataclass(frozen=True)
class Architecture:
    """One guiding classifier: its config class, whose ``architecture`` is the name it is registered under
    (checkpoints record it, to be rebuilt); ``configure(n_classes, channels, size, time_dependent, width)``
    -> its config for a model's images; ``build(config, unet)`` -> the untrained classifier (``unet``: the
    model's, for those that read it)."""

    config_class: type[ClassifierConfig | UNetHeadConfig]
    configure: Callable[[int, int, int, bool, int], ClassifierConfig | UNetHeadConfig]
    build: Callable[[ClassifierConfig | UNetHeadConfig, UNet2DModel | None], Classifier]
    help: str
    recipe: ClassifierTrainConfig  # how it is trained by default


def _resnet_config(n_classes: int, channels: int, size: int, time_dependent: bool, width: int) -> ClassifierConfig:
    return ClassifierConfig(
        n_classes=n_classes, channels=channels, size=size, time_dependent=time_dependent, width=width
    )


def _head_config(n_classes: int, channels: int, size: int, time_dependent: bool, width: int) -> UNetHeadConfig:
    return UNetHeadConfig(n_classes=n_classes, time_dependent=time_dependent)


def _build_head(config: UNetHeadConfig, unet: UNet2DModel | None) -> UNetHead:
    if unet is None:
        raise SideError("The UNet-head classifier reads the model's UNet: pass the model's unet.")
    return UNetHead(config, unet)


def _build_resnet(config: ClassifierConfig, unet: UNet2DModel | None) -> SurrogateClassifier:
    return SurrogateClassifier(config)


CLASSIFIERS: Registry[Architecture] = Registry("classifier")
CLASSIFIERS.register(
    UNetHeadConfig.architecture,
    Architecture(UNetHeadConfig, _head_config, _build_head, "a head on the model's own UNet encoder", HEAD_RECIPE),
)
CLASSIFIERS.register(
    ClassifierConfig.architecture,
    Architecture(
        ClassifierConfig,
        _resnet_config,
        _build_resnet,
        "the paper's ResNet, trained from scratch",
        ClassifierTrainConfig(),
    ),
)


def classifier_config(
    architecture: str, n_classes: int, channels: int, size: int, time_dependent: bool, width: int
) -> ClassifierConfig | UNetHeadConfig:
    """The config of a classifier of ``n_classes`` labels for a model's (channels, size, size) images
    (``architecture``: a name in :data:`CLASSIFIERS`; ``width``: the ResNet's channels)."""
    return CLASSIFIERS.get(architecture).configure(n_classes, channels, size, time_dependent, width)


def build_classifier(config: ClassifierConfig | UNetHeadConfig, unet: UNet2DModel | None = None) -> Classifier:
    """The classifier a config describes, untrained (a UNet head is built on ``unet``'s encoder)."""
    return CLASSIFIERS.get(config.architecture).build(config, unet)


def training_timesteps(
    scheduler: DDPMScheduler, train_config: ClassifierTrainConfig, sampler_timesteps: Sequence[int] | None
) -> torch.Tensor:
    """(T,) int64: the timesteps a time-dependent classifier's t is drawn from, uniformly."""
    if train_config.timesteps == "uniform":
        return torch.arange(scheduler.config.num_train_timesteps)
    if not sampler_timesteps:
        raise SideError("Training at the sampler's timesteps needs them: pass sampler_timesteps (e.g. 25 DDPM steps).")
    return torch.as_tensor(list(sampler_timesteps), dtype=torch.long)


def held_out_split(
    n: int, train_config: ClassifierTrainConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(held-out, training) indices of ``n`` samples: the first draw of the training generator (a
    fresh one from ``train_config.seed`` gives the same split, to evaluate a stored classifier later)."""
    generator = generator if generator is not None else torch.Generator().manual_seed(train_config.seed)
    perm = torch.randperm(n, generator=generator)
    n_val = max(1, int(round(n * train_config.val_fraction))) if n >= 10 else 0
    return perm[:n_val], perm[n_val:]


@torch.no_grad()
def _accuracy(
    model: SurrogateClassifier,
    x0: torch.Tensor,
    labels: torch.Tensor,
    scheduler: DDPMScheduler,
    draw_t: Callable[[int], torch.Tensor],
    generator: torch.Generator,
    repeats: int,
    n_targets: int | None = None,
) -> float:
    """Accuracy on x0 noised ``repeats`` times at timesteps ``draw_t(n)`` (x0 and labels on the model's
    device); with ``n_targets``, the prediction is the likeliest of the first n_targets labels."""
    correct = 0
    for _ in range(repeats):
        t = draw_t(len(x0)).to(x0.device)
        x_t = scheduler.add_noise(x0, torch.randn(x0.shape, generator=generator).to(x0.device), t)
        correct += (model(x_t, t)[:, :n_targets].argmax(1) == labels).sum().item()
    return correct / (repeats * len(x0))


@torch.no_grad()
def timestep_accuracy(
    model: SurrogateClassifier,
    x0: torch.Tensor,
    labels: torch.Tensor,
    scheduler: DDPMScheduler,
    timesteps: list[int],
    generator: torch.Generator,
    repeats: int = 4,
    n_targets: int | None = None,
) -> list[float]:
    """Held-out accuracy on x0 (N, C, H, W) in [-1, 1] noised at each of ``timesteps`` (e.g. the
    sampler's), ``repeats`` noise draws each; NaN for each when there are no samples. With
    ``n_targets``, among the first n_targets labels only (the classes guidance aims at)."""
    if len(x0) == 0:
        return [float("nan")] * len(timesteps)
    device = next(model.parameters()).device
    x0, labels = x0.to(device), labels.to(device)
    return [
        _accuracy(model, x0, labels, scheduler, lambda n, t=t: torch.full((n,), t), generator, repeats, n_targets)
        for t in timesteps
    ]


@torch.no_grad()
def evaluate(
    model: SurrogateClassifier,
    x0: torch.Tensor,
    labels: torch.Tensor,
    scheduler: DDPMScheduler,
    generator: torch.Generator,
    repeats: int = 4,
) -> ClassifierReport:
    """Accuracy on x0 noised at t drawn uniformly inside each quartile of the schedule."""
    n_timesteps = scheduler.config.num_train_timesteps
    edges = np.linspace(0, n_timesteps, 5).astype(int)
    quartiles = [(int(edges[i]), int(edges[i + 1] - 1)) for i in range(4)]
    chance = 1.0 / model.config.n_classes
    if len(x0) == 0:
        return ClassifierReport(quartiles, [float("nan")] * 4, float("nan"), chance, [])
    device = next(model.parameters()).device
    x0, labels = x0.to(device), labels.to(device)
    accuracy = [
        _accuracy(
            model,
            x0,
            labels,
            scheduler,
            lambda n, lo=lo, hi=hi: torch.randint(lo, hi + 1, (n,), generator=generator),
            generator,
            repeats,
        )
        for lo, hi in quartiles
    ]
    zeros = torch.zeros(len(x0), dtype=torch.long, device=device)
    clean = (model(x0, zeros).argmax(1) == labels).float().mean().item()
    return ClassifierReport(quartiles, accuracy, clean, chance, [])


def classifier_guidance(model: Classifier, target: torch.Tensor | int) -> GuidanceFn:
    """A guidance callable (x_t, t) -> grad_{x_t} log p(target | x_t, t).

    ``target`` is one class for the whole batch or (N,) int64 per sample. A time-blind classifier
    ignores t (it is applied to x_t as if clean: the Cond baseline).
    """

    def grad_log_prob(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        y = torch.as_tensor(target, device=x_t.device).expand(len(x_t))
        with torch.enable_grad():
            x = x_t.detach().float().requires_grad_(True)
            log_probs = F.log_softmax(model(x, t), dim=1)
            selected = log_probs[torch.arange(len(x)), y].sum()
            (grad,) = torch.autograd.grad(selected, x)
        return grad.to(x_t.dtype)

    return grad_log_prob


def save_classifier(model: Classifier, report: ClassifierReport | None, folder: str | Path) -> None:
    """classifier.safetensors (the trained weights: a UNet head's alone, never the model's UNet) and
    classifier.json (architecture, config, report), from which :func:`load_classifier` rebuilds it."""
    folder = Path(folder)
    write_tensors(folder / "classifier.safetensors", model.state_dict())
    write_json(
        folder / "classifier.json",
        {
            "architecture": model.config.architecture,
            "config": model.config.to_dict(),
            "report": report.to_dict() if report else None,
        },
    )


def load_classifier(
    folder: str | Path, device: str | torch.device = "cpu", unet: UNet2DModel | None = None
) -> tuple[Classifier, dict | None]:
    """Rebuild a classifier from its folder; return it (eval mode, no grad) and its report. A UNet
    head is rebuilt on ``unet``, the model it was trained on (its stage is keyed by that model)."""
    folder = Path(folder)
    if not (folder / "classifier.json").exists() or not (folder / "classifier.safetensors").exists():
        raise SideError(f"{folder} holds no saved classifier (classifier.json + classifier.safetensors).")
    meta = read_json(folder / "classifier.json")
    # checkpoints written before the UNet head existed name no architecture: they are ResNets
    architecture = CLASSIFIERS.get(meta.get("architecture", ClassifierConfig.architecture))
    model = build_classifier(architecture.config_class(**meta["config"]), unet)
    model.load_state_dict(read_tensors(folder / "classifier.safetensors"))
    return model.to(device).eval().requires_grad_(False), meta["report"]
