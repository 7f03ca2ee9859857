"""How SIDE's lead depends on how much the model memorizes: checkpoints of one training run, from
rarely to often copying.

    python -m side_core train --out runs/faces100-regime --max-steps 2200 --threads 1   # ~15 min
    python -m benchmarks.regime --run runs/faces100-regime --data default

Every checkpoint in RUN/checkpoints is screened with --n-screen plain samples (its plain copy rate:
AMS high); for each --targets rate the closest checkpoint is chosen, and UnCond and SIDE are run on
it with every extraction default (the engine's ``extract``) at --n-samples over --seeds. Writes
regime.json (screen and table), regime.md and regime.png (plain copy rate against SIDE/UnCond in AMS
high, distinct and samples-to-K) to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

from benchmarks.extraction import add_samples_to_k, over_seeds, save, summary_over_seeds
from benchmarks.provenance import add_output_flags, start
from side_core.config import ExtractionConfig, SampleConfig
from side_core.data import load_training_set
from side_core.kinds.generation import Generation
from side_core.kinds.scoring import Score
from side_core.metrics import ratio
from side_core.models import BUNDLED_STORE, load_model
from side_core.run import Run
from side_core.store import write_json, write_text

log = logging.getLogger("regime")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a `side_core train` output folder with checkpoints/")
    p.add_argument("--data", default="default", help="its training images ('default': the bundled faces)")
    p.add_argument("--store", default="runs/regime/store", help="run store (stages are keyed by model)")
    p.add_argument("--targets", default="5,15,30,45", help="plain copy rates (percent) to pick checkpoints at")
    p.add_argument(
        "--also",
        nargs="*",
        default=[],
        help="other model folders to screen and always include (e.g. a more memorized model of the same recipe)",
    )
    p.add_argument("--n-screen", type=int, default=256, help="plain samples to measure each checkpoint's copy rate")
    p.add_argument("--n-samples", type=int, default=256, help="N_G per method on the chosen checkpoints")
    p.add_argument("--seeds", default="0", help="generation seeds on the chosen checkpoints")
    p.add_argument("--reuse", nargs="*", default=[], help="other run stores whose finished stages are reused")
    p.add_argument("--threads", type=int, default=None)
    add_output_flags(p)
    return p.parse_args()


def checkpoints(run: Path) -> list[Path]:
    found = sorted((run / "checkpoints").glob("step-*"))
    if not found:
        raise SystemExit(f"error: no checkpoints in {run / 'checkpoints'}: train with --checkpoint-every.")
    return found


def screen(store: str, folder: Path, data_spec: str, n: int) -> tuple[Run, float]:
    """The checkpoint's run and its plain copy rate (AMS high, percent) over ``n`` samples."""
    model = load_model(folder, "cpu")
    data = load_training_set(data_spec, model.channels, model.size)
    run = Run(store, model, data)
    rate = Score.make(run, Generation.make(run, n, 0, SampleConfig())).summary()["ams"]["high"]
    return run, rate


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = [r["plain_copy_rate"] for r in rows]
    for key, label, marker in (
        ("ams_high", "AMS high", "o-"),
        ("distinct", "distinct faces at N_G", "s-"),
        ("samples_to_k", "samples to K (UnCond / SIDE)", "^-"),
    ):
        ax.plot(x, [r["side_over_uncond"][key] or 0 for r in rows], marker, label=label)
    ax.axhline(1, color="grey", lw=0.8, ls="--")
    for r in rows:
        label = f"step {r['step']}" if r["step"] is not None else Path(r["folder"]).name
        ax.annotate(label, (r["plain_copy_rate"], r["side_over_uncond"]["ams_high"] or 0), fontsize=7)
    ax.set_xlabel("plain copy rate of the checkpoint (% of plain samples in the high band)")
    ax.set_ylabel("SIDE / UnCond")
    ax.legend()
    save(fig, path)


