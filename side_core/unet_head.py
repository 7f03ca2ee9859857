"""A surrogate classifier on the target model's own UNet: a small head on its frozen encoder features.

The UNet was trained to denoise x_t at every t, so its encoder already turns (x_t, t) into features
that say what the clean image is; a head on them classifies noisy samples that a classifier trained
from scratch on CPU barely tells apart (benchmarks/README.md). Only the encoder runs: the forward
stops after the mid block and never takes the up path, and guidance backpropagates through the
frozen encoder to x_t. The UNet's weights are the model's: the head neither trains nor saves them.

Notation (as side_core.sampling):
    x_t      (N, C, H, W) float32 in [-1, 1], the noisy sample at timestep t
    t        (N,) int64 timesteps; the time-blind head (the Cond baseline) always uses t = 0
    h_b      output of down block b = ``feature_block``        (N, c_b, H_b, W_b)
    h_mid    output of the mid block                            (N, c_mid, H_m, W_m)
    f        [avg_pool(h_b) to H_m x W_m, h_mid] on channels    (N, c_b + c_mid, H_m, W_m)
    logits   Linear(SiLU(Conv3x3(GroupNorm(f))).flatten(1))     (N, n_classes)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import UNet2DModel

from side_core.config import UNetHeadConfig
from side_core.errors import SideError


def encoder_features(unet: UNet2DModel, x_t: torch.Tensor, t: torch.Tensor, block: int) -> torch.Tensor:
    """f (N, c_b + c_mid, H_m, W_m): the outputs of down block ``block`` (average-pooled to the mid
    block's resolution) and of the mid block, computed as UNet2DModel.forward computes them."""
    if unet.config.center_input_sample:
        x_t = 2 * x_t - 1.0
    emb = unet.time_embedding(unet.time_proj(t).to(dtype=unet.dtype))
    skip_sample = x_t
    h = unet.conv_in(x_t)
    chosen = None
    for i, down in enumerate(unet.down_blocks):
        if hasattr(down, "skip_conv"):
            h, _, skip_sample = down(hidden_states=h, temb=emb, skip_sample=skip_sample)
        else:
            h, _ = down(hidden_states=h, temb=emb)
        if i == block:
            chosen = h
    h_mid = unet.mid_block(h, emb)
    pooled = F.adaptive_avg_pool2d(chosen, h_mid.shape[-2:])
    return torch.cat([pooled, h_mid], dim=1)


class UNetHead(nn.Module):
    """(x_t (N, C, H, W) in [-1, 1], t (N,)) -> (N, n_classes) logits, from ``unet``'s frozen encoder.

    ``unet`` is held, not registered as a submodule: ``parameters()``, ``state_dict()`` and ``.to()``
    see the head alone, and the shared model is never put in training mode or given gradients."""

    def __init__(self, config: UNetHeadConfig, unet: UNet2DModel):
        super().__init__()
        n_blocks = len(unet.down_blocks)
        if unet.mid_block is None:
            raise SideError("This UNet has no mid block, which the UNet head reads: use the ResNet classifier.")
        if config.feature_block >= n_blocks:
            raise SideError(
                f"feature_block = {config.feature_block}, but the UNet has {n_blocks} down blocks: "
                f"use 0 to {n_blocks - 1}."
            )
        self.config = config
        object.__setattr__(self, "unet", unet)  # held, not a submodule (see the class docstring)
        with torch.no_grad():
            x = torch.zeros(1, unet.config.in_channels, *_sample_size(unet), device=unet.device, dtype=unet.dtype)
            c, h, w = encoder_features(
                unet, x, torch.zeros(1, dtype=torch.long, device=unet.device), config.feature_block
            ).shape[1:]
        self.norm = nn.GroupNorm(math.gcd(8, c), c)
        self.conv = nn.Conv2d(c, config.width, 3, padding=1)
        self.fc = nn.Linear(config.width * h * w, config.n_classes)
        self.to(unet.device)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not self.config.time_dependent:
            t = torch.zeros_like(t)
        # The encoder's graph is only needed for guidance (x_t requires grad); training on it without
        # a graph through the UNet is several times faster.
        with torch.set_grad_enabled(torch.is_grad_enabled() and x_t.requires_grad):
            f = encoder_features(self.unet, x_t.to(self.unet.dtype), t, self.config.feature_block)
        # the attention block leaves the features strided like channels-last; GroupNorm's CPU backward
        # crashes on that layout (torch 2.x), so make them contiguous
        h = F.silu(self.conv(self.norm(f.float().contiguous())))
        return self.fc(h.flatten(1))


def _sample_size(unet: UNet2DModel) -> tuple[int, int]:
    s = unet.config.sample_size
    return (s, s) if isinstance(s, int) else tuple(s)
