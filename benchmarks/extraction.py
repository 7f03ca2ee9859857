"""UnCond vs Cond vs SIDE (and the Filter baseline, and the shuffled-label control) on one model at
equal N_G, over several generation seeds, with the cost-of-extraction curves, where guided samples
land, the whole SIDE run (pool plus guided samples) against UnCond, SIDE under each allocation, and sweeps.

    python -m benchmarks.extraction                                   # the bundled default, N_G 512
    python -m benchmarks.extraction --model M --data D --name extraction_fashion-mnist
    python -m benchmarks.extraction --sweeps                          # plus guidance-scale and K sweeps

All methods share the sampler, steps and seeds (so sample i starts from the same noise in every
method). Every method runs at each of --seeds (default 0, 2, 3: other noise and targets, one
surrogate built from --surrogate-seed), because one seed's samples-to-K moves by tens of samples;
SIDE also runs under each of --allocations. Writes to benchmarks/results/: NAME.json (the engine's
report at the first seed, plus n_train, seeds, the mean curves, samples_to_k, per-seed rows, the
controls, the landed fractions, the whole run, the allocations and the headline ratios), NAME.md
(the tables), NAME.png (bars per method and band), NAME_curve.png (distinct extractions vs N_G, vs
every sample drawn with the Filter baseline, and the whole run), and with --sweeps
sweep_scale.{json,png} and sweep_k.{json,png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

from benchmarks.provenance import add_output_flags, start
from side_core.allocation import ALLOCATIONS
from side_core.cli import add_extraction_flags, extraction_config, open_run
from side_core.config import ExtractionConfig, paper_recipe
from side_core.kinds.scoring import Score
from side_core.metrics import BAND_NAMES, distinct_curve, ratio, samples_to_k
from side_core.pipeline import CONTROLS, METHODS, extract, guidance_sweep
from side_core.report import Report
from side_core.report_files import markdown_table
from side_core.run import Run
from side_core.store import write_json, write_text

log = logging.getLogger("extraction")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_extraction_flags(p, report=False, store="runs/benchmark")
    p.set_defaults(n_samples=512)  # at least 512 per method on CPU; raise it on a GPU
    p.add_argument("--sweeps", action="store_true", help="also sweep the guidance scale and K")
    p.add_argument("--scales", default="0,1,2,4,8,16,50", help="guidance scales for the sweep")
    p.add_argument("--ks", default="50,100,200", help="K values for the sweep")
    p.add_argument(
        "--seeds",
        default="0,2,3",
        help="generation seeds of the N_G samples (replaces --seed; surrogate seed + 1 is the N_syn pool's)",
    )
    p.add_argument(
        "--allocations",
        default=",".join(ALLOCATIONS.names()),
        help="SIDE is also run with each of these allocations, to compare them (--allocation is the headline)",
    )
    p.add_argument(
        "--controls",
        default=",".join(CONTROLS),
        help="controls run beside the methods (shuffled: SIDE's guidance from a classifier on shuffled labels); "
        "empty: none",
    )
    p.add_argument(
        "--max-extra-plain",
        type=int,
        default=4096,
        help="at most this many plain samples beyond N_syn + N_G to count UnCond at the SIDE run's wall time",
    )
    p.add_argument(
        "--no-paper",
        dest="paper",
        action="store_false",
        help="skip the paper's recipe (ResNet classifiers on whole clusters, uniform targets) as rows",
    )
    p.add_argument(
        "--ceiling",
        default=None,
        help="the model's ceiling (a benchmarks.ceiling results file), copied into the results as 'ceiling'",
    )
    p.add_argument("--name", default="extraction", help="results base name, e.g. extraction_fashion-mnist")
    add_output_flags(p)
    return p.parse_args()


def curve_of(run: Run, score: str, n: int) -> list[int]:
    """Distinct high-band extractions among the first 1..n samples of a scored generation."""
    return distinct_curve(run.find(score, Score).first_hit("high"), n).tolist()


def mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 2)


def over_seeds(
    run: Run, config: ExtractionConfig, seeds: list[int], methods: tuple[str, ...], max_extra_plain: int = 0
) -> list[Report]:
    """The engine's report at each generation seed; the surrogate (N_syn pool, clusters,
    classifiers) is built once, from config.surrogate_seed, and shared by every seed."""
    return [
        extract(run, dataclasses.replace(config, seed=seed), methods, max_extra_plain=max_extra_plain) for seed in seeds
    ]


def summary_over_seeds(run: Run, reports: list[Report], method: str) -> dict:
    """One method over the seeds: the per-seed AMS high, distinct and curve, and their means."""
    rows = []
    for report in reports:
        row = report.methods[method]
        rows.append(
            {
                "seed": report.config["seed"],
                "ams_high": row.ams["high"],
                "distinct": row.distinct,
                "landed": row.landed,
                "curve": curve_of(run, row.score, row.n_generated),
            }
        )
    landed = [r["landed"] for r in rows]
    return {
        "rows": rows,
        "mean_ams_high": mean([r["ams_high"] for r in rows]),
        "mean_distinct": mean([r["distinct"] for r in rows]),
        "mean_landed": None if None in landed else round(sum(landed) / len(landed), 4),
        "curve": mean_curve([r["curve"] for r in rows]),
    }


def mean_curve(curves: list[list[int]]) -> list[float]:
    return [round(sum(c[i] for c in curves) / len(curves), 3) for i in range(len(curves[0]))]


def whole_run_over_seeds(reports: list[Report]) -> dict:
    """The whole SIDE run (pool plus guided samples) against UnCond with as many samples and with the
    same wall time: per seed, and the means over seeds."""
    runs = [r.whole_run for r in reports]
    same_time = [w.uncond_same_time for w in runs]
    seconds = {k: round(sum(w.seconds[k] for w in runs) / len(runs), 5) for k in runs[0].seconds}
    return {
        "n_total": runs[0].n_total,
        "n_syn": runs[0].n_syn,
        "side": mean([w.side for w in runs]),
        "uncond": mean([w.uncond for w in runs]),
        "curves": {
            "side": mean_curve([list(w.side_curve) for w in runs]),
            "uncond": mean_curve([list(w.uncond_curve) for w in runs]),
        },
        "seconds": seconds,
        "n_same_time": mean([w.n_same_time for w in runs]),
        "uncond_same_time": None if None in same_time else mean(same_time),
        "extra_plain": mean([w.extra_plain for w in runs]),
        "pool": mean([w.pool for w in runs]),
        "per_seed": [
            {"seed": r.config["seed"], **{k: v for k, v in w.to_json().items() if k != "curves"}}
            for r, w in zip(reports, runs, strict=True)
        ],
    }


def beyond_pool_over_seeds(runs: list) -> dict:
    """Images copied beyond the pool (WholeRun.beyond_pool), means over seeds: by SIDE's guided samples
    and by the plain samples UnCond draws after the pool at the SIDE run's wall time, and per 1,000."""
    per_seed = [w.beyond_pool() for w in runs]
    rates = {m: [b["per_1000"][m] for b in per_seed] for m in ("side", "uncond")}
    return {
        "side": mean([b["side"] for b in per_seed]),
        "uncond": mean([b["uncond"] for b in per_seed]),
        "per_1000": {m: None if None in r else mean(r) for m, r in rates.items()},
    }


