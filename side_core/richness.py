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
landed on top of each other, i.e. the images drawn at least twice, never f1. :func:`attacker_reach`
fills f1 in from f2 and f3 with the same Cauchy-Schwarz bound that gives Chao1 (f1 >= 2 f2^2 / (3 f3)
under a Poisson mixture), then adds Chao1's unseen term.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


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

    ``found``: images identified so far (scorer: copied at least once; attacker: drawn at least twice,
    a near-identical group); ``estimate``: images the sampler can reach at all; ``new_per_1000``: new
    identifications the next 1,000 samples should bring (scorer: Good-Turing missing mass; attacker:
    images seen once that a further draw turns into a group, 2 f2 / n) per 1,000."""

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

    f2 and f3 are the groups of two and three samples; f1 (images drawn once, invisible) is estimated
    as 2 f2^2 / (3 f3) (2 f2 (f2 - 1) / 3 when f3 = 0, as Chao1 does for f2 = 0), the unseen as f1^2 / (2 f2)."""
    groups = np.asarray(groups, dtype=np.int64)
    sizes = np.bincount(groups[groups >= 0]) if (groups >= 0).any() else np.zeros(0, dtype=np.int64)
    f = frequency_counts(sizes)
    found, f2, f3 = int(f[2:].sum()), float(f[2]), float(f[3])
    f1 = 2 * f2 * f2 / (3 * f3) if f3 > 0 else 2 * f2 * max(f2 - 1, 0) / 3
    unseen = f1 * f1 / (2 * f2) if f2 > 0 else 0.0
    per_1000 = 1000 * 2 * f2 / len(groups) if len(groups) else 0.0
    return Reach("attacker", len(groups), found, found + f1 + unseen, per_1000)
