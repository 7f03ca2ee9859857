"""A whole SIDE run's accounting: what its pool of N_syn plain samples and its N_G guided samples
extract together, against plain sampling (UnCond) with as many samples and with the same wall time.
A report carries it under ``whole_run`` (:meth:`WholeRun.to_json`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from side_core.kinds.cost import SamplingCost
from side_core.kinds.scoring import Score
from side_core.metrics import distinct_curve, ratio
from side_core.run import Run

if TYPE_CHECKING:
    from side_core.report import MethodResult  # the report holds a WholeRun: its module imports this one


@dataclass(frozen=True)
class WholeRun:
    """What a whole SIDE run yields: the N_syn plain samples of its pool, then its N_G guided samples,
    against plain sampling (UnCond) with as many samples in all (the pool, then UnCond's own N_G plain
    samples: the pool is itself plain sampling) and with the same wall time.

    Wall time: a plain and a guided sample and the classifier's training cost what
    side_core.kinds.cost.SamplingCost timed side by side; the SIDE run is its pool (N_syn plain samples), the
    surrogate's features and clustering (as their stages recorded) and classifier training, and its N_G
    guided samples. ``n_same_time`` plain samples take as long."""

    n_syn: int
    n_guided: int  # N_G
    side_curve: tuple[int, ...]  # (N_total,) distinct training images (high band) in the first n samples
    uncond_curve: tuple[int, ...]  # (N_total,) the same for the pool followed by UnCond's samples
    # plain_per_sample, guided_per_sample, guided_over_plain, surrogate (features, clusters, classifier),
    # side_run (the whole SIDE run, the pool at the plain rate)
    seconds: dict[str, float]
    n_same_time: int  # plain samples drawn in the SIDE run's wall time
    uncond_same_time: int | None  # distinct training images among them; None: not drawn (too many)
    extra_plain: int = 0  # plain samples drawn beyond N_total to count uncond_same_time

    @property
    def n_total(self) -> int:
        return self.n_syn + self.n_guided

    @property
    def side(self) -> int:
        """Distinct training images (high band) among the pool and SIDE's guided samples."""
        return self.side_curve[-1]

    @property
    def uncond(self) -> int:
        """Distinct training images (high band) among the pool and UnCond's plain samples."""
        return self.uncond_curve[-1]

    @property
    def pool(self) -> int:
        """Distinct training images (high band) the pool alone copies."""
        return self.side_curve[self.n_syn - 1] if self.n_syn else 0

    def beyond_pool(self) -> dict[str, Any]:
        """Training images copied beyond the pool: by SIDE's N_G guided samples, and by the plain
        samples UnCond draws after the pool in the SIDE run's wall time (with N_G of them where that
        time was not counted), with each as a rate per 1,000 samples drawn after the pool."""
        if self.uncond_same_time is not None:
            n_plain, uncond = self.n_same_time - self.n_syn, self.uncond_same_time - self.pool
        else:
            n_plain, uncond = self.n_guided, self.uncond - self.pool
        side = self.side - self.pool
        return {
            "side": side,
            "uncond": uncond,
            "samples": {"side": self.n_guided, "uncond": n_plain},
            "per_1000": {
                "side": round(1000 * side / self.n_guided, 2),
                "uncond": round(1000 * uncond / n_plain, 2) if n_plain > 0 else None,
            },
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WholeRun:
        return cls(
            n_syn=int(d["n_syn"]),
            n_guided=int(d["n_guided"]),
            side_curve=tuple(d["curves"]["side"]),
            uncond_curve=tuple(d["curves"]["uncond"]),
            seconds=dict(d["seconds"]),
            n_same_time=int(d["n_same_time"]),
            uncond_same_time=d["uncond_same_time"],
            extra_plain=int(d.get("extra_plain", 0)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "n_total": self.n_total,
            "n_syn": self.n_syn,
            "n_guided": self.n_guided,
            "side": self.side,
            "uncond": self.uncond,
            "curves": {"side": list(self.side_curve), "uncond": list(self.uncond_curve)},
            "seconds": self.seconds,
            "n_same_time": self.n_same_time,
            "uncond_same_time": self.uncond_same_time,
            "extra_plain": self.extra_plain,
            "pool": self.pool,
            "beyond_pool": self.beyond_pool(),
        }


def chained_first_hit(first_hits: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """(M,) int64: the first sample to hit each training image (-1: none) when the scored generations
    of ``sizes`` samples, with (M,) ``first_hits`` each, are drawn one after the other."""
    chained = np.full(len(first_hits[0]), -1, dtype=np.int64)
    offset = 0
    for first, size in zip(first_hits, sizes, strict=True):
        new = (chained < 0) & (first >= 0)
        chained[new] = first[new] + offset
        offset += size
    return chained


def whole_run(
    run: Run, rows: dict[str, MethodResult], pool_score: Score, cost: SamplingCost, extra_score: Score | None = None
) -> WholeRun:
    """The :class:`WholeRun` of a report's UnCond and SIDE rows, the pool's score stage and the
    sampling cost stage; ``extra_score``: more plain samples, drawn after
    UnCond's, to reach the SIDE run's wall time."""
    side, uncond = rows["side"], rows["uncond"]
    n_syn = pool_score.summary()["n_generated"]
    pool_first = pool_score.first_hit()
    side_first = chained_first_hit([pool_first, run.find(side.score, Score).first_hit()], [n_syn, side.n_generated])
    plain_hits, plain_sizes = [pool_first, run.find(uncond.score, Score).first_hit()], [n_syn, uncond.n_generated]
    if extra_score is not None:
        plain_hits.append(extra_score.first_hit())
        plain_sizes.append(extra_score.summary()["n_generated"])
    n_total, n_plain = n_syn + side.n_generated, sum(plain_sizes)
    plain_curve = distinct_curve(chained_first_hit(plain_hits, plain_sizes), n_plain)

    rates = cost.summary()
    plain_rate, guided_rate = rates["plain_per_sample"], rates["guided_per_sample"]
    # the classifier as timed beside the samples; features and clusters as their stages recorded
    surrogate = rates["classifier_seconds"] + sum(side.seconds.get(k, 0.0) for k in ("features", "clusters"))
    side_run = n_syn * plain_rate + surrogate + side.n_generated * guided_rate
    n_same_time = int(side_run / plain_rate) if plain_rate > 0 else n_total
    return WholeRun(
        n_syn=n_syn,
        n_guided=side.n_generated,
        side_curve=tuple(distinct_curve(side_first, n_total).tolist()),
        uncond_curve=tuple(plain_curve[:n_total].tolist()),
        seconds={
            "plain_per_sample": round(plain_rate, 5),
            "guided_per_sample": round(guided_rate, 5),
            "guided_over_plain": ratio(guided_rate, plain_rate),
            "surrogate": round(surrogate, 2),
            "side_run": round(side_run, 2),
        },
        n_same_time=n_same_time,
        uncond_same_time=int(plain_curve[n_same_time - 1]) if n_same_time <= n_plain else None,
        extra_plain=n_plain - n_total,
    )


def whole_run_text(whole: WholeRun) -> str:
    """The whole SIDE run against UnCond, in one paragraph (report.md, the CLI)."""
    s = whole.seconds
    drawn = whole.n_total + whole.extra_plain
    same_time = (
        f"UnCond {whole.uncond_same_time} distinct"
        if whole.uncond_same_time is not None
        else f"UnCond at that time would need {whole.n_same_time - drawn} plain samples more than the {drawn} drawn, "
        "so it is not counted (benchmarks.extraction draws them)"
    )
    extra = f", {whole.extra_plain} of them drawn beyond N_total" if whole.extra_plain > 0 else ""
    beyond = whole.beyond_pool()
    rate = beyond["per_1000"]
    uncond_rate = "-" if rate["uncond"] is None else f"{rate['uncond']:.1f}"
    return (
        f"Whole run: the {whole.n_syn}-sample pool plus {whole.n_guided} guided samples ({whole.n_total} in all) "
        f"hold {whole.side} distinct training images (high band); UnCond with {whole.n_total} plain samples "
        f"{whole.uncond}. Timed side by side, "
        f"a guided sample takes {s['guided_per_sample']:.4f} s, {s['guided_over_plain']:.2f}x a plain "
        f"one ({s['plain_per_sample']:.4f} s); with the surrogate's {s['surrogate']:.0f} s the SIDE run takes "
        f"{s['side_run']:.0f} s, as long as {whole.n_same_time} plain samples{extra}: {same_time}. "
        f"Beyond the pool's {whole.pool} images: the guided samples copied {beyond['side']} more "
        f"({rate['side']:.1f} per 1,000), the {beyond['samples']['uncond']} plain samples after the pool "
        f"{beyond['uncond']} ({uncond_rate} per 1,000)."
    )