def read_ceiling(path: str | None) -> dict | None:
    """The ceiling's headline (benchmarks.ceiling's results file), or None without one."""
    if not path:
        return None
    found = json.loads(Path(path).read_text())
    return {k: found[k] for k in ("plain_n", "plain_distinct", "chao1", "attacker_estimate")} | {"file": path}


def add_samples_to_k(summaries: dict[str, dict], k: int) -> dict:
    """Samples each method needs to reach K distinct training images, per seed and the mean over seeds (None
    when some seed never reaches K)."""
    out: dict = {"k": k}
    for method, summary in summaries.items():
        per_seed = [samples_to_k(r["curve"], k) for r in summary["rows"]]
        for r, value in zip(summary["rows"], per_seed, strict=True):
            r["samples_to_k"] = value
        out[method] = mean(per_seed) if None not in per_seed else None
    return out


def plot_bars(report: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    methods = list(report["methods"])
    width = 0.8 / len(methods)
    for ax, metric in zip(axes, ("ams", "ums"), strict=True):
        for i, method in enumerate(methods):
            values = [report["methods"][method][metric][b] for b in BAND_NAMES]
            ax.bar([j + i * width for j in range(3)], values, width, label=method)
        ax.set_xticks([j + width * (len(methods) - 1) / 2 for j in range(3)], BAND_NAMES)
        ax.set_ylabel(f"{metric.upper()} (% of N_G)")
        ax.set_title(f"{metric.upper()} per band, N_G = {report['methods'][methods[0]]['n_generated']}")
    axes[0].legend()
    save(fig, path)


def plot_curves(
    curves: dict[str, list[float]], stk: dict, path: Path, pool: dict | None = None, whole: dict | None = None
) -> None:
    """Left: mean distinct extractions vs N_G (the paper's equal-budget view). Middle: the same
    against every sample drawn, the N_syn pool included, with the Filter baseline on that pool.
    Right: the whole SIDE run, pool then guided samples, against the pool then UnCond's samples."""
    import matplotlib.pyplot as plt

    n_panels = 1 + bool(pool) + bool(whole)
    fig, axes = plt.subplots(1, n_panels, figsize=(6 * n_panels, 4), squeeze=False)
    ax = axes[0][0]
    for method, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, label=method, ls="--" if method in CONTROLS else "-")
    ax.axhline(stk["k"], color="grey", lw=0.8, ls="--", label=f"K = {stk['k']}")
    ax.set_xlabel("N_G (samples drawn, in order)")
    ax.set_ylabel("distinct training images extracted (high band)")
    ax.set_title("equal N_G (mean over seeds)")
    ax.legend()
    if pool:
        ax = axes[0][1]
        n_syn = pool["n_generated"]
        for method, curve in curves.items():
            start = n_syn if method != "uncond" else 0  # the guided methods first drew the pool
            ax.plot(range(start + 1, start + len(curve) + 1), curve, label=method)
        ax.plot(range(1, n_syn + 1), pool["curve"], label="filter (pool only)")
        ax.plot(range(1, n_syn + 1), pool["plain_curve"], ":", color="C0", label="the pool as plain samples")
        ax.set_xlabel("samples drawn in all (N_syn pool included)")
        ax.set_ylabel("distinct training images extracted (high band)")
        ax.set_title("counting the N_syn pool")
        ax.legend()
    if whole:
        ax = axes[0][-1]
        for method, curve in whole["curves"].items():
            ax.plot(range(1, len(curve) + 1), curve, label=f"pool, then {method}")
        ax.axvline(whole["n_syn"], color="grey", lw=0.8, ls=":", label="end of the pool")
        ax.set_xlabel("samples in the whole run (the N_syn pool first)")
        ax.set_ylabel("distinct training images extracted (high band)")
        ax.set_title("the whole SIDE run vs UnCond with as many samples")
        ax.legend()
    save(fig, path)


