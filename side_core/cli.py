"""Command line: ``python -m side_core {train,extract,compare}``."""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from side_core import distributed
from side_core.errors import SideError
from side_core.registry import Registry

log = logging.getLogger("side_core")


def add_flag(p: argparse.ArgumentParser, name: str, default, help: str, **kwargs) -> None:
    """A flag whose help ends with its default, so the two cannot disagree."""
    p.add_argument(name, default=default, help=f"{help} (default %(default)s)", **kwargs)


def add_choice(p: argparse.ArgumentParser, name: str, default: str, help: str, registry: Registry) -> None:
    """A flag naming an entry of ``registry``, whose help lists every entry's own line."""
    add_flag(p, name, default, f"{help}: {registry.help().replace('%', '%%')}", choices=registry.names())


def _subcommand(sub: argparse._SubParsersAction, name: str, add: Callable) -> argparse.ArgumentParser:
    """A subcommand whose one-line help and description are the first line and the rest of ``add``'s docstring."""
    summary, _, description = inspect.cleandoc(add.__doc__).partition("\n\n")
    return sub.add_parser(name, help=summary, description=description)


def _add_train(sub: argparse._SubParsersAction) -> None:
    """train a DDPM on an image folder or the bundled faces

    Train a small UNet2DModel DDPM (the recipe of the bundled models). Checkpoints (EMA weights as diffusers
    folders) go to OUT/checkpoints/, the final model to OUT/model/; re-running with the same OUT and
    settings resumes."""
    p = _subcommand(sub, "train", _add_train)
    p.add_argument("--data", default="default", help="'default' (the 100 bundled LFW faces) or an image folder")
    p.add_argument("--out", required=True, help="output folder (created; resumed if it holds a run)")
    p.add_argument("--n-images", type=int, default=None, help="keep only the first N training images")
    add_flag(p, "--size", 24, "image side in pixels", type=int)
    add_flag(p, "--channels", 1, "1 grayscale or 3 RGB", type=int, choices=(1, 3))
    p.add_argument("--minutes", dest="max_minutes", type=float, default=None, help="wall-clock budget in minutes")
    add_flag(p, "--max-steps", 100_000, "upper bound on optimizer steps", type=int)
    add_flag(p, "--batch-size", 32, "images per step", type=int)
    add_flag(p, "--lr", 1e-3, "AdamW learning rate", type=float, dest="learning_rate")
    add_flag(p, "--checkpoint-every", 200, "steps between checkpoints", type=int)
    add_flag(p, "--seed", 0, "seed for batches, noise and timesteps", type=int)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    from side_core.config import TrainConfig, UNetConfig
    from side_core.data import load_training_set
    from side_core.models import resolve_device
    from side_core.train import train_ddpm

    if not distributed.is_main():
        log.warning("DDPM training runs in one process (the main one): this process has nothing to do")
        return
    # the optimisation flags are named after TrainConfig's fields (their dest)
    fields = ("batch_size", "learning_rate", "max_steps", "max_minutes", "checkpoint_every", "seed")
    config = TrainConfig(
        unet=UNetConfig(sample_size=args.size, channels=args.channels), **{f: getattr(args, f) for f in fields}
    )
    device = resolve_device(args.device)
    data = load_training_set(args.data, args.channels, args.size, args.n_images)
    log.info("training on %s", data.facts())
    every = max(1, args.checkpoint_every // 4)

    def progress(p):
        if p.step % every == 0:
            log.info("step %d  loss %.4f  %.1f min", p.step, p.loss, p.elapsed_s / 60)

    folder = train_ddpm(data, args.out, config, device=device, progress=progress)
    print(folder)


def add_extraction_flags(p: argparse.ArgumentParser, report: bool = True, store: str | None = None) -> None:
    """The flags of one extraction experiment (shared by extract, compare, prepare and the benchmarks).

    ``report``: add --out; else --store, required unless ``store`` gives its default."""
    from side_core.allocation import ALLOCATIONS
    from side_core.classifier import CLASSIFIERS
    from side_core.config import LABELS, UNKEPT, ExtractionConfig
    from side_core.embed import FEATURES
    from side_core.models import bundled_models_help
    from side_core.neighbours import SIMILARITIES
    from side_core.sampling import SAMPLERS

    d = ExtractionConfig()
    c, s = d.cluster, d.sample

    add_flag(p, "--model", "default", f"{bundled_models_help()}, a diffusers model folder, or a hub id")
    add_flag(p, "--data", "default", "training images to score against: 'default' (bundled faces) or an image folder")
    p.add_argument("--n-data", type=int, default=None, help="keep the first N training images (default: all)")
    reuse = (
        "stages made here are written there; finished stages are reused from it and, unless --fresh, from the "
        "bundled store assets/store, which holds the bundled default model's stages (the log says which stage "
        "was reused from where, and which was made)"
    )
    if report:
        p.add_argument("--out", required=True, help="report folder (report.json, report.md, extractions.png)")
        p.add_argument(
            "--store", default=None, help=f"run store folder (default OUT/store, made when a stage is made): {reuse}"
        )
    else:
        p.add_argument("--store", required=store is None, default=store, help=f"run store folder: {reuse}")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="ignore the bundled store: every stage is made under the run store (a new --out or --store makes all "
        "of them anew, on this machine; stages already finished in the run store are reused, so an interrupted run "
        "resumes; report.md says where and when each timing was measured)",
    )
    add_flag(p, "--n-samples", d.n_samples, "N_G, samples per method", type=int)
    add_flag(p, "--n-syn", d.n_syn, "plain samples clustered into surrogate classes", type=int)
    add_choice(p, "--feature", c.feature, "clustering feature", FEATURES)
    add_flag(p, "--k", c.k, "K-means clusters", type=int)
    add_flag(
        p, "--keep-top", c.keep_top, "keep this fraction of the clusters, the most cohesive, as classes", type=float
    )
    p.add_argument(
        "--tau", type=float, default=c.tau, help="the paper's rule instead: keep clusters of cohesion >= TAU in [0, 1]"
    )
    add_flag(
        p,
        "--unkept",
        c.unkept,
        "samples of the clusters not kept: one background label that is never a target, or the nearest kept "
        "cluster as in the paper",
        choices=UNKEPT,
    )
    add_choice(p, "--allocation", d.allocation, "how guided samples are spread over the classes", ALLOCATIONS)
    p.add_argument(
        "--repel",
        action="store_true",
        help="push guided samples off the images the pool already repeats (its samples with a near-identical "
        "partner), so that guidance looks for images the pool has not found",
    )
    add_choice(p, "--classifier", d.classifier, "guiding classifier", CLASSIFIERS)
    add_flag(
        p,
        "--labels",
        d.labels,
        "what the classifier learns: each class's pool samples with a near-identical partner, the rest "
        "background (core), every member of each kept cluster (clusters, the paper), or each class's pool samples "
        "without such a partner, so that guidance steers away from images the pool already repeats (unfound), or "
        "each class's near misses, samples almost alike that no near-identical pair has found yet (near)",
        choices=LABELS,
    )
    recipes = ", ".join(f"{name} {entry.recipe.steps}" for name, entry in CLASSIFIERS.items())
    p.add_argument("--classifier-steps", type=int, default=None, help=f"classifier training steps (default: {recipes})")
    add_flag(p, "--guidance-scale", s.guidance_scale, "lambda, >= 0", type=float)
    p.add_argument(
        "--guidance-window",
        type=int,
        nargs=2,
        default=None,
        metavar=("T_LOW", "T_HIGH"),
        help="guide only at T_LOW <= t <= T_HIGH (default: all steps)",
    )
    add_choice(p, "--sampler", s.sampler, "sampler", SAMPLERS)
    add_flag(p, "--steps", s.num_steps, "sampler steps", type=int)
    add_flag(p, "--batch-size", s.batch_size, "samples per batch and store shard", type=int)
    add_choice(p, "--similarity", "pixels", "similarity for scoring", SIMILARITIES)
    p.add_argument("--sscd", default=None, help="SSCD TorchScript file, for --feature sscd or --similarity sscd")
    p.add_argument(
        "--bands",
        type=float,
        nargs=3,
        default=None,
        metavar=("LOW", "MID", "HIGH"),
        help="band thresholds (default: from the train-vs-train distribution)",
    )
    add_flag(p, "--seed", d.seed, "seed of the N_G samples", type=int)
    add_flag(
        p,
        "--surrogate-seed",
        d.surrogate_seed,
        "seed of the surrogate: the N_syn samples (they use SEED + 1), K-means and the classifiers",
        type=int,
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")


def _add_extract(sub: argparse._SubParsersAction) -> None:
    """run one extraction method and score it

    Generate N_G samples with one method (uncond: plain sampling; cond: guidance by a time-blind classifier;
    side: guidance by SIDE's time-dependent classifier) and score them against the training set."""
    from side_core.pipeline import METHODS

    p = _subcommand(sub, "extract", _add_extract)
    p.add_argument("--method", required=True, choices=METHODS, help="extraction method")
    add_extraction_flags(p)
    p.set_defaults(func=_run_extraction)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    """UnCond vs Cond vs SIDE at equal N_G

    Run all three methods at the same N_G, sampler and seeds, and write OUT/report.json, OUT/report.md (the
    table) and OUT/extractions.png."""
    p = _subcommand(sub, "compare", _add_compare)
    add_extraction_flags(p)
    p.set_defaults(func=_run_extraction, method=None)


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    """precompute the app's first screen (samples, clusters, maps, classifiers)

    Run the surrogate stages (plain samples, features, clusters, UMAP and PCA maps, both classifiers, scores
    of the plain samples) into a run store, so the app opens with nothing to wait for. This is how
    assets/store was made."""
    p = _subcommand(sub, "prepare", _add_prepare)
    add_extraction_flags(p, report=False)
    from side_core.pipeline import SWEEP_SCALES

    p.add_argument(
        "--sweep-scales",
        type=float,
        nargs="*",
        default=list(SWEEP_SCALES),
        metavar="LAMBDA",
        help="also run SIDE at these guidance scales at N_G (the app's sweep; default %(default)s; none: skip)",
    )
    p.set_defaults(func=_run_prepare)


def open_run(args: argparse.Namespace, store: str | Path):
    """The model, training set and run store the extraction flags name."""
    from side_core.data import load_training_set
    from side_core.metrics import Bands
    from side_core.models import BUNDLED_STORE, load_model
    from side_core.run import Run

    is_bundled = BUNDLED_STORE.resolve() == Path(store).resolve()
    if args.fresh and is_bundled:
        raise SideError(
            f"--fresh ignores the bundled store, but --store {store} is the bundled store: give another --store "
            "to make every stage anew, or leave out --fresh to add to the bundled store."
        )
    model = load_model(args.model, args.device)
    data = load_training_set(args.data, model.channels, model.size, args.n_data)
    bands = Bands.from_thresholds(*args.bands) if args.bands else None
    # Stages already in the bundled store (same model and inputs) are reused in place, unless --fresh.
    read_only = () if args.fresh or is_bundled else (BUNDLED_STORE,)
    return Run(store, model, data, args.similarity, args.sscd, bands, read_only_roots=read_only)


def extraction_config(args: argparse.Namespace):
    """The ExtractionConfig the extraction flags describe; the classifier is trained by its own recipe."""
    from dataclasses import replace

    from side_core.config import ClusterConfig, ExtractionConfig, SampleConfig, recipe

    train = recipe(args.classifier)
    if args.classifier_steps is not None:
        train = replace(train, steps=args.classifier_steps)

    return ExtractionConfig(
        n_samples=args.n_samples,
        n_syn=args.n_syn,
        cluster=ClusterConfig(
            feature=args.feature,
            k=args.k,
            keep_top=args.keep_top,
            tau=args.tau,
            unkept=args.unkept,
            seed=args.surrogate_seed,
        ),
        classifier=args.classifier,
        labels=args.labels,
        classifier_train=replace(train, seed=args.surrogate_seed),
        sample=SampleConfig(
            sampler=args.sampler,
            num_steps=args.steps,
            guidance_scale=args.guidance_scale,
            guidance_window=tuple(args.guidance_window) if args.guidance_window else None,
            batch_size=args.batch_size,
        ),
        allocation=args.allocation,
        repel=args.repel,
        seed=args.seed,
        surrogate_seed=args.surrogate_seed,
    )


def _log_sample_progress(p) -> None:
    if p.step == p.n_steps:
        log.info("  batch %d/%d sampled", p.batch + 1, p.n_batches)


def _log_classifier_progress(step: int, total: int, loss: float) -> None:
    if step % 250 == 0 or step == total:
        log.info("  classifier step %d/%d  loss %.3f", step, total, loss)


def _run_prepare(args: argparse.Namespace) -> None:
    from side_core.pipeline import guidance_sweep, prepare

    config = extraction_config(args)  # bad settings fail here, before the model loads
    run = open_run(args, args.store)
    prepare(run, config, sample_progress=_log_sample_progress, classifier_progress=_log_classifier_progress)
    if run.data is not None and args.sweep_scales:
        guidance_sweep(run, config, tuple(args.sweep_scales), sample_progress=_log_sample_progress)


def _run_extraction(args: argparse.Namespace) -> None:
    from pathlib import Path

    from side_core.inspection import best_pairs
    from side_core.pipeline import METHODS, extract
    from side_core.report_files import findings, markdown_table, write_report

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SideError(f"--out {out} is a file: give a folder for report.json, report.md and extractions.png.")
    config = extraction_config(args)  # bad settings fail here, before the model loads
    run = open_run(args, args.store or out / "store")
    methods = (args.method,) if args.method else METHODS
    hooks = {"sample_progress": _log_sample_progress, "classifier_progress": _log_classifier_progress}
    report = extract(run, config, methods, **hooks)
    if not distributed.is_main():
        return  # the main process writes the report, once
    write_report(report, out, args.command_line, best_pairs(run, report))
    print(markdown_table(report))
    for paragraph in findings(report):
        print(f"\n{paragraph}")
    print(f"report: {out / 'report.md'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m side_core",
        description="SIDE: extract memorized training images from an unconditional diffusion model.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_extract(sub)
    _add_compare(sub)
    _add_prepare(sub)
    return parser


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise SideError(f"--threads {threads}: use a whole number of at least 1 (torch's CPU threads).")
    torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command_line = "python -m side_core " + shlex.join(argv)
    try:  # under accelerate launch / torchrun: join the other processes, and take this one's GPU
        world = distributed.start(getattr(args, "device", None))
    except SideError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if world.size > 1:
        args.device = str(world.device)
    logging.basicConfig(
        level=(logging.DEBUG if args.verbose else logging.INFO) if world.is_main else logging.WARNING,
        format=f"%(asctime)s %(levelname)s {world.tag}%(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if world.size == 1 and "ACCELERATE_USE_CPU" in os.environ:
        log.info("one process: without several GPUs, `accelerate launch` needs --multi_gpu to start several")
    started = time.perf_counter()
    try:
        _set_threads(getattr(args, "threads", None))
        args.func(args)
    except SideError as err:
        print(f"error: {world.tag}{err}", file=sys.stderr)
        return 2
    finally:
        distributed.stop()
    log.info("done in %.1f s", time.perf_counter() - started)
    return 0
