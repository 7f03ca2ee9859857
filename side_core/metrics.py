"""The paper's memorization metrics, as pure functions on arrays.

gamma(x, x') is a similarity in which larger means closer; D1 are the N_G generated images, D2 the
training images, and a band is [lo, hi) (``hi=None``: no upper bound).
- AMS(band) = 100/N_G * #{x in D1 : max_{x'} gamma(x, x') in band}
- UMS(band) = 100/N_G * |{x' in D2 : gamma(x, x') in band for some x in D1}|
UMS counts every training image in the band, not only nearest neighbours, so it can exceed AMS.

Default bands come from the train-vs-train nearest-neighbour similarities s_i (each training image
to its closest other training image), so they mean the same on any dataset:
- high: s >= max_i s_i, closer to a training image than any two distinct training images are to
  each other: a copy;
- mid: the 95th percentile of s_i <= s < max_i s_i, closer than 95% of training images are to their
  nearest other training image;
- low: the median of s_i <= s < that 95th percentile.
Real datasets hold near-duplicates (CIFAR-10 and CelebA do), and one duplicated pair would put the
high band at s = 1, where nothing can ever be a copy. So the s_i of near-duplicate pairs are left out:
those whose distance 1 - s_i is an outlier on a log scale, below Tukey's far-out fence
(q25 - 3 IQR of log(1 - s_i)), given at least 20 training images. On the bundled faces the fence
sits at s = 0.94 and the largest s_i is 0.85, so no pair is skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from side_core.errors import SideError

BAND_NAMES = ("low", "mid", "high")
# Names the rule of bands_from_train; it keys the stored bands, so changing the rule means a new name.
BAND_RULE = "median/p95/max-without-near-duplicates"


@dataclass(frozen=True)
class Bands:
    """Non-overlapping similarity bands [lo, hi); the high band has no upper bound."""

    low: tuple[float, float]
    mid: tuple[float, float]
    high: tuple[float, float | None]

    def items(self) -> list[tuple[str, tuple[float, float | None]]]:
        return [(name, getattr(self, name)) for name in BAND_NAMES]

    def to_dict(self) -> dict[str, list]:
        return {name: [lo, hi] for name, (lo, hi) in self.items()}

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> Bands:
        """Read what :meth:`to_dict` wrote (a reference stage's summary, a report's similarity)."""
        return cls(tuple(d["low"]), tuple(d["mid"]), tuple(d["high"]))

    @classmethod
    def from_thresholds(cls, low: float, mid: float, high: float) -> Bands:
        """Bands [low, mid), [mid, high), [high, inf) from three increasing thresholds."""
        if not all(math.isfinite(x) and -1.0 <= x <= 1.0 for x in (low, mid, high)):
            raise SideError(
                f"Band thresholds must lie in [-1, 1], where similarities live: got low={low}, mid={mid}, high={high}."
            )
        if not low < mid < high:
            raise SideError(f"Band thresholds must increase: got low={low}, mid={mid}, high={high}.")
        return cls((low, mid), (mid, high), (high, None))

    def name_of(self, similarity: float) -> str | None:
        """The band a similarity falls in, or None below the low band."""
        for name, band in reversed(self.items()):
            if in_band(np.asarray(similarity), band):
                return name
        return None


def in_band(similarity: np.ndarray, band: tuple[float, float | None]) -> np.ndarray:
    lo, hi = band
    inside = similarity >= lo
    return inside if hi is None else inside & (similarity < hi)


MIN_IMAGES_FOR_DUPLICATES = 20  # fewer nearest-neighbour similarities are too few to call one an outlier


def near_duplicates(train_nn_similarity: np.ndarray) -> np.ndarray:
    """(M,) bool: training images whose nearest other image is a near-duplicate (module docstring)."""
    s = np.asarray(train_nn_similarity, dtype=np.float64)
    if len(s) < MIN_IMAGES_FOR_DUPLICATES:
        return np.zeros(len(s), dtype=bool)
    log_distance = np.log(np.clip(1.0 - s, 1e-12, None))
    q25, q75 = np.quantile(log_distance, [0.25, 0.75])
    return log_distance < q25 - 3.0 * (q75 - q25)


def bands_from_train(train_nn_similarity: np.ndarray) -> Bands:
    """Default bands from each training image's similarity to its nearest other training image."""
    s = np.asarray(train_nn_similarity, dtype=np.float64)
    if len(s) < 2:
        raise SideError("Default bands need at least 2 training images: give more, or set the bands.")
    distinct = s[~near_duplicates(s)]
    low, mid = float(np.quantile(distinct, 0.5)), float(np.quantile(distinct, 0.95))
    high = min(float(distinct.max()) + 1e-6, 1.0)
    if not low < mid < high:
        raise SideError(
            f"The {len(s)} training images are too few or too alike to calibrate the similarity bands "
            f"(nearest-neighbour similarity without near-duplicates: median {low:.3f}, 95th percentile "
            f"{mid:.3f}, largest {high:.3f}): give more distinct training images, or set the bands with "
            "--bands LOW MID HIGH."
        )
    return Bands.from_thresholds(low, mid, high)


def ams(max_similarity: np.ndarray, band: tuple[float, float | None]) -> float:
    """Percent of generated images whose nearest training image is in the band."""
    max_similarity = np.asarray(max_similarity)
    if len(max_similarity) == 0:
        raise SideError("AMS of zero generated images is undefined: N_G must be at least 1.")
    return 100.0 * float(in_band(max_similarity, band).mean())


def ums_from_hits(train_hits: np.ndarray, n_generated: int) -> float:
    """UMS from (M,) bool: which training images some generated image is in the band with."""
    if n_generated < 1:
        raise SideError("UMS of zero generated images is undefined: N_G must be at least 1.")
    return 100.0 * float(np.count_nonzero(train_hits)) / n_generated


def ums(similarity: np.ndarray, band: tuple[float, float | None]) -> float:
    """UMS from a full (N_G, M) similarity matrix (small inputs; the search streams instead)."""
    similarity = np.asarray(similarity)
    return ums_from_hits(in_band(similarity, band).any(axis=0), similarity.shape[0])


def p95(max_similarity: np.ndarray) -> float:
    return float(np.percentile(np.asarray(max_similarity), 95))


def distinct_curve(first_hit: np.ndarray, n_generated: int) -> np.ndarray:
    """(n_generated,) int64: distinct training images hit by the first 1, 2, ... samples, from the
    (M,) index of the first sample hitting each training image (-1: never)."""
    first_hit = np.asarray(first_hit)
    return np.cumsum(np.bincount(first_hit[first_hit >= 0], minlength=n_generated)[:n_generated])


def samples_to_k(curve: np.ndarray, k: int) -> int | None:
    """The number of samples after which ``k`` distinct training images are hit (None: never)."""
    reached = np.flatnonzero(np.asarray(curve) >= k)
    return int(reached[0]) + 1 if len(reached) else None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b to 3 decimals; None where either is missing or b is 0 (e.g. a method never reached K)."""
    return round(a / b, 3) if a is not None and b else None


def summarize(max_similarity: np.ndarray, band_hits: dict[str, np.ndarray], bands: Bands) -> dict:
    """One method's row of the report: n_generated, ams, ums, p95, extracted (high band)."""
    n = len(max_similarity)
    return {
        "n_generated": n,
        "ams": {name: round(ams(max_similarity, band), 3) for name, band in bands.items()},
        "ums": {name: round(ums_from_hits(band_hits[name], n), 3) for name, _ in bands.items()},
        "p95": round(p95(max_similarity), 4),
        "extracted": np.flatnonzero(band_hits["high"]).tolist(),
    }