def table_lines(report: dict, first: Report, made_by: dict) -> list[str]:
    """extraction.md: the first seed's table (``first``, the engine's report), the means over seeds,
    the controls, where guided samples landed, the whole run, the allocations, the yardsticks."""
    stk = report["samples_to_k"]
    lines = [
        f"Command: `{made_by['command']}` (git {made_by['git']['revision']}, sampler "
        f"{report['config']['sample']['sampler']}, {report['config']['sample']['num_steps']} steps)",
        "",
        f"Seed {report['seeds'][0]}:",
        "",
        markdown_table(first),
        "",
        f"Means over seeds {report['seeds']} (same surrogate), K = {stk['k']}:",
        "",
        "| method | AMS high | distinct (high) | samples to K |",
        "|---|---|---|---|",
    ]
    rows = [(m, {**r, "samples_to_k": stk[m]}) for m, r in report["means"].items()]
    rows += [(f"{m} (control)", r) for m, r in report.get("controls", {}).items()]
    rows += [(f"{m}, the paper's recipe", r) for m, r in report.get("paper_recipe", {}).items()]
    for label, r in rows:
        lines.append(f"| {label} | {r['ams_high']} | {r['distinct']} | {r['samples_to_k'] or 'never'} |")
    if report.get("landed"):
        lines += [
            "",
            "Guided samples that landed in their target class (mean over seeds): "
            + ", ".join(f"{m} {100 * f:.1f}%" for m, f in report["landed"].items() if f is not None)
            + ".",
        ]
    whole = report.get("whole_run")
    if whole:
        s = whole["seconds"]
        same_time = (
            f"UnCond then holds {whole['uncond_same_time']} distinct training images"
            if whole["uncond_same_time"] is not None
            else "more than --max-extra-plain allows, so UnCond at the same wall time is not counted"
        )
        lines += [
            "",
            f"Whole run (means over seeds): the {whole['n_syn']}-sample pool plus the guided samples "
            f"({whole['n_total']} samples) hold {whole['side']} distinct training images; UnCond with "
            f"{whole['n_total']} plain "
            f"samples {whole['uncond']}. Timed side by side, a guided sample costs {s['guided_over_plain']}x "
            "a plain one "
            f"({s['guided_per_sample']:.4f} s vs {s['plain_per_sample']:.4f} s); with the surrogate's "
            f"{s['surrogate']:.0f} s (features, clustering, classifier) the SIDE run takes as long as "
            f"{whole['n_same_time']} plain samples ({whole['extra_plain']} drawn beyond N_total): {same_time}.",
        ]
    beyond = report["beyond_pool"]
    lines += [
        "",
        f"Beyond the pool (means over seeds): SIDE's guided samples copied {beyond['side']} images the pool had not "
        f"({beyond['per_1000']['side']} per 1,000 guided samples); UnCond's plain samples after the pool, at the "
        f"SIDE run's wall time, {beyond['uncond']} ({beyond['per_1000']['uncond']} per 1,000).",
    ]
    reach = report.get("reach")
    if reach:
        a, sc = reach["attacker"], reach["scorer"]
        lines.append(
            f"Reach of plain sampling from the pool: the attacker estimates {a['estimate']} images from "
            f"{a['found']} near-identical groups; the scorer's Chao1 is {sc['estimate']} ({sc['found']} copied)."
        )
    if report.get("ceiling"):
        c = report["ceiling"]
        lines.append(
            f"Ceiling: {c['plain_n']} plain samples copy {c['plain_distinct']} images (Chao1 {c['chao1']}; "
            f"attacker estimate from the pool {c['attacker_estimate']})."
        )
    lines += [
        "",
        "SIDE allocations (means over the same seeds):",
        "",
        "| allocation | AMS high | distinct | samples to K |",
    ]
    lines.append("|---|---|---|---|")
    for a, r in report["allocations"].items():
        lines.append(f"| {a} | {r['ams_high']} | {r['distinct']} | {r['samples_to_k'] or 'never'} |")
    pool = report.get("filter")
    if pool:
        lines += [
            "",
            f"Counting the pool: the {pool['n_generated']} plain samples SIDE and Cond drew first hold "
            f"{pool['plain_curve'][-1]} distinct copies as they stand; Filter reports {len(pool['extracted'])} of them "
            f"({pool['flagged']} samples flagged near-identical, {pool['precision_high'] or 0}% of them copies).",
        ]
    lines += ["", "Yardsticks: " + ", ".join(f"{k} = {v}" for k, v in report["headline"].items())]
    return lines


