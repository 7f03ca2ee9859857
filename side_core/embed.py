"""Features of generated images, for clustering them into surrogate classes.

- ``unet``: the diffusion model's own mid-block activations at a small timestep (the paper's premise
  is that the model's internal features cluster its samples; offline and free).
- ``pixels``: per-image standardized pixels (mean 0, std 1), so that cosine similarity of features
  is the pixel correlation used for scoring.
- ``sscd``: an SSCD TorchScript descriptor, when the user gives the file (the paper's choice).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from side_core.errors import SideError
from side_core.models import LoadedModel

FEATURES = ("unet", "pixels", "sscd")
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


def embed(
    images: torch.Tensor,
    feature: str = "unet",
    model: LoadedModel | None = None,
    sscd_path: str | Path | None = None,
    batch_size: int = 256,
    seed: int = 0,
) -> np.ndarray:
    """(N, C, H, W) float32 in [-1, 1] -> (N, D) float32 features."""
    if feature == "pixels":
        return standardize(images).numpy()
    if feature == "unet":
        if model is None:
            raise SideError("The 'unet' feature needs the model: pass it, or use feature 'pixels'.")
        return _unet_features(images, model, batch_size, seed)
    if feature == "sscd":
        return sscd_descriptors(images, load_sscd(sscd_path), batch_size)
    raise SideError(f"Unknown feature '{feature}': use one of {', '.join(FEATURES)}.")


@torch.no_grad()
def _unet_features(images: torch.Tensor, model: LoadedModel, batch_size: int, seed: int) -> np.ndarray:
    captured = []
    hook = model.unet.mid_block.register_forward_hook(lambda _m, _i, out: captured.append(out))
    generator = torch.Generator().manual_seed(seed)
    # Schedules shorter than 51 steps: the smallest noise level that is still a real timestep.
    t_feature = min(UNET_FEATURE_T, model.scheduler.config.num_train_timesteps - 1)
    try:
        feats = []
        for start in range(0, len(images), batch_size):
            x0 = images[start : start + batch_size].to(model.device)
            t = torch.full((len(x0),), t_feature, device=model.device)
            eps = torch.randn(x0.shape, generator=generator).to(model.device)
            model.unet(model.scheduler.add_noise(x0, eps, t), t)
            feats.append(captured.pop().flatten(1).float().cpu())
    finally:
        hook.remove()
    return torch.cat(feats).numpy()


def load_sscd(path: str | Path | None) -> torch.jit.ScriptModule:
    if path is None:
        raise SideError(
            "The 'sscd' feature needs an SSCD TorchScript file (e.g. sscd_disc_mixup.torchscript.pt): "
            "pass its path, or use feature 'unet' or 'pixels'."
        )
    path = Path(path)
    if not path.is_file():
        raise SideError(f"SSCD file {path} does not exist: give the path of the TorchScript file.")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError as err:
        raise SideError(
            f"{path} is not a TorchScript model ({str(err)[:200]}): use SSCD's .torchscript.pt file."
        ) from err


@torch.no_grad()
def sscd_descriptors(images: torch.Tensor, sscd: torch.jit.ScriptModule, batch_size: int = 64) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, D) L2-normalised SSCD descriptors."""
    device = next(sscd.parameters()).device
    mean = torch.tensor(IMAGENET_MEAN, device=device)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD, device=device)[None, :, None, None]
    out = []
    for start in range(0, len(images), batch_size):
        x = (images[start : start + batch_size].to(device).float() + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(SSCD_SIZE, SSCD_SIZE), mode="bilinear", antialias=True, align_corners=False)
        out.append(F.normalize(sscd((x - mean) / std), dim=1).cpu())
    return torch.cat(out).numpy()
