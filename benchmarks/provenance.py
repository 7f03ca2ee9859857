"""What every results file records about how it was made: the command, the git revision (and
whether the tree had uncommitted changes), the machine and the date."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def git_revision() -> dict:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    return {"revision": git("rev-parse", "HEAD") or None, "uncommitted_changes": bool(git("status", "--porcelain"))}


def provenance() -> dict:
    """{"command", "git", "machine", "date"} for the running script."""
    return {
        "command": "python -m "
        + Path(sys.argv[0]).with_suffix("").relative_to(ROOT).as_posix().replace("/", ".")
        + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""),
        "git": git_revision(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