def main() -> None:
    args = parse_args()
    out, made_by = start(args, ["regime.json", "regime.md", "regime.png"])
    seeds = [int(s) for s in args.seeds.split(",")]
    config = ExtractionConfig(n_samples=args.n_samples, seed=seeds[0])
    started = time.perf_counter()
    screened = []
    for folder in checkpoints(Path(args.run)):
        run, rate = screen(args.store, folder, args.data, args.n_screen)
        log.info("%s: plain copy rate %.1f%%", folder.name, rate)
        screened.append({"step": int(folder.name.split("-")[1]), "folder": str(folder), "plain_copy_rate": rate})
    chosen: list[dict] = []
    for target in (float(t) for t in args.targets.split(",")):
        free = [s for s in screened if s not in chosen]
        chosen.append(min(free, key=lambda s: (abs(s["plain_copy_rate"] - target), s["step"])))
    for folder in args.also:
        run, rate = screen(args.store, Path(folder), args.data, args.n_screen)
        log.info("%s: plain copy rate %.1f%%", folder, rate)
        chosen.append({"step": None, "folder": str(folder), "plain_copy_rate": rate})
    rows = []
    for pick in sorted(chosen, key=lambda s: -s["plain_copy_rate"]):  # the bundled default's last: `prepare` may run
        model = load_model(pick["folder"], "cpu")
        data = load_training_set(args.data, model.channels, model.size)
        # a checkpoint that is a bundled model reuses the bundled store's stages (same weights, same key)
        run = Run(args.store, model, data, read_only_roots=(BUNDLED_STORE, *args.reuse))
        reports = over_seeds(run, dataclasses.replace(config), seeds, ("uncond", "side"))
        summaries = {m: summary_over_seeds(run, reports, m) for m in ("uncond", "side")}
        k = max(1, int(max(s["curve"][-1] for s in summaries.values())) // 2)
        stk = add_samples_to_k(summaries, k)
        u, s = summaries["uncond"], summaries["side"]
        rows.append(
            {
                **pick,
                "k": k,
                "uncond": {
                    "ams_high": u["mean_ams_high"],
                    "distinct": u["mean_distinct"],
                    "samples_to_k": stk["uncond"],
                },
                "side": {"ams_high": s["mean_ams_high"], "distinct": s["mean_distinct"], "samples_to_k": stk["side"]},
                "side_over_uncond": {
                    "ams_high": ratio(s["mean_ams_high"], u["mean_ams_high"]),
                    "distinct": ratio(s["mean_distinct"], u["mean_distinct"]),
                    "samples_to_k": ratio(stk["uncond"], stk["side"]),
                },
            }
        )
        log.info("%s: %s", pick["folder"], rows[-1]["side_over_uncond"])
    rows.sort(key=lambda r: r["plain_copy_rate"])
    write_json(
        out / "regime.json",
        {**made_by, "config": config.to_dict(), "seeds": seeds, "screen": screened, "rows": rows},
    )
    lines = [
        f"Command: `{made_by['command']}` (git {made_by['git']['revision']}, sampler {config.sample.sampler})",
        "",
        "| model | plain copy rate | UnCond AMS high | SIDE AMS high | UnCond distinct | SIDE distinct | K | "
        "UnCond samples to K | SIDE samples to K | SIDE/UnCond AMS | distinct | samples to K |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        u, s, q = r["uncond"], r["side"], r["side_over_uncond"]
        lines.append(
            f"| {r['step'] if r['step'] is not None else r['folder']} | {r['plain_copy_rate']:.1f} | "
            f"{u['ams_high']} | {s['ams_high']} | {u['distinct']} | "
            f"{s['distinct']} | {r['k']} | {u['samples_to_k']} | {s['samples_to_k']} | {q['ams_high']} | "
            f"{q['distinct']} | {q['samples_to_k']} |"
        )
    lines.append(f"\nWall time: {time.perf_counter() - started:.0f} s")
    write_text(out / "regime.md", "\n".join(lines) + "\n")
    plot(rows, out / "regime.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
