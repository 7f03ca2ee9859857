"""Repulsion from images already found: guided samples pushed off the pool's near-identical samples.

Guidance pulls a sample into the dense, memorized part of its class, so most guided samples fall on the
images the pool already repeats, which the attacker holds already. Sparse repellency (SPELL, Kirchhof et
al. 2025, "Shielded Diffusion: Generating Novel and Diverse Images using Sparse Repellency") changes a
sample only while its clean-image estimate x0_pred lies inside a ball of radius r around a reference:
it moves x0_pred to the ball's surface (summed over the balls it is in), and the denoising loop carries
on from there. Samples outside every ball are untouched, so repulsion costs nothing where it is not needed.

The references are the attacker's own finds, with no training data: the pool samples that have a
near-identical partner (side_core.allocation), in pixel space. The radius is the ``RADIUS_QUANTILE``
quantile of the pixel distances between those near-identical pairs: a sample is pushed off once it is as
close to a found sample as most near-identical pairs are to each other.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from side_core.errors import SideError

RADIUS_QUANTILE = 0.9

Repel = Callable[[torch.Tensor], torch.Tensor]  # (B, C, H, W) x0_pred -> x0_pred moved off the references


def found_references(images: torch.Tensor, partner: np.ndarray) -> tuple[torch.Tensor, float]:
    """(K, C*H*W) the pool samples with a near-identical partner, and the repulsion radius (module
    docstring), from the pool's (N, C, H, W) images and (N,) partners (-1: none)."""
    flagged = np.flatnonzero(partner >= 0)
    if len(flagged) == 0:
        raise SideError(
            "Repulsion needs images already found, but no pool sample has a near-identical partner: "
            "guide without repulsion, or draw a larger pool (N_syn)."
        )
    flat = images.flatten(1).float()
    distances = (flat[flagged] - flat[partner[flagged]]).norm(dim=1)
    return flat[flagged], float(torch.quantile(distances, RADIUS_QUANTILE))


def sparse_repellency(references: torch.Tensor, radius: float) -> Repel:
    """The SPELL correction for (K, D) flattened references: each x0_pred inside a ball of ``radius``
    around a reference moves out to its surface, summed over the balls it is in."""
    if radius <= 0:
        raise SideError(f"Repulsion radius {radius:g}: give a positive radius.")

    def repel(x0: torch.Tensor) -> torch.Tensor:
        flat = x0.flatten(1)
        refs = references.to(flat.device, flat.dtype)
        distance = torch.cdist(flat, refs).clamp_min(1e-6)  # (B, K)
        push = ((radius - distance) / distance).clamp_min(0)  # zero outside every ball
        # sum_k push_k (x - ref_k), without the (B, K, D) offsets
        return (flat * (1 + push.sum(dim=1, keepdim=True)) - push @ refs).view_as(x0)

    return repel