def plot_sweep(rows: list[dict], key: str, label: str, k: int, path: Path, log_x: bool = False) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    x = [r[key] for r in rows]
    for band in ("high", "mid"):
        ax.plot(x, [r["ams"][band] for r in rows], "o-", label=f"AMS {band}")
        ax.plot(x, [r["ums"][band] for r in rows], "s--", label=f"UMS {band}")
    if log_x:
        ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel(label)
    ax.set_ylabel("% of N_G")
    cost = ax.twinx()  # the cost of extraction on its own axis: samples, not percent
    cost.plot(x, [r["samples_to_k"] for r in rows], "k^:", label=f"samples to extract {k} images")
    cost.set_ylabel(f"samples to extract K = {k} images")
    handles = ax.get_legend_handles_labels()[0] + cost.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8)
    save(fig, path)


def save(fig, path: Path) -> None:
    from side_core.store import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def headline(summaries: dict[str, dict], stk: dict, n_train: int) -> dict:
    """The issue's yardsticks, from the means over seeds: SIDE over each baseline in AMS high, in
    distinct training images at N_G = 2 x N_train (the paper's ratio of N_G to the training set) and at the
    full N_G, and each baseline's samples-to-K over SIDE's."""
    side = summaries["side"]
    n = len(side["curve"])
    at = min(2 * n_train, n)
    out: dict = {"n_g_at_2x_train": at}
    for base in ("uncond", "cond"):
        b = summaries[base]
        out[f"ams_high_side_over_{base}"] = ratio(side["mean_ams_high"], b["mean_ams_high"])
        out[f"distinct_at_2x_train_side_over_{base}"] = ratio(side["curve"][at - 1], b["curve"][at - 1])
        out[f"distinct_side_over_{base}"] = ratio(side["mean_distinct"], b["mean_distinct"])
        out[f"samples_to_k_{base}_over_side"] = ratio(stk[base], stk["side"])
    out["side_curve_never_below_uncond"] = all(
        s >= u for s, u in zip(side["curve"], summaries["uncond"]["curve"], strict=True)
    )
    return out


