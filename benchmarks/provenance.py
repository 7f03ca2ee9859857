"""What every results file records about how it was made (the command, the git revision, the
machine, the date), and the rule that a benchmark never replaces committed results unless asked:
``--overwrite`` replaces them; without it, a run whose outputs are committed stops before any work
and says so (or write elsewhere with ``--out-dir``)."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def provenance() -> dict:
    """{"command", "git": {revision, uncommitted_changes}, "machine", "date"} of the running script."""
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(ROOT):
        command = "python -m " + script.with_suffix("").relative_to(ROOT).as_posix().replace("/", ".")
    else:
        command = f"python {script}"
    return {
        "command": " ".join([command, shlex.join(sys.argv[1:])]).strip(),
        "git": {
            "revision": _git("rev-parse", "HEAD") or None,
            "uncommitted_changes": bool(_git("status", "--porcelain")),
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out-dir", default=str(RESULTS), help="where results go (default benchmarks/results)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace results that are committed to git (refused without it)"
    )


def output_dir(args: argparse.Namespace, names: list[str]) -> Path:
    """``--out-dir``, checked before any work: stop if it would replace a committed file without
    ``--overwrite``."""
    out = Path(args.out_dir).resolve()
    if not args.overwrite:
        committed = [name for name in names if (out / name).exists() and _git("ls-files", str(out / name))]
        if committed:
            raise SystemExit(
                f"error: {', '.join(committed)} in {out} are committed results: pass --overwrite to replace them, "
                "or --out-dir DIR to write elsewhere."
            )
    out.mkdir(parents=True, exist_ok=True)
    return out


def start(args: argparse.Namespace, names: list[str]) -> tuple[Path, dict]:
    """A benchmark's first steps: timestamped log lines, ``--threads`` torch threads, the checked output
    folder (:func:`output_dir`) and the provenance (:func:`provenance`) of the run about to start."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return output_dir(args, names), provenance()
