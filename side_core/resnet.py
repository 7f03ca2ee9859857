"""The paper's surrogate classifier: a small ResNet with GroupNorm and a FiLM timestep module.

GroupNorm (not BatchNorm) keeps batch elements independent, so one sample's guidance never depends on
the others in its batch. ``time_dependent=False`` (the Cond baseline) feeds it t = 0 always.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from side_core.config import ClassifierConfig


def timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(N,) timesteps -> (N, dim) sinusoidal features, as in DDPM."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm -> (FiLM by t) -> SiLU -> conv -> GroupNorm -> SiLU -> conv, plus a skip."""

    def __init__(self, c_in: int, c_out: int, time_dim: int | None):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, c_in), c_in)
        self.film = nn.Linear(time_dim, 2 * c_in) if time_dim else None
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(8, c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor | None) -> torch.Tensor:
        h = self.norm1(x)
        if self.film is not None:
            scale, shift = self.film(t_emb)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv1(F.silu(h))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SurrogateClassifier(nn.Module):
    """(x (N, C, H, W) in [-1, 1], t (N,)) -> (N, n_classes) logits. Any channels and size."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        time_dim = config.time_embed_dim if config.time_dependent else None
        if time_dim:
            self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.conv_in = nn.Conv2d(config.channels, config.width, 3, padding=1)
        blocks, c = [], config.width
        for stage in range(config.n_stages):
            c_out = config.width * (2 if stage > 0 else 1)
            for _ in range(config.blocks_per_stage):
                blocks.append(ResBlock(c, c_out, time_dim))
                c = c_out
        self.blocks = nn.ModuleList(blocks)
        self.norm_out = nn.GroupNorm(min(8, c), c)
        self.head = nn.Linear(c, config.n_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t_emb = None
        if self.config.time_dependent:
            t_emb = self.time_mlp(timestep_features(t, self.config.time_embed_dim))
        h = self.conv_in(x)
        for i, block in enumerate(self.blocks):
            if i > 0 and i % self.config.blocks_per_stage == 0:
                h = F.avg_pool2d(h, 2) if min(h.shape[-2:]) >= 2 else h
            h = block(h, t_emb)
        h = F.silu(self.norm_out(h)).mean(dim=(2, 3))
        return self.head(h)
