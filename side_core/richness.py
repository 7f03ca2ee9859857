"""How many training images sampling can reach, and how many are left: species-richness estimates.

Each sample that copies a training image is one draw of a "species" (the image). From how often each
image was drawn, the classic estimators say how many images the sampler can reach at all and how much
probability the images not yet seen still hold (Chao 1984; Good 1953):

- Chao1 = S_obs + f1^2 / (2 f2), with f_k the number of images drawn exactly k times (f1 (f1 - 1) / 2
  when f2 = 0, the bias-corrected form);
- Good-Turing missing mass = f1 / n: the chance that the next sample is an image not yet seen;
- the images drawn exactly r times hold about (r + 1) f_{r+1} / n of the probability, so the chance that
  the next sample repeats an image seen once is about 2 f2 / n.

The scorer counts draws with the training set (each copy's nearest training image). The attacker has no
training set: it sees near-identical groups (side_core.allocation.near_identical_groups), samples that
landed on top of each other, and counts an image once a group holds three (:func:`attacker_reach`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

FOUND_AT = 3  # samples in a near-identical group before the attacker counts it as an image


def frequency_counts(counts: np.ndarray) -> np.ndarray:
    """f[k] = how many species were drawn exactly k times, from (S,) draws per species (zeros ignored)."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.bincount(counts[counts > 0], minlength=4)


def chao1(counts: np.ndarray) -> float:
    """Chao1 richness from draws per species: seen plus an estimate of the unseen."""
    f = frequency_counts(counts)
    seen, f1, f2 = int(f[1:].sum()), float(f[1]), float(f[2])
    unseen = f1 * f1 / (2 * f2) if f2 > 0 else f1 * (f1 - 1) / 2
    return seen + unseen


def missing_mass(counts: np.ndarray) -> float:
    """Good-Turing: the chance that the next draw is a species not seen yet (0 with no draws)."""
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    return float(frequency_counts(counts)[1]) / n if n else 0.0


@dataclass(frozen=True)
class Reach:
    """How many images a sampler reaches, seen from one side (scorer or attacker).

    ``found``: images identified so far (scorer: copied at least once; attacker: a near-identical group of
    ``FOUND_AT`` or more samples); ``estimate``: images the sampler can reach at all; ``new_per_1000``: new
    identifications the next 1,000 samples should bring (scorer: Good-Turing missing mass; attacker:
    images one draw short of a group, :func:`attacker_reach`) per 1,000."""

    side: str  # "scorer" or "attacker"
    n_samples: int
    found: int
    estimate: float
    new_per_1000: float

    @property
    def left(self) -> float:
        return max(0.0, self.estimate - self.found)

    def to_json(self) -> dict:
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def sentence(self) -> str:
        what = "copied" if self.side == "scorer" else "seen repeated (near-identical groups)"
        return (
            f"{self.side}: {self.found} images {what} in {self.n_samples} samples, of an estimated "
            f"{self.estimate:.0f} reachable; about {self.new_per_1000:.1f} more per 1,000 further samples"
        )


def scorer_reach(copied: np.ndarray, n_samples: int) -> Reach:
    """From (N,) the training index each sample copies (-1: not a copy)."""
    copied = np.asarray(copied, dtype=np.int64)
    counts = np.bincount(copied[copied >= 0]) if (copied >= 0).any() else np.zeros(0, dtype=np.int64)
    found = int((counts > 0).sum())
    per_1000 = 1000 * float(frequency_counts(counts)[1]) / n_samples if n_samples else 0.0
    return Reach("scorer", n_samples, found, chao1(counts), per_1000)


def attacker_reach(groups: np.ndarray) -> Reach:
    """From (N,) each sample's near-identical group (-1: none), no training set.

    An image counts as found once ``FOUND_AT`` samples land on it: near-identical pairs also occur by
    chance (the pool's threshold flags its closest 5% of neighbour pairs whatever the model does),
    three rarely. Chao1 moved to that edge estimates the images just below it from the groups of exactly
    three (f3) and four (f4): f3^2 / (2 f4) (f3 (f3 - 1) / 2 when f4 = 0), so the estimate leaves out most
    images drawn once or never, a lower bound where many images are rare; the next sample makes a new
    find when it draws an image seen exactly twice, which Good-Turing puts at 3 f3 / n."""
    groups = np.asarray(groups, dtype=np.int64)
    sizes = np.bincount(groups[groups >= 0]) if (groups >= 0).any() else np.zeros(0, dtype=np.int64)
    f = frequency_counts(sizes)
    edge, above = float(f[FOUND_AT]), float(f[FOUND_AT + 1]) if len(f) > FOUND_AT + 1 else 0.0
    found = int(f[FOUND_AT:].sum())
    below = edge * edge / (2 * above) if above > 0 else edge * (edge - 1) / 2
    per_1000 = 1000 * FOUND_AT * edge / len(groups) if len(groups) else 0.0
    return Reach("attacker", len(groups), found, found + below, per_1000)
