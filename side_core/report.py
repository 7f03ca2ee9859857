"""Extraction results as typed objects, and the files made from them: report.json (stable shape),
report.md (the table), a CSV of the table, a PNG and a ZIP of the best extractions next to their
nearest training images.

The JSON shape of a report (report.json; scripts read it) is ``{"model", "data",
"similarity": {name, preprocessing, bands}, "methods": {method: {n_generated, ams, ums, p95,
extracted, seconds, generation, score, cost, landed}}, "config", "clusters", "classifiers", "filter",
"whole_run", "ratios"}``; ``extract`` returns a :class:`Report` (:func:`build_report`), which is
written to and read from that shape only at the file boundary.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from side_core.allocation import flagged_share
from side_core.cluster import Clustering, band_counts
from side_core.errors import SideError
from side_core.images import grid, save_png, to_uint8, upscale_nearest
from side_core.metrics import BAND_NAMES, Bands, distinct_curve, in_band
from side_core.store import Stage, write_json, write_text

if TYPE_CHECKING:
    from side_core.config import ExtractionConfig
    from side_core.pipeline import Surrogate
    from side_core.run import Run


@dataclass(frozen=True)
class MethodResult:
    """One method's row of a report: the paper's metrics at N_G, and the stages behind them."""

    n_generated: int  # N_G
    ams: dict[str, float]  # band -> percent of samples whose nearest training image is in the band
    ums: dict[str, float]  # band -> distinct training images in the band, percent of N_G
    p95: float  # 95th percentile of each sample's nearest similarity
    extracted: tuple[int, ...]  # sorted training indices with some sample in the high band
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each stage behind the row
    generation: str | None = None  # the generation stage's folder name
    score: str | None = None  # the score stage's folder name
    cost: int | None = None  # samples drawn in all: N_G, plus the N_syn pool for the guided methods
    landed: float | None = None  # guided rows: fraction of samples whose surrogate label is their target

    @property
    def distinct(self) -> int:
        """Distinct training images extracted (high band)."""
        return len(self.extracted)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MethodResult:
        return cls(
            n_generated=int(d["n_generated"]),
            ams=dict(d["ams"]),
            ums=dict(d["ums"]),
            p95=float(d["p95"]),
            extracted=tuple(int(i) for i in d["extracted"]),
            seconds=dict(d.get("seconds", {})),
            generation=d.get("generation"),
            score=d.get("score"),
            cost=d.get("cost"),
            landed=d.get("landed"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n_generated": self.n_generated,
            "ams": self.ams,
            "ums": self.ums,
            "p95": self.p95,
            "extracted": list(self.extracted),
            "seconds": self.seconds,
        }
        if self.generation is not None:
            out.update(generation=self.generation, score=self.score)
        if self.cost is not None:
            out["cost"] = self.cost
        if self.landed is not None:
            out["landed"] = self.landed
        return out


@dataclass(frozen=True)
class WholeRun:
    """What a whole SIDE run yields: the N_syn plain samples of its pool, then its N_G guided samples,
    against plain sampling (UnCond) with as many samples in all (the pool, then UnCond's own N_G plain
    samples: the pool is itself plain sampling) and with the same wall time.

    Wall time: guided and plain samples cost what the SIDE and UnCond generation stages recorded per
    sample; the SIDE run is its pool (N_syn plain samples), the surrogate's features, clustering and
    classifier training (as recorded), and its N_G guided samples. ``n_same_time`` plain samples take
    as long."""

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


def whole_run(run: Run, rows: dict[str, MethodResult], pool_score: Stage, extra_score: Stage | None = None) -> WholeRun:
    """The :class:`WholeRun` of a report's UnCond and SIDE rows and the pool's score stage;
    ``extra_score``: more plain samples, drawn after UnCond's, to reach the SIDE run's wall time."""
    side, uncond = rows["side"], rows["uncond"]
    n_syn = pool_score.summary()["n_generated"]
    pool_first = run.first_hit(pool_score)
    side_first = chained_first_hit([pool_first, run.first_hit(run.find(side.score))], [n_syn, side.n_generated])
    plain_hits, plain_sizes = [pool_first, run.first_hit(run.find(uncond.score))], [n_syn, uncond.n_generated]
    if extra_score is not None:
        plain_hits.append(run.first_hit(extra_score))
        plain_sizes.append(extra_score.summary()["n_generated"])
    n_total, n_plain = n_syn + side.n_generated, sum(plain_sizes)
    plain_curve = distinct_curve(chained_first_hit(plain_hits, plain_sizes), n_plain)

    plain_rate = uncond.seconds["generate"] / uncond.n_generated
    guided_rate = side.seconds["generate"] / side.n_generated
    surrogate = sum(side.seconds.get(k, 0.0) for k in ("features", "clusters", "classifier"))
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


@dataclass(frozen=True)
class Report:
    """UnCond / Cond / SIDE at equal N_G. ``model``, ``data``, ``config``, ``clusters`` and
    ``classifiers`` are passed through as the engine wrote them; ``extra`` keeps any other keys
    (a benchmark's), so that ``to_json`` gives back what ``from_json`` read."""

    model: dict[str, Any]
    data: dict[str, Any] | None
    similarity: dict[str, Any]  # name, preprocessing, bands
    methods: dict[str, MethodResult]
    config: dict[str, Any] | None = None
    clusters: dict[str, Any] | None = None
    classifiers: dict[str, Any] | None = None
    whole_run: WholeRun | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    _FIELDS = ("model", "data", "similarity", "methods", "config", "clusters", "classifiers", "whole_run")

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Report:
        return cls(
            model=d["model"],
            data=d.get("data"),
            similarity=d["similarity"],
            methods={m: MethodResult.from_json(row) for m, row in d["methods"].items()},
            config=d.get("config"),
            clusters=d.get("clusters"),
            classifiers=d.get("classifiers"),
            whole_run=WholeRun.from_json(d["whole_run"]) if d.get("whole_run") else None,
            extra={k: v for k, v in d.items() if k not in cls._FIELDS and k != "ratios"},
        )

    @classmethod
    def of(cls, report: Report | dict[str, Any]) -> Report:
        """A Report from either a Report or its JSON dict (what ``extract`` returns)."""
        return report if isinstance(report, Report) else cls.from_json(report)

    def to_json(self) -> dict[str, Any]:
        out = {
            "model": self.model,
            "data": self.data,
            "similarity": self.similarity,
            "config": self.config,
            "methods": {m: row.to_json() for m, row in self.methods.items()},
        }
        for key in ("clusters", "classifiers"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.whole_run is not None:
            out["whole_run"] = self.whole_run.to_json()
        return {**out, **self.extra, "ratios": self.ratios()}

    @property
    def bands(self) -> Bands:
        return Bands.from_dict(self.similarity["bands"])

    def side_over(self, base: str) -> tuple[float | None, float | None]:
        """SIDE over a baseline: (AMS high ratio, distinct ratio); None where the baseline has 0."""
        side, b = self.methods["side"], self.methods[base]
        return ratio(side.ams["high"], b.ams["high"]), ratio(side.distinct, b.distinct)

    def ratios(self) -> dict[str, float | None]:
        """SIDE over each baseline and control present, for high-band AMS and distinct extractions."""
        out: dict[str, float | None] = {}
        if "side" not in self.methods:
            return out
        for base in ("uncond", "cond", "shuffled"):
            if base in self.methods:
                ams_high, distinct = self.side_over(base)
                out[f"ams_high_side_over_{base}"] = ams_high
                out[f"distinct_side_over_{base}"] = distinct
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per method (the CSV's): n_generated, ams_*, ums_*, p95, distinct_high."""
        return [
            {
                "method": method,
                "n_generated": m.n_generated,
                **{f"ams_{b}": m.ams[b] for b in BAND_NAMES},
                **{f"ums_{b}": m.ums[b] for b in BAND_NAMES},
                "p95": m.p95,
                "distinct_high": m.distinct,
            }
            for method, m in self.methods.items()
        ]


def method_result(
    generation: Stage, score: Stage, cost: int, seconds: dict[str, float], landed: float | None = None
) -> MethodResult:
    """A method's row from its generation and score stages; ``seconds``: the stages before them;
    ``landed``: for a guided row, the fraction of samples that landed in their target class."""
    summary = score.summary()
    return MethodResult(
        n_generated=summary["n_generated"],
        ams=summary["ams"],
        ums=summary["ums"],
        p95=summary["p95"],
        extracted=tuple(summary["extracted"]),
        seconds={**seconds, "generate": generation.summary()["seconds"], "score": summary["seconds"]},
        generation=generation.path.name,
        score=score.path.name,
        cost=cost,
        landed=landed,
    )


def build_report(
    run: Run,
    config: ExtractionConfig,
    methods: dict[str, MethodResult],
    surrogate: Surrogate | None = None,
    pool_filter: Stage | None = None,
    evaluations: dict[str, Stage] | None = None,
    whole: WholeRun | None = None,
) -> Report:
    """An extraction's report: what was run (model, training set, similarity and its bands, settings),
    each method's row, the surrogate's clusters and classifiers behind the guided rows (with each
    classifier's evaluation at the sampler's timesteps, ``Run.evaluation``), the Filter baseline on the
    surrogate's pool (``Run.filter``): what SIDE adds is what it extracts beyond it, and the whole run."""
    clusters = classifiers = None
    evaluations = evaluations or {}
    if surrogate is not None:
        summary = surrogate.clusters.summary()
        clusters = {k: summary.get(k) for k in ("n_classes", "in_classes", "silhouette")}
        accuracies = ("quartiles", "accuracy", "clean_accuracy", "chance", "timesteps", "timestep_accuracy")
        classifiers = {
            m: {
                k: v for k, v in surrogate.classifier_report(m, evaluations.get(m)).to_dict().items() if k in accuracies
            }
            for m in surrogate.classifiers
        }
    extra = {}
    if pool_filter is not None:
        extra["filter"] = {k: v for k, v in pool_filter.summary().items() if k != "seconds"}
    return Report(
        model=run.model.facts(),
        data=run.data.facts() if run.data else None,
        similarity={**run.similarity.to_dict(), "bands": run.bands().to_dict()},
        methods=methods,
        config=config.to_dict(),
        clusters=clusters,
        classifiers=classifiers,
        whole_run=whole,
        extra=extra,
    )


def markdown_table(report: Report | dict) -> str:
    """The AMS/UMS table (percent), p95 and distinct extractions, one row per method; then the
    honest accounting: every sample each method drew (the guided ones first drew the N_syn pool),
    the share of guided samples that landed in their target class, and the Filter baseline on that
    pool, where the report has it."""
    report = Report.of(report)
    head = (
        ["method", "N_G"]
        + [f"AMS {b}" for b in BAND_NAMES]
        + [f"UMS {b}" for b in BAND_NAMES]
        + ["p95", "distinct (high)", "samples drawn in all", "distinct per 1,000 drawn", "landed in target"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    blank = ["-"] * (2 * len(BAND_NAMES) + 1)
    for method, m in report.methods.items():
        cells = [method, str(m.n_generated)]
        cells += [f"{m.ams[b]:.2f}" for b in BAND_NAMES] + [f"{m.ums[b]:.2f}" for b in BAND_NAMES]
        cost = m.cost or m.n_generated
        cells += [f"{m.p95:.3f}", str(m.distinct), str(cost), f"{1000 * m.distinct / cost:.1f}"]
        cells.append("-" if m.landed is None else f"{100 * m.landed:.0f}%")
        lines.append("| " + " | ".join(cells) + " |")
    pool = report.extra.get("filter")
    if pool:
        distinct = len(pool["extracted"])
        lines.append(
            "| "
            + " | ".join(["filter", f"{pool['flagged']} flagged", *blank, str(distinct)])
            + f" | {pool['n_generated']} | {1000 * distinct / pool['n_generated']:.1f} | - |"
        )
    return "\n".join(lines)


def whole_run_text(whole: WholeRun) -> str:
    """The whole SIDE run against UnCond, in one paragraph (report.md, the CLI)."""
    s = whole.seconds
    same_time = (
        f"{whole.uncond_same_time} distinct" if whole.uncond_same_time is not None else "not counted (too many samples)"
    )
    extra = f", {whole.extra_plain} of them drawn beyond N_total" if whole.extra_plain > 0 else ""
    return (
        f"Whole run: the {whole.n_syn}-sample pool plus {whole.n_guided} guided samples ({whole.n_total} in all) "
        f"hold {whole.side} distinct training images (high band); UnCond with {whole.n_total} plain samples "
        f"{whole.uncond}. A guided sample takes {s['guided_per_sample']:.4f} s, {s['guided_over_plain']}x a plain "
        f"one ({s['plain_per_sample']:.4f} s); with the surrogate's {s['surrogate']:.0f} s the SIDE run takes "
        f"{s['side_run']:.0f} s, as long as {whole.n_same_time} plain samples{extra}: UnCond {same_time}."
    )


def ratios(report: Report | dict) -> dict[str, float | None]:
    """SIDE over each baseline, for high-band AMS and distinct extractions (None if undefined)."""
    return Report.of(report).ratios()


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b to 3 decimals; None where either is missing or b is 0 (e.g. a method never reached K)."""
    return round(a / b, 3) if a is not None and b else None


def report_json(report: Report) -> str:
    """report.json's text: the report with its ratios."""
    return json.dumps(report.to_json(), indent=2)


def report_csv(report: Report) -> str:
    """The table as CSV, one row per method (``Report.rows``)."""
    rows = report.rows()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["method"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@dataclass(frozen=True)
class SweepPoint:
    """SIDE at one guidance scale (a row of ``guidance_sweep``)."""

    scale: float
    ams: dict[str, float]
    ums: dict[str, float]
    p95: float
    distinct: int
    score: str

    @classmethod
    def from_score(cls, scale: float, score: Stage) -> SweepPoint:
        summary = score.summary()
        return cls(
            float(scale), summary["ams"], summary["ums"], summary["p95"], len(summary["extracted"]), score.path.name
        )

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SweepPoint:
        return cls(float(d["scale"]), dict(d["ams"]), dict(d["ums"]), float(d["p95"]), int(d["distinct"]), d["score"])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scored:
    """A scored generation: its samples and each one's nearest training images."""

    images: torch.Tensor  # (N, C, H, W) float32 in [-1, 1]
    similarity: np.ndarray  # (N, k) float32, descending
    index: np.ndarray  # (N, k) int64 training indices
    bands: Bands

    @property
    def nearest(self) -> np.ndarray:
        """(N,) similarity of each sample to its nearest training image."""
        return self.similarity[:, 0]

    @property
    def is_copy(self) -> np.ndarray:
        """(N,) bool: the nearest training image is in the high band."""
        return in_band(self.nearest, self.bands.high)

    @property
    def n_copies(self) -> int:
        return int(self.is_copy.sum())

    def band(self, similarity: float) -> str:
        """'high', 'mid', 'low', or 'below' (the low band) for one similarity."""
        return self.bands.name_of(float(similarity)) or "below"

    def take(self, ids: list[int] | np.ndarray) -> Scored:
        """The same for the samples ``ids`` only, in that order."""
        return Scored(self.images[ids], self.similarity[ids], self.index[ids], self.bands)


def scored(run: Run, generation: Stage, score: Stage) -> Scored:
    similarity, index = run.neighbours(score)
    return Scored(run.images(generation), similarity, index, run.bands())


@dataclass(frozen=True)
class Pairs:
    """A method's best distinct extractions, best first."""

    generated: torch.Tensor  # (n, C, H, W) float32 in [-1, 1]
    training: torch.Tensor  # (n, C, H, W): each sample's nearest training image
    similarity: np.ndarray  # (n,)
    train_index: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.generated)


def best_extractions(run: Run, generation: Stage, score: Stage, n: int = 8) -> Pairs:
    """The ``n`` samples of a scored generation closest to distinct training images, best first."""
    sims, idx = run.neighbours(score)
    order = np.argsort(-sims[:, 0], kind="stable")
    chosen, seen = [], set()
    for i in order:
        if idx[i, 0] not in seen:
            seen.add(idx[i, 0])
            chosen.append(i)
        if len(chosen) == n:
            break
    chosen = np.array(chosen, dtype=np.int64)
    train_idx = idx[chosen, 0]
    return Pairs(run.images(generation)[chosen], run.data.images[train_idx], sims[chosen, 0], train_idx)


def best_pairs(run: Run, report: Report, n: int = 8) -> dict[str, Pairs]:
    """Each method's ``n`` samples closest to distinct training images, with those images."""
    return {
        method: best_extractions(run, run.find(row.generation), run.find(row.score), n)
        for method, row in report.methods.items()
    }


def pair_image(generated: torch.Tensor, training: torch.Tensor, scale: int = 4, pad: int = 4) -> np.ndarray:
    """(C, H, W) sample and training image -> one (H', W', C) uint8 image, side by side, so that a
    pair never breaks across rows."""
    return grid(upscale_nearest(to_uint8(torch.stack([generated, training])), scale), n_cols=2, pad=pad)


def pairs_zip(pairs: dict[str, Pairs], scale: int = 4) -> bytes:
    """A ZIP of PNGs, ``method/rank_simS_trainI.png``: each sample next to its training image."""
    from PIL import Image

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for method, p in pairs.items():
            for rank in range(len(p)):
                image = pair_image(p.generated[rank], p.training[rank], scale)
                png = io.BytesIO()
                Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(png, format="PNG")
                name = f"{method}/{rank + 1:02d}_sim{p.similarity[rank]:.3f}_train{int(p.train_index[rank]):05d}.png"
                zf.writestr(name, png.getvalue())
    return buffer.getvalue()


@dataclass(frozen=True)
class ClassCopies:
    """How well guidance toward each class extracted in a guided generation whose samples drew their
    targets uniformly (a report's Cond or SIDE row)."""

    aimed: np.ndarray  # (n_classes,) int64 samples aimed at each class
    copies: np.ndarray  # (n_classes,) int64 of them whose nearest training image is in the high band

    def rate(self, cls: int) -> float | None:
        """The share of samples aimed at ``cls`` that are copies; None if none was aimed at it."""
        return float(self.copies[cls] / self.aimed[cls]) if self.aimed[cls] else None

    def n_above(self, rate: float) -> tuple[int, int]:
        """(classes whose guided copy rate exceeds ``rate``, classes some sample was aimed at)."""
        rates = [r for c in range(len(self.aimed)) if (r := self.rate(c)) is not None]
        return sum(r > rate for r in rates), len(rates)


def class_copies(run: Run, report: Report, method: str = "side") -> ClassCopies:
    """Per class, the samples of a report's guided generation aimed at it and the copies among them."""
    row = report.methods[method]
    targets = run.targets(run.find(row.generation))
    if targets is None:
        raise ValueError(f"the {method} generation has no targets: it is not guided")
    n_classes = int(report.clusters["n_classes"])
    similarity, _ = run.neighbours(run.find(row.score))
    aimed = np.bincount(targets.numpy(), minlength=n_classes)
    copies = band_counts(targets.numpy(), similarity[:, 0], report.bands, n_classes)[:, BAND_NAMES.index("high")]
    return ClassCopies(aimed, copies)


@dataclass(frozen=True)
class PoolEvidence:
    """What an attacker knows of one surrogate class from the pool of plain samples alone, with no
    training image: a model draws what it memorized again and again, so a class whose pool samples
    have near-identical partners in the pool is where guidance can be expected to copy."""

    cls: int  # surrogate class id
    size: int  # pool samples in the class
    cohesion: float  # mean member-to-centroid cosine of its cluster
    flagged: int  # of them with a near-identical partner in the pool (the Filter signal)

    @property
    def flagged_share(self) -> float:
        return self.flagged / max(self.size, 1)


def rank_by_pool(clustering: Clustering, partner: np.ndarray) -> list[PoolEvidence]:
    """The surrogate classes, the most promising target first, by evidence that reads no training
    image: the share of a class's pool samples with a near-identical partner (the flagged allocation's
    weight, side_core.allocation), ties by cohesion. ``clustering``: the pool's; ``partner`` (N,)
    int64 from ``Run.pool`` (-1: none)."""
    n_classes = clustering.n_classes
    sizes = np.bincount(clustering.labels, minlength=n_classes + 1)[:n_classes]
    try:
        share = flagged_share(clustering.labels, n_classes, partner)
    except SideError:  # no class holds a flagged sample: cohesion alone ranks
        share = np.zeros(n_classes)
    evidence = [
        PoolEvidence(
            cls=cls,
            size=int(sizes[cls]),
            cohesion=float(clustering.cohesion[cluster_id]),
            flagged=int(round(share[cls] * sizes[cls])),
        )
        for cls, cluster_id in enumerate(clustering.kept)
    ]
    return sorted(evidence, key=lambda e: (-e.flagged_share, -e.cohesion, e.cls))


def write_report(report: Report | dict, out: str | Path, command: str, pairs: dict[str, Pairs]) -> None:
    """Write report.json, report.md and extractions.png into ``out``; ``pairs`` are each method's
    best distinct extractions (:func:`best_pairs`)."""
    out = Path(out)
    typed = Report.of(report)
    report = {**typed.to_json(), "command": command}
    write_json(out / "report.json", report)
    bands = report["similarity"]["bands"]
    band_text = ", ".join(f"{b} [{lo:.3f}, {'1' if hi is None else f'{hi:.3f}'})" for b, (lo, hi) in bands.items())
    md = [
        "# SIDE extraction report",
        "",
        f"Command: `{command}`",
        "",
        f"Model: {report['model']['source']}; data: {report['data']['source'] if report['data'] else '-'}",
        f"Similarity: {report['similarity']['name']} ({report['similarity']['preprocessing']}); bands: {band_text}",
        "",
        markdown_table(typed),
        "",
        "AMS and UMS in percent of N_G. Distinct = training images with some sample in the high band.",
    ]
    if typed.whole_run is not None:
        md += ["", whole_run_text(typed.whole_run)]
    if report["ratios"]:
        md += ["", "Ratios: " + ", ".join(f"{k} = {v}" for k, v in report["ratios"].items())]
    write_text(out / "report.md", "\n".join(md) + "\n")
    save_png(extraction_grid(pairs), out / "extractions.png")


def extraction_grid(pairs: dict[str, Pairs], per_row: int = 8, scale: int = 4) -> np.ndarray:
    """One row per method: (generated | training) pairs side by side, upscaled, with a label."""
    from PIL import Image, ImageDraw

    rows = []
    for method, p in pairs.items():
        generated, training = p.generated, p.training
        n = min(per_row, len(generated))
        if n:
            tiles = to_uint8(torch.stack([im for i in range(n) for im in (generated[i], training[i])]))
            tiles = np.repeat(tiles, 3, axis=-1) if tiles.shape[-1] == 1 else tiles
            row = grid(upscale_nearest(tiles, scale), n_cols=2 * per_row, pad=2)
        else:
            row = np.full((40, 200, 3), 255, np.uint8)
        label = Image.new("RGB", (90, row.shape[0]), "white")
        ImageDraw.Draw(label).text((6, row.shape[0] // 2 - 6), method, fill="black")
        rows.append(np.concatenate([np.asarray(label), row], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)
