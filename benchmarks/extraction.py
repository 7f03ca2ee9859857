"""UnCond vs Cond vs SIDE on one model at equal N_G, with the cost-of-extraction curve and sweeps.

    python -m benchmarks.extraction --n-samples 512                 # the table and curves
    python -m benchmarks.extraction --n-samples 512 --sweeps        # plus guidance-scale and K sweeps

All methods share the sampler, steps and seeds (so sample i starts from the same noise in every
method). The table is repeated at --repeat-seeds (other noise, same surrogate classes and
classifiers), because one seed's samples-to-K moves by tens of samples. Writes to
benchmarks/results/: extraction.json (the engine's report shape plus
``samples_to_k`` and the curves), extraction.md (the table), extraction.png (bars per method and
band), extraction_curve.png (distinct extractions vs N_G), and with --sweeps sweep_scale.{json,png}
and sweep_k.{json,png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import torch

from benchmarks.provenance import add_output_flags, output_dir, provenance
from side_core.cli import add_extraction_flags, extraction_config, open_run
from side_core.config import ExtractionConfig
from side_core.metrics import BAND_NAMES, distinct_curve, samples_to_k
from side_core.pipeline import METHODS, Run, build_surrogate, extract, guidance_sweep
from side_core.report import markdown_table, ratios
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
        "--repeat-seeds",
        default="2,3",
        help="extra generation seeds for the table ('' for none; seed + 1 is the synthetic set's)",
    )
    add_output_flags(p)
    return p.parse_args()


def curve_of(run: Run, score: str, n: int) -> list[int]:
    """Distinct high-band extractions among the first 1..n samples of a scored generation."""
    return distinct_curve(run.first_hit(run.find(score), "high"), n).tolist()


def cost_of_extraction(run: Run, report: dict) -> tuple[dict, dict[str, list[int]]]:
    """Distinct high-band extractions vs N_G per method, and the N_G each needs to reach K, where K
    is half of what the best method reaches with the whole budget."""
    curves = {m: curve_of(run, row["score"], row["n_generated"]) for m, row in report["methods"].items()}
    k = max(1, max(curve[-1] for curve in curves.values()) // 2)
    return {"k": k, **{m: samples_to_k(c, k) for m, c in curves.items()}}, curves


def repeat_at_seeds(run: Run, config: ExtractionConfig, seeds: list[int], k: int) -> dict:
    """Each method at other generation seeds with the same surrogate: per seed AMS high, distinct
    faces and samples to K; then the means over all seeds given (None where K was never reached)."""
    surrogate = build_surrogate(run, config, ("cond", "side"))
    out: dict = {"k": k, "seeds": seeds, "methods": {}}
    for method in METHODS:
        target = surrogate.target(method) if method != "uncond" else None
        rows = []
        for seed in seeds:
            log.info("%s at seed %d", method, seed)
            score = run.score(run.generate(config.n_samples, seed, config.sample, target))
            summary = score.summary()
            curve = curve_of(run, score.path.name, config.n_samples)
            rows.append(
                {
                    "seed": seed,
                    "ams_high": summary["ams"]["high"],
                    "distinct": len(summary["extracted"]),
                    "samples_to_k": samples_to_k(curve, k),
                }
            )
        reached = [r["samples_to_k"] for r in rows if r["samples_to_k"] is not None]
        out["methods"][method] = {
            "rows": rows,
            "mean_ams_high": round(sum(r["ams_high"] for r in rows) / len(rows), 2),
            "mean_distinct": round(sum(r["distinct"] for r in rows) / len(rows), 1),
            "mean_samples_to_k": round(sum(reached) / len(reached), 1) if len(reached) == len(rows) else None,
        }
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


def plot_curves(curves: dict[str, list[int]], stk: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, label=method)
    ax.axhline(stk["k"], color="grey", lw=0.8, ls="--", label=f"K = {stk['k']}")
    ax.set_xlabel("N_G (samples drawn, in order)")
    ax.set_ylabel("distinct training images extracted (high band)")
    ax.legend()
    save(fig, path)


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
    cost.plot(x, [r["samples_to_k"] for r in rows], "k^:", label=f"samples to extract {k} faces")
    cost.set_ylabel(f"samples to extract K = {k} faces")
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


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)
    outputs = ["extraction.json", "extraction.md", "extraction.png", "extraction_curve.png"]
    if args.sweeps:
        outputs += ["sweep_scale.json", "sweep_scale.png", "sweep_k.json", "sweep_k.png"]
    out = output_dir(args, outputs)
    made_by = provenance()
    run = open_run(args, args.store)  # reuses the bundled stages where they match
    config = extraction_config(args)
    started = time.perf_counter()
    report = extract(run, config, METHODS)
    stk, curves = cost_of_extraction(run, report)
    report.update(samples_to_k=stk, ratios=ratios(report), curves=curves, **made_by)
    seeds = [int(s) for s in args.repeat_seeds.split(",") if s.strip()]
    if seeds:
        report["repeats"] = repeat_at_seeds(run, config, [config.seed, *seeds], stk["k"])
    write_json(out / "extraction.json", report)
    table = markdown_table(report)
    lines = [
        f"Command: `{made_by['command']}` (git {made_by['git']['revision']})",
        "",
        table,
        "",
        "Ratios (SIDE over baseline): " + ", ".join(f"{k} = {v}" for k, v in report["ratios"].items()),
        "",
        f"Samples needed to extract K = {stk['k']} distinct faces: "
        + ", ".join(f"{m} {stk[m] if stk[m] is not None else 'never'}" for m in METHODS),
    ]
    if seeds:
        lines += ["", f"Means over seeds {report['repeats']['seeds']} (same surrogate):", ""]
        lines += ["| method | AMS high | distinct (high) | samples to K |", "|---|---|---|---|"]
        for m, r in report["repeats"]["methods"].items():
            lines.append(f"| {m} | {r['mean_ams_high']} | {r['mean_distinct']} | {r['mean_samples_to_k'] or 'never'} |")
    lines.append(f"Wall time: {time.perf_counter() - started:.0f} s")
    write_text(out / "extraction.md", "\n".join(lines) + "\n")
    plot_bars(report, out / "extraction.png")
    plot_curves(curves, stk, out / "extraction_curve.png")
    print("\n".join(lines))

    if args.sweeps:
        scales = tuple(float(s) for s in args.scales.split(","))
        rows = guidance_sweep(run, config, scales)
        for row in rows:
            row["samples_to_k"] = samples_to_k(curve_of(run, row["score"], config.n_samples), stk["k"])
        write_json(out / "sweep_scale.json", {**made_by, "rows": rows})
        plot_sweep(rows, "scale", "guidance scale (lambda)", stk["k"], out / "sweep_scale.png", log_x=True)
        k_rows = []
        for k in (int(k) for k in args.ks.split(",")):
            k_config = dataclasses.replace(config, cluster=dataclasses.replace(config.cluster, k=k))
            (row,) = guidance_sweep(run, k_config, (config.sample.guidance_scale,))
            row["samples_to_k"] = samples_to_k(curve_of(run, row["score"], config.n_samples), stk["k"])
            k_rows.append({"k": k, **row})
        write_json(out / "sweep_k.json", {**made_by, "rows": k_rows})
        plot_sweep(k_rows, "k", "K (clusters)", stk["k"], out / "sweep_k.png")
        for name, rs, key in (("scale", rows, "scale"), ("K", k_rows, "k")):
            print(f"\n{name} sweep:")
            for r in rs:
                print(
                    f"  {key}={r[key]}: AMS high {r['ams']['high']:.1f}%, UMS high {r['ums']['high']:.1f}%, "
                    f"distinct {r['distinct']}, samples to {stk['k']} faces {r['samples_to_k']}"
                )


if __name__ == "__main__":
    main()