def main() -> None:
    args = parse_args()
    name = args.name
    outputs = [f"{name}.json", f"{name}.md", f"{name}.png", f"{name}_curve.png"]
    if args.sweeps:
        outputs += ["sweep_scale.json", "sweep_scale.png", "sweep_k.json", "sweep_k.png"]
    out, made_by = start(args, outputs)
    run = open_run(args, args.store)  # reuses the bundled stages where they match
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    config = dataclasses.replace(extraction_config(args), seed=seeds[0])
    allocations = [a for a in args.allocations.split(",") if a.strip() and a != config.allocation]
    for allocation in allocations:  # every setting is checked before the first sample
        dataclasses.replace(config, allocation=allocation)
    started = time.perf_counter()

    controls = tuple(c for c in args.controls.split(",") if c.strip())
    reports = over_seeds(run, config, seeds, METHODS + controls, args.max_extra_plain)
    report = reports[0].to_json()  # the engine's report shape (report.json), at the first seed
    summaries = {m: summary_over_seeds(run, reports, m) for m in METHODS}
    k = max(1, int(max(s["curve"][-1] for s in summaries.values())) // 2)
    stk = add_samples_to_k(summaries, k)
    control_summaries = {c: summary_over_seeds(run, reports, c) for c in controls}
    control_stk = add_samples_to_k(control_summaries, k)
    compared = {}
    for allocation in allocations:
        other = over_seeds(run, dataclasses.replace(config, allocation=allocation), seeds, ("side",))
        compared[allocation] = summary_over_seeds(run, other, "side")
    allocation_stk = add_samples_to_k(compared, k) if compared else {}
    paper = {}
    if args.paper:  # the paper's recipe for both guided methods, on the same pool, seeds and lambda
        paper_reports = over_seeds(run, paper_recipe(config), seeds, ("cond", "side"))
        paper = {m: summary_over_seeds(run, paper_reports, m) for m in ("cond", "side")}
    paper_stk = add_samples_to_k(paper, k) if paper else {}
    n_train = len(run.data)
    report.update(
        n_train=n_train,
        seeds=seeds,
        curves={m: s["curve"] for m, s in summaries.items()},
        samples_to_k=stk,
        per_seed={m: s["rows"] for m, s in summaries.items()},
        means={m: {"ams_high": s["mean_ams_high"], "distinct": s["mean_distinct"]} for m, s in summaries.items()},
        controls={
            c: {
                "ams_high": s["mean_ams_high"],
                "distinct": s["mean_distinct"],
                "samples_to_k": control_stk[c],
                "landed": s["mean_landed"],
                "curve": s["curve"],
                "rows": s["rows"],
            }
            for c, s in control_summaries.items()
        },
        landed={
            m: s["mean_landed"] for m, s in {**summaries, **control_summaries}.items() if s["mean_landed"] is not None
        },
        whole_run=whole_run_over_seeds(reports),
        beyond_pool=beyond_pool_over_seeds([r.whole_run for r in reports]),
        ceiling=read_ceiling(args.ceiling),
        paper_recipe={
            m: {
                "ams_high": s["mean_ams_high"],
                "distinct": s["mean_distinct"],
                "samples_to_k": paper_stk[m],
                "landed": s["mean_landed"],
                "curve": s["curve"],
            }
            for m, s in paper.items()
        },
        allocations={
            config.allocation: {
                "ams_high": summaries["side"]["mean_ams_high"],
                "distinct": summaries["side"]["mean_distinct"],
                "samples_to_k": stk["side"],
                "curve": summaries["side"]["curve"],
            },
            **{
                a: {
                    "ams_high": s["mean_ams_high"],
                    "distinct": s["mean_distinct"],
                    "samples_to_k": allocation_stk[a],
                    "curve": s["curve"],
                }
                for a, s in compared.items()
            },
        },
        headline=headline(summaries, stk, n_train),
        **made_by,
    )
    write_json(out / f"{name}.json", report)
    lines = table_lines(report, reports[0], made_by)
    lines.append(f"Wall time: {time.perf_counter() - started:.0f} s")
    write_text(out / f"{name}.md", "\n".join(lines) + "\n")
    plot_bars(report, out / f"{name}.png")
    control_curves = {c: s["curve"] for c, s in control_summaries.items()}
    plot_curves(
        {**report["curves"], **control_curves},
        stk,
        out / f"{name}_curve.png",
        report.get("filter"),
        report["whole_run"],
    )
    print("\n".join(lines))
    if args.sweeps:
        scales = tuple(float(s) for s in args.scales.split(","))
        rows = [point.to_json() for point in guidance_sweep(run, config, scales)]
        for row in rows:
            row["samples_to_k"] = samples_to_k(curve_of(run, row["score"], config.n_samples), stk["k"])
        write_json(out / "sweep_scale.json", {**made_by, "rows": rows})
        plot_sweep(rows, "scale", "guidance scale (lambda)", stk["k"], out / "sweep_scale.png", log_x=True)
        k_rows = []
        for k in (int(k) for k in args.ks.split(",")):
            k_config = dataclasses.replace(config, cluster=dataclasses.replace(config.cluster, k=k))
            (point,) = guidance_sweep(run, k_config, (config.sample.guidance_scale,))
            row = point.to_json()
            row["samples_to_k"] = samples_to_k(curve_of(run, row["score"], config.n_samples), stk["k"])
            k_rows.append({"k": k, **row})
        write_json(out / "sweep_k.json", {**made_by, "rows": k_rows})
        plot_sweep(k_rows, "k", "K (clusters)", stk["k"], out / "sweep_k.png")
        for name, rs, key in (("scale", rows, "scale"), ("K", k_rows, "k")):
            print(f"\n{name} sweep:")
            for r in rs:
                print(
                    f"  {key}={r[key]}: AMS high {r['ams']['high']:.1f}%, UMS high {r['ums']['high']:.1f}%, "
                    f"distinct {r['distinct']}, samples to {stk['k']} images {r['samples_to_k']}"
                )


if __name__ == "__main__":
    main()
