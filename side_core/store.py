"""Run folders: every stage's artefacts live in a folder keyed by the stage's inputs.

A stage is finished when its folder holds ``done.json``; every file is written to a temporary name
and renamed into place, so an interrupted run never leaves a half-written artefact behind, and a
re-run reuses whatever finished. Generation writes one shard per batch, each with its own seed, so
several processes can fill one run and an interrupted generation resumes at the first missing shard.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def stage_key(inputs: dict[str, Any]) -> str:
    """A short stable hash of a stage's inputs (JSON-able), used as its folder name."""
    blob = json.dumps(inputs, sort_keys=True, default=_json_default)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class Stage:
    """One stage's folder: ``<root>/<name>-<key>/`` with ``inputs.json`` and, once finished,
    ``done.json``."""

    def __init__(self, root: str | os.PathLike, name: str, inputs: dict[str, Any]):
        self.inputs = inputs
        self.path = Path(root) / f"{name}-{stage_key(inputs)}"

    @classmethod
    def open(cls, path: str | os.PathLike) -> Stage:
        """Reopen an existing stage folder (e.g. one named in a report)."""
        path = Path(path)
        stage = cls.__new__(cls)
        stage.inputs, stage.path = read_json(path / "inputs.json"), path
        return stage

    @property
    def done(self) -> bool:
        return (self.path / "done.json").exists()

    def begin(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / "inputs.json").exists():
            write_json(self.path / "inputs.json", self.inputs)

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        write_json(self.path / "done.json", summary or {})

    def summary(self) -> dict[str, Any]:
        return read_json(self.path / "done.json")

    def file(self, name: str) -> Path:
        return self.path / name

    def shard(self, index: int) -> Path:
        return self.path / "shards" / f"{index:05d}.safetensors"


def write_array(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)


def read_array(path: str | os.PathLike) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def file_fingerprint(path: str | os.PathLike) -> str:
    """sha256 (first 16 hex digits) of a file's bytes: a model's identity in stage keys."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
