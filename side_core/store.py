"""Run folders: every stage's artefacts live in a folder keyed by the stage's inputs.

A stage is finished when its folder holds ``done.json``, which records the size and sha256 of every
file the stage wrote (its manifest); a finished stage is verified against it whenever it is reused,
so a damaged or overwritten file is found, named and recomputed instead of being read. Every file is
written to a temporary name and renamed into place, so an interrupted run never leaves a
half-written artefact behind, and a re-run reuses whatever finished.

Several processes may share one store. A stage that one process computes is made under the stage's
lock (:meth:`Stage.lock`), so the others wait and then reuse it instead of computing it again.
Generation writes one shard per batch, each with its own seed and its own checksum record, and
processes claim shards (:meth:`Stage.claim_shard`), so they split a generation between them and an
interrupted generation resumes at the missing shards. Locks are POSIX ``flock``: they are released
when a process dies, and work on local and most network file systems.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from side_core.errors import SideError

DONE = "done.json"
INPUTS = "inputs.json"
LOCK_SUFFIX = ".lock"
# Writes the disk refuses, in words a user can act on.
REFUSED = {
    errno.ENOSPC: "the disk holding it is full",
    errno.EDQUOT: "the disk quota there is used up",
    errno.EROFS: "its file system is read-only, so it cannot be written",
    errno.EACCES: "this process may not write there, so it cannot be written",
    errno.EPERM: "this process may not write there, so it cannot be written",
}


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn a write the disk refuses (full, read-only, not permitted) into a SideError naming the path
    and the fix, instead of a traceback. Nothing half-written is left under a final name (atomic_path),
    so the stages that finished are kept and the next run resumes from them."""
    try:
        yield
    except OSError as err:
        why = REFUSED.get(err.errno)
        if why is None:
            raise
        raise SideError(
            f"Cannot write {path}: {why} ({err.strerror}). Free space there or make it writable, or write "
            "elsewhere (the CLI's --store and --out, the app's SIDE_RUNS); the stages that finished are kept "
            "and the next run resumes from them."
        ) from err


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds. A
    write the disk refuses is a SideError (see _writing)."""
    path = Path(path)
    with _writing(path):
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
    """Strict JSON: NaN and infinity are refused (they are not JSON), as are unknown types."""
    try:
        text = json.dumps(obj, indent=2, default=_json_default, allow_nan=False)
    except ValueError as err:
        raise SideError(f"Refusing to write a non-finite number to {path} ({err}): JSON has none.") from err
    write_text(path, text + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SideError(f"{path} is not valid JSON ({err}): delete it and run the command that made it again.") from err


def write_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save

    # Serialized in memory and written by Python, so that a refused write is an OSError with its errno
    # (safetensors' own file writer reports a full disk as a SafetensorError without one). Same bytes.
    blob = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise SideError(
            f"Cannot read {path} ({type(err).__name__}: {err}): the file is damaged; delete it and run the "
            "command that made it again."
        ) from err


def finite_or_none(x: float) -> float | None:
    """A float for JSON: NaN and infinity (undefined, e.g. accuracy on no samples) become null."""
    return float(x) if math.isfinite(x) else None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise SideError(f"Cannot write a {type(obj).__name__} to JSON: convert it to numbers, strings or lists first.")


def stage_key(inputs: dict[str, Any]) -> str:
    """A short stable hash of a stage's inputs (JSON-able), used as its folder name."""
    blob = json.dumps(inputs, sort_keys=True, default=_json_default)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def file_record(path: str | os.PathLike) -> dict[str, Any]:
    """{"size", "sha256", "mtime_ns"} of a file: what a manifest records and verification compares."""
    h = hashlib.sha256()
    mtime_ns = os.stat(path).st_mtime_ns
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"size": os.stat(path).st_size, "sha256": h.hexdigest(), "mtime_ns": mtime_ns}


def file_problem(path: Path, record: dict[str, Any]) -> str | None:
    """Why ``path`` does not match its record ("missing", "size ...", "checksum differs"), or None.

    A file whose size and modification time are the recorded ones is trusted without reading it
    (any write changes the time); otherwise its checksum decides, so copies of a store (new times)
    verify by content."""
    if not path.is_file():
        return "missing"
    stat = path.stat()
    if stat.st_size != record["size"]:
        return f"{stat.st_size} bytes instead of {record['size']}"
    if stat.st_mtime_ns == record.get("mtime_ns"):
        return None
    if file_record(path)["sha256"] != record["sha256"]:
        return "checksum differs"
    return None


def _stat_signature(folder: Path, names: list[str]) -> tuple | None:
    """(name, size, mtime_ns) of each file, or None if one is missing: what changes with any write."""
    signature = []
    for name in names:
        try:
            stat = (folder / name).stat()
        except FileNotFoundError:
            return None
        signature.append((name, stat.st_size, stat.st_mtime_ns))
    return tuple(signature)


