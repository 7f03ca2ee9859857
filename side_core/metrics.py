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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from side_core.errors import SideError

BAND_NAMES = ("low", "mid", "high")


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
    def from_thresholds(cls, low: float, mid: float, high: float) -> Bands:
        """Bands [low, mid), [mid, high), [high, inf) from three increasing thresholds."""
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


def bands_from_train(train_nn_similarity: np.ndarray) -> Bands:
    """Default bands from each training image's similarity to its nearest other training image."""
    s = np.asarray(train_nn_similarity, dtype=np.float64)
    if len(s) < 2:
        raise SideError("Default bands need at least 2 training images: give more, or set the bands.")
    return Bands.from_thresholds(float(np.quantile(s, 0.5)), float(np.quantile(s, 0.95)), float(s.max()) + 1e-6)


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
