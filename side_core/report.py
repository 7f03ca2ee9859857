"""Extraction results as typed objects, built from the stages behind them (the files made from them:
side_core.report_files).

The JSON shape of a report (report.json; scripts read it) is ``{"model", "data",
"similarity": {name, preprocessing, bands}, "methods": {method: {n_generated, ams, ums, p95,
extracted, seconds, generation, score, cost, landed}}, "config", "clusters", "classifiers", "filter",
"whole_run", "timings", "ratios"}``; ``extract`` returns a :class:`Report` (:func:`build_report`), which is
written to and read from that shape only at the file boundary. The whole run's accounting is
side_core.whole_run; the pairs, pictures and per-class views a person inspects, side_core.inspection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from side_core.config import ExtractionConfig
from side_core.kinds.classifier import Evaluation
from side_core.kinds.cost import SamplingCost
from side_core.kinds.generation import Generation
from side_core.kinds.scoring import PoolFilter, Score, bands
from side_core.metrics import BAND_NAMES, Bands, ratio
from side_core.run import Run, Stored
from side_core.surrogate import Surrogate
from side_core.whole_run import WholeRun


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
        """The table, one flat row per method and then Filter's (the CSV's, and what
        :func:`markdown_table` formats): n_generated, ams_*, ums_*, p95, distinct_high, then the
        honest accounting: drawn_in_all (every sample the method drew: the guided ones first drew the
        N_syn pool), distinct_per_1000_drawn, landed_in_target_percent (guided rows) and, for Filter,
        flagged (pool samples with a near-identical partner). A value a row does not have is None."""
        rows = []
        for method, m in self.methods.items():
            drawn = m.cost or m.n_generated
            rows.append(
                {
                    "method": method,
                    "n_generated": m.n_generated,
                    **{f"ams_{b}": m.ams[b] for b in BAND_NAMES},
                    **{f"ums_{b}": m.ums[b] for b in BAND_NAMES},
                    "p95": m.p95,
                    "distinct_high": m.distinct,
                    "drawn_in_all": drawn,
                    "distinct_per_1000_drawn": round(1000 * m.distinct / drawn, 1),
                    "landed_in_target_percent": None if m.landed is None else round(100 * m.landed),
                    "flagged": None,
                }
            )
        pool = self.extra.get("filter")
        if pool:
            distinct = len(pool["extracted"])
            rows.append(
                {
                    **dict.fromkeys(rows[0] if rows else ()),
                    "method": "filter",
                    "distinct_high": distinct,
                    "drawn_in_all": pool["n_generated"],
                    "distinct_per_1000_drawn": round(1000 * distinct / pool["n_generated"], 1),
                    "flagged": pool["flagged"],
                }
            )
        return rows


def method_result(
    generation: Generation, score: Score, cost: int, seconds: dict[str, float], landed: float | None = None
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
        generation=generation.name,
        score=score.name,
        cost=cost,
        landed=landed,
    )


def timing_sources(run: Run, stages: dict[str, Stored]) -> dict[str, dict[str, Any]]:
    """Where and when each timing of a report was measured: for each timed stage (by what it timed),
    its folder, the store that holds it and whether that store is read-only (the bundled one, whose
    stages were made elsewhere), and ``made``: the host, CPU, device, threads, torch and time
    (UTC) the stage recorded when it was made (side_core.stages.made_here), or None for a stage made
    before stages recorded them."""
    return {
        what: {
            "stage": stage.name,
            "store": str(stage.path.parent),
            "read_only": stage.path.parent != run.root,
            "made": stage.summary().get("made"),
        }
        for what, stage in stages.items()
    }


def build_report(
    run: Run,
    config: ExtractionConfig,
    methods: dict[str, MethodResult],
    surrogate: Surrogate | None = None,
    pool_filter: PoolFilter | None = None,
    evaluations: dict[str, Evaluation] | None = None,
    whole: WholeRun | None = None,
    sampling_cost: SamplingCost | None = None,
) -> Report:
    """An extraction's report: what was run (model, training set, similarity and its bands, settings),
    each method's row, the surrogate's clusters and classifiers behind the guided rows (with each
    classifier's evaluation at the sampler's timesteps), the Filter baseline on the surrogate's pool
    (side_core.kinds.scoring.PoolFilter): what SIDE adds is what it extracts beyond it, the whole run, and
    where and when each timing was measured (``timings``: :func:`timing_sources`; ``sampling_cost``
    is the stage that timed a plain and a guided sample side by side)."""
    clusters = classifiers = None
    evaluations = evaluations or {}
    timed: dict[str, Stored] = {}
    if sampling_cost is not None:
        timed["the side-by-side timing of a plain sample, a guided sample and a classifier step"] = sampling_cost
    if surrogate is not None:
        timed |= {"pool samples": surrogate.synthetic, "features": surrogate.features, "clusters": surrogate.clusters}
        timed |= {f"{m} classifier": stage for m, stage in surrogate.classifiers.items()}
    for method, row in methods.items():
        if row.generation is not None:
            timed |= {
                f"{method} samples": run.find(row.generation, Generation),
                f"{method} scores": run.find(row.score, Score),
            }
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
    extra: dict[str, Any] = {"timings": timing_sources(run, timed)}
    if pool_filter is not None:
        extra["filter"] = {k: v for k, v in pool_filter.summary().items() if k not in ("seconds", "made")}
    return Report(
        model=run.model.facts(),
        data=run.data.facts() if run.data else None,
        similarity={**run.similarity.to_dict(), "bands": bands(run).to_dict()},
        methods=methods,
        config=config.to_dict(),
        clusters=clusters,
        classifiers=classifiers,
        whole_run=whole,
        extra=extra,
    )


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
    def from_score(cls, scale: float, score: Score) -> SweepPoint:
        summary = score.summary()
        return cls(float(scale), summary["ams"], summary["ums"], summary["p95"], len(summary["extracted"]), score.name)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SweepPoint:
        return cls(float(d["scale"]), dict(d["ams"]), dict(d["ums"]), float(d["p95"]), int(d["distinct"]), d["score"])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