@contextlib.contextmanager
def _flock(path: Path, blocking: bool) -> Iterator[bool]:
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class Stage:
    """One stage's folder: ``<root>/<name>-<key>/`` with ``inputs.json`` and, once finished,
    ``done.json`` (its summary plus the manifest of its files)."""

    def __init__(self, path: str | os.PathLike, inputs: dict[str, Any]):
        self.path = Path(path)
        self.inputs = inputs

    @classmethod
    def keyed(cls, root: str | os.PathLike, name: str, inputs: dict[str, Any]) -> Stage:
        """The stage of this name for these inputs: its folder is named by their hash."""
        return cls(Path(root) / f"{name}-{stage_key(inputs)}", inputs)

    @classmethod
    def open(cls, path: str | os.PathLike) -> Stage:
        """Reopen an existing stage folder (e.g. one named in a report)."""
        return cls(path, read_json(Path(path) / INPUTS))

    @property
    def done(self) -> bool:
        return (self.path / DONE).exists()

    def begin(self) -> None:
        with _writing(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / INPUTS).exists():
            write_json(self.path / INPUTS, self.inputs)

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        """Mark the stage finished, recording the size and checksum of every file it holds. Temporary
        files that a killed writer left behind (never read, in no manifest) are removed: every file
        of the stage is in place by now."""
        for leftover in [*self.path.glob(".*.tmp"), *self.path.glob("shards/.*.tmp")]:
            leftover.unlink(missing_ok=True)
        manifest = {name: file_record(self.path / name) for name in self._files()}
        write_json(self.path / DONE, {**(summary or {}), "manifest": manifest})

    def summary(self) -> dict[str, Any]:
        summary = read_json(self.path / DONE)
        summary.pop("manifest", None)
        return summary

    def damage(self, intact: dict[Path, tuple] | None = None) -> dict[str, str]:
        """Files of a finished stage that no longer match its manifest: {relative path: why}.

        A stage without a manifest (made before version 0.1.0) cannot be verified and counts as
        damaged. ``intact`` remembers the stages found intact, by the size and time of their files:
        asking again about an unchanged stage then costs a stat per file instead of a checksum (a
        copied store's files have new times, so without it every look-up would read them all)."""
        try:
            manifest = read_json(self.path / DONE).get("manifest")
        except SideError:
            return {DONE: "is not valid JSON"}
        if manifest is None:
            return {DONE: "lists no checksums of the stage's files (a store made before version 0.1.0)"}
        seen = _stat_signature(self.path, [DONE, *manifest])
        if intact is not None and seen is not None and intact.get(self.path) == seen:
            return {}
        problems = {name: file_problem(self.path / name, record) for name, record in manifest.items()}
        damaged = {name: why for name, why in problems.items() if why}
        if intact is not None and seen is not None and not damaged:
            intact[self.path] = seen
        return damaged

    def reopen(self, damaged: dict[str, str]) -> None:
        """Undo ``finish`` and delete the damaged files, so that the stage is made again (for a
        generation: only its damaged shards)."""
        with _writing(self.path):
            (self.path / DONE).unlink(missing_ok=True)
            for name in damaged:
                (self.path / name).unlink(missing_ok=True)

    def file(self, name: str) -> Path:
        return self.path / name

    def lock(self) -> contextlib.AbstractContextManager[bool]:
        """Hold the stage's exclusive lock (blocking) while making it: other processes wait."""
        return _flock(self.path / LOCK_SUFFIX, blocking=True)

    # -- shards of a generation ------------------------------------------------------------------
    def shard(self, index: int) -> Path:
        return self.path / "shards" / f"{index:05d}.safetensors"

    def _shard_record(self, index: int) -> Path:
        return self.path / "shards" / f"{index:05d}.json"

    def claim_shard(self, index: int) -> contextlib.AbstractContextManager[bool]:
        """Yield True if this process now owns shard ``index`` (until the block ends), False if
        another process is making it."""
        return _flock(self.path / "shards" / f"{index:05d}{LOCK_SUFFIX}", blocking=False)

    def write_shard(self, index: int, tensors: dict[str, torch.Tensor]) -> None:
        """Write a shard, then its checksum record: a shard without a matching record is not there."""
        write_tensors(self.shard(index), tensors)
        write_json(self._shard_record(index), file_record(self.shard(index)))

    def shard_problem(self, index: int) -> str | None:
        """None if shard ``index`` is complete and matches its record; else why not."""
        if not self.shard(index).exists():
            return "missing"
        if not self._shard_record(index).exists():
            return "has no checksum record"
        try:
            record = read_json(self._shard_record(index))
        except SideError:
            return "has a damaged checksum record"
        return file_problem(self.shard(index), record)

    def shard_ok(self, index: int) -> bool:
        return self.shard_problem(index) is None

    def _files(self) -> list[str]:
        """Relative paths of the artefacts (not the summary, temporary files or locks)."""
        names = []
        for p in sorted(self.path.rglob("*")):
            if p.is_file() and p.name != DONE and not p.name.startswith(".") and not p.name.endswith(LOCK_SUFFIX):
                names.append(p.relative_to(self.path).as_posix())
        return names


def write_array(path: str | os.PathLike, array: np.ndarray) -> None:
    buffer = io.BytesIO()  # in memory, as write_tensors: numpy reports a short write without an errno
    np.save(buffer, np.asarray(array), allow_pickle=False)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def read_array(path: str | os.PathLike) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise SideError(
            f"Cannot read {path} ({type(err).__name__}: {err}): the file is damaged; delete it and run the "
            "command that made it again."
        ) from err


def file_fingerprint(path: str | os.PathLike) -> str:
    """sha256 (first 16 hex digits) of a file's bytes: a model's identity in stage keys."""
    return file_record(path)["sha256"][:16]
