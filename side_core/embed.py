"""Features of generated images, for clustering them into surrogate classes: one entry of
:data:`FEATURES` each (``unet``, ``pixels``, ``sscd``; each entry's help says what it is).

Under a launcher (``side_core.distributed``) the ``unet`` and ``sscd`` features split their rows
between processes in whole batches and gather them, so every batch is exactly the one a single
process computes. On a GPU both run under float16 autocast: these features only feed K-means, never
a similarity the metrics measure, so mixed precision cannot move a score.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from side_core.distributed import World, all_gather_rows
from side_core.errors import SideError
from side_core.models import LoadedModel
from side_core.registry import Registry

UNET_FEATURE_T = 50  # small enough that x_t is almost x0, large enough to be in the training range
# SSCD README preprocessing: resize to 320x320, ImageNet mean/std.
SSCD_SIZE = 320
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def standardize(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C*H*W) with each row of mean 0 and std 1 (flat images stay 0)."""
    flat = images.flatten(1).float()
    flat = flat - flat.mean(dim=1, keepdim=True)
    return flat / flat.std(dim=1, keepdim=True, correction=0).clamp_min(1e-6)


@dataclass(frozen=True)
class FeatureInputs:
    """What a feature may use beside the images. Under a launcher every process embeds the same
    images; ``world`` says which rows are this process's."""

    model: LoadedModel | None
    sscd_path: str | Path | None
    batch_size: int
    seed: int
    world: World

    def rows(self, n: int) -> range:
        """This process's rows of ``n`` images, in whole batches."""
        return self.world.rows(n, align=self.batch_size)

    def gathered(self, block: torch.Tensor) -> np.ndarray:
        """Every process's rows, from this process's ``block`` of them."""
        return (all_gather_rows(block) if self.world.size > 1 else block).numpy()


@dataclass(frozen=True)
class Feature:
    """A clustering feature: ``embed(images, inputs)`` maps (N, C, H, W) float32 in [-1, 1] to (N, D) float32."""

    embed: Callable[[torch.Tensor, FeatureInputs], np.ndarray]
    help: str
    needs_sscd_file: bool = False  # the user gives the SSCD TorchScript file, which is part of the features' key


def _unet(images: torch.Tensor, inputs: FeatureInputs) -> np.ndarray:
    if inputs.model is None:
        raise SideError("The 'unet' feature needs the model: pass it, or use feature 'pixels'.")
    rows = inputs.rows(len(images))
    return inputs.gathered(_unet_features(images, inputs.model, inputs.batch_size, inputs.seed, rows))


def _pixels(images: torch.Tensor, inputs: FeatureInputs) -> np.ndarray:
    return standardize(images).numpy()  # cheap: every process computes all rows


def _sscd(images: torch.Tensor, inputs: FeatureInputs) -> np.ndarray:
    device = inputs.model.device if inputs.model is not None else inputs.world.device
    rows = inputs.rows(len(images))
    sscd = load_sscd(inputs.sscd_path, device)
    return inputs.gathered(sscd_descriptors(images[rows.start : rows.stop], sscd, inputs.batch_size))


FEATURES: Registry[Feature] = Registry("feature")
# The paper's premise: the model's internal features cluster its samples (offline and free).
FEATURES.register("unet", Feature(_unet, "the model's own mid-block activations at a small timestep"))
# Cosine similarity of these features is the pixel correlation that scores copies.
FEATURES.register("pixels", Feature(_pixels, "standardized pixels, the space the pixels similarity scores copies in"))
FEATURES.register("sscd", Feature(_sscd, "SSCD descriptors (the paper's), from its TorchScript file", True))


def embed(
    images: torch.Tensor,
    feature: str = "unet",
    model: LoadedModel | None = None,
    sscd_path: str | Path | None = None,
    batch_size: int = 256,
    seed: int = 0,
    world: World | None = None,
) -> np.ndarray:
    """(N, C, H, W) float32 in [-1, 1] -> (N, D) float32 features (``feature``: a name in :data:`FEATURES`).

    ``world``: the launched processes, which all call this with the same images and each compute a
    block of whole batches (None: this process computes every row).
    """
    inputs = FeatureInputs(model, sscd_path, batch_size, seed, world or World())
    return FEATURES.get(feature).embed(images, inputs)


def _autocast(device: torch.device) -> torch.autocast | contextlib.nullcontext:
    """float16 autocast on a GPU (features for clustering only); nothing on a CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@torch.no_grad()
def _unet_features(images: torch.Tensor, model: LoadedModel, batch_size: int, seed: int, rows: range) -> torch.Tensor:
    """(len(rows), D) float32 on the CPU: mid-block activations of ``images[rows]`` noised to t = 50."""
    captured = []
    hook = model.unet.mid_block.register_forward_hook(lambda _m, _i, out: captured.append(out))
    generator = torch.Generator().manual_seed(seed)
    # Schedules shorter than 51 steps: the smallest noise level that is still a real timestep.
    t_feature = min(UNET_FEATURE_T, model.scheduler.config.num_train_timesteps - 1)
    try:
        feats = []
        for start in range(0, rows.stop, batch_size):
            # The noise of batches before this process's block is drawn and dropped, so that each
            # batch gets the noise it gets in a single process.
            eps = torch.randn(images[start : start + batch_size].shape, generator=generator)
            if start < rows.start:
                continue
            x0 = images[start : start + batch_size].to(model.device)
            t = torch.full((len(x0),), t_feature, device=model.device)
            with _autocast(model.device):
                model.unet(model.scheduler.add_noise(x0, eps.to(model.device), t), t)
            feats.append(captured.pop().flatten(1).float().cpu())
    finally:
        hook.remove()
    if not feats:
        return torch.zeros((0, 0))
    return torch.cat(feats)


def load_sscd(path: str | Path | None, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """The SSCD TorchScript model, in eval mode, loaded straight onto ``device``."""
    if path is None:
        raise SideError(
            "The 'sscd' feature needs an SSCD TorchScript file (e.g. sscd_disc_mixup.torchscript.pt): "
            "pass its path, or use feature 'unet' or 'pixels'."
        )
    path = Path(path)
    if not path.is_file():
        raise SideError(f"SSCD file {path} does not exist: give the path of the TorchScript file.")
    try:
        return torch.jit.load(str(path), map_location=torch.device(device)).eval()
    except RuntimeError as err:
        raise SideError(
            f"{path} is not a TorchScript model ({str(err)[:200]}): use SSCD's .torchscript.pt file."
        ) from err


@torch.no_grad()
def sscd_descriptors(
    images: torch.Tensor, sscd: torch.jit.ScriptModule, batch_size: int = 64, autocast: bool = True
) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (N, D) float32 L2-normalised SSCD descriptors, on the CPU.

    Runs on the device SSCD was loaded on; ``autocast``: float16 there if it is a GPU (for clustering
    features; the similarity the metrics use passes False)."""
    device = next(sscd.parameters()).device
    mean = torch.tensor(IMAGENET_MEAN, device=device)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD, device=device)[None, :, None, None]
    out = []
    for start in range(0, len(images), batch_size):
        x = (images[start : start + batch_size].to(device).float() + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(SSCD_SIZE, SSCD_SIZE), mode="bilinear", antialias=True, align_corners=False)
        with _autocast(device) if autocast else contextlib.nullcontext():
            descriptor = sscd((x - mean) / std)
        out.append(F.normalize(descriptor.float(), dim=1).cpu())
    return torch.cat(out) if out else torch.zeros((0, 0))
