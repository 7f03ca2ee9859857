"""Who may open what: the locked mode of a shared (classroom) server.

The operator, on the server's own machine, uses the app as it always worked: any model folder,
image folder or hub id. Every other visitor (a student on the classroom network) gets the locked
app: the model and data pickers offer the bundled models and the folders the operator lists, and
anything else typed in (a path outside those folders, a symlink that leads outside them, a hub id)
is refused with a message that says how the operator allows it. Every file read on a locked
visitor's behalf must lie inside what is allowed: a folder holding a link that leads out (an image,
a weights file, a subfolder) is refused as a whole. A refusal reads the same whether or not the path
exists, and the operator's configuration errors go to the server's log, not to locked visitors: a
locked visitor learns nothing about the server's files beyond what it may open. Locked visitors also
meet the caps of :mod:`app_support.limits`, per session and per address.

Operator's switches (environment variables; the README's "For teachers" shows them in use):
    SIDE_LOCKED        auto (default): locked unless the visitor is on this machine; 1: locked for
                       everyone; 0: unlocked for everyone who can reach the port
    SIDE_ALLOWED_DIRS  folders, separated by os.pathsep (':' on Linux and macOS), whose models and
                       image folders (and their direct subfolders) locked visitors may open
The model and data the server was started with (SIDE_MODEL, SIDE_DATA) are the operator's choice,
so locked visitors may open them too.

Where a visitor is. The address is the TCP peer of the browser's connection, as Streamlit's server
saw it (``st.context.ip_address``): the browser cannot choose it. Streamlit reports 127.0.0.1 and
::1 as None, the same answer as when no browser is connected at all (AppTest); the handshake's
headers, which every browser connection carries and AppTest lacks, tell the two apart, so a visitor
whose address is unknown is locked, never trusted. Headers the browser sends (X-Forwarded-For, Host,
Origin) are never read: anyone can forge them. Streamlit's web server (uvicorn) itself replaces the
peer with the X-Forwarded-For address only on connections from 127.0.0.1 or ::1 (its
FORWARDED_ALLOW_IPS default), that is from a reverse proxy on the same machine; a proxy that sets
the header makes its visitors non-local, as they are, but one that does not (or a unix socket
behind a proxy) makes every visitor look local. Behind a proxy, set SIDE_LOCKED=1.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from app_support.limits import Limits, read_limits
from side_core.data import DEFAULT_DATA, IMAGE_SUFFIXES
from side_core.errors import SideError
from side_core.models import BUNDLED_MODELS, HUB_ID

log = logging.getLogger(__name__)

MODE_VAR = "SIDE_LOCKED"
DIRS_VAR = "SIDE_ALLOWED_DIRS"
MODES = {"auto": "auto", "": "auto", "1": "locked", "true": "locked", "0": "unlocked", "false": "unlocked"}
LOOPBACK = "loopback"  # a visitor Streamlit saw on 127.0.0.1 or ::1
# Entries looked at per allowed folder when listing what the pickers offer: a huge folder stays quick.
MAX_LISTED = 200
# Entries of a model folder checked for links that lead out; a folder with more is refused (a
# diffusers model folder holds a handful of files).
MAX_MODEL_ENTRIES = 1_000
# What a locked visitor is told when the operator's settings have a problem (the details go to the log).
SETTINGS_NOTICE = (
    "This shared server's settings have a problem, so it runs on its defaults where they apply; "
    "its operator finds the details in the server's log."
)
Kind = Literal["model", "data"]


@dataclass(frozen=True)
class Policy:
    """What the operator set: the mode, the allowed folders (resolved), their own model and data,
    and the caps locked visitors meet."""

    mode: Literal["auto", "locked", "unlocked"] = "auto"
    allowed_dirs: tuple[Path, ...] = ()
    operator_model: str = "default"  # SIDE_MODEL: the operator chose it, so anyone may open it
    operator_data: str = DEFAULT_DATA  # SIDE_DATA
    limits: Limits = field(default_factory=Limits)
    problems: tuple[str, ...] = ()  # bad values, each naming the variable and the fix


def read_policy(environ: Mapping[str, str] = os.environ) -> Policy:
    """The operator's policy from the environment; a bad value falls back to the locked side (or
    the default) and leaves a message."""
    problems = []
    text = environ.get(MODE_VAR, "").strip()
    mode = MODES.get(text.lower())
    if mode is None:
        mode = "auto"
        problems.append(
            f"{MODE_VAR}={text!r} is not one of auto, 1 or 0, so it is ignored (auto: locked unless the visitor is "
            f"on this machine): set {MODE_VAR}=1 to lock every visitor, {MODE_VAR}=0 to lock none, or unset it."
        )
    allowed = []
    for entry in environ.get(DIRS_VAR, "").split(os.pathsep):
        if not entry.strip():
            continue
        folder = _resolved(entry.strip())
        if folder is None or not folder.is_dir():
            problems.append(
                f"{DIRS_VAR} names '{entry}', which is not an existing folder, so it is left out: fix the path "
                f"(folders are separated by '{os.pathsep}')."
            )
        else:
            allowed.append(folder)
    limits, limit_problems = read_limits(environ)
    return Policy(
        mode=mode,
        allowed_dirs=tuple(dict.fromkeys(allowed)),
        operator_model=environ.get("SIDE_MODEL") or "default",
        operator_data=environ.get("SIDE_DATA") or DEFAULT_DATA,
        limits=limits,
        problems=(*problems, *limit_problems),
    )


def is_loopback(address: str | None) -> bool:
    """True for the server's own machine: LOOPBACK, 127.0.0.0/8, ::1 and ::ffff:127.x.y.z. An
    unknown (None) or unparsable address is not."""
    if address == LOOPBACK:
        return True
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


@dataclass(frozen=True)
class Access:
    """What one visitor may open, and the caps they meet (``limits`` is None when unlocked)."""

    locked: bool
    reason: str  # one sentence for the sidebar and the refusals: why this visitor is (un)locked
    policy: Policy = field(default_factory=Policy)
    address: str | None = None  # LOOPBACK, an IP, or None when unknown

    @property
    def limits(self) -> Limits | None:
        return self.policy.limits if self.locked else None

    def visitor_key(self, session: str) -> str:
        """Whom the job queue's per-visitor cap and turns count this visitor as: the address (an IPv6
        address by its /64 network, which one machine may draw many addresses from), or the
        ``session`` id when the address is unknown."""
        if self.address is None:
            return f"session {session}"
        try:
            ip = ipaddress.ip_address(self.address)
        except ValueError:
            return self.address
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
        return str(ip)

    def problems(self, env_problems: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The messages about the operator's settings this visitor sees: each one, named with its
        fix, for an unlocked visitor; for a locked one, one notice that says nothing about the
        server's files (the details are logged for the operator)."""
        found = (*env_problems, *self.policy.problems)
        if not self.locked or not found:
            return found
        for problem in found:
            _log_once(problem)
        return (SETTINGS_NOTICE,)

    def shows_server_paths(self) -> bool:
        """Whether the app may show this visitor the server's own paths (the run store's folder)."""
        return not self.locked

    def named(self, kind: Kind) -> tuple[str, ...]:
        """The names a locked visitor may open without a path: bundled ones, then the operator's."""
        bundled = tuple(BUNDLED_MODELS) if kind == "model" else (DEFAULT_DATA,)
        own = self.policy.operator_model if kind == "model" else self.policy.operator_data
        return tuple(dict.fromkeys((*bundled, own)))

    def allow(self, spec: str, kind: Kind) -> str:
        """``spec`` if this visitor may open it, as the path that was checked (resolved, so a
        symlink swapped afterwards cannot redirect the load); else a SideError saying how the
        operator allows it. A spec holding a control character (a NUL byte) is refused for everyone."""
        spec = spec.strip()
        what = "model" if kind == "model" else "training set"
        if any(ord(char) < 32 or ord(char) == 127 for char in spec):
            raise SideError(
                f"The {what} {spec!r} holds a control character (such as a NUL byte), which no file name, "
                f"bundled name or hub id contains: type the {what} again, or pick one from the list."
            )
        if not self.locked or spec in self.named(kind):
            return spec
        resolved = _resolved(spec)
        if resolved is not None and self._inside(resolved):
            leak = self._leak(resolved, kind)
            if leak is None:
                return str(resolved)
            raise SideError(
                f"'{spec}' holds '{leak}', a link that leads outside the folders this shared server offers, and "
                f"the server reads nothing outside them for its visitors. {self.reason}. Choose another {what}; "
                f"the operator can replace the link with a copy of what it points to."
            )
        # Chosen by the spec's form alone, never by whether the path exists: the words reveal nothing about the disk.
        if kind == "model" and HUB_ID.match(spec) and not spec.startswith((".", "/")):
            problem = f"'{spec}' is a hub id, and this shared server does not download models for its visitors"
            fix = f"the operator can download it into a folder listed in {DIRS_VAR}, or start the server with it"
        else:
            problem = f"'{spec}' is not a {what} this shared server offers"
            fix = f"the operator allows more by listing folders in {DIRS_VAR}"
        offered = ", ".join(f"'{name}'" for name in self.named(kind))
        folders = ", ".join(str(folder) for folder in self.policy.allowed_dirs) or "none listed"
        raise SideError(
            f"{problem}. {self.reason}. Choose {offered} or a folder inside the allowed folders ({folders}); "
            f"{fix}, or unlocks the app for everyone with {MODE_VAR}=0 (see the README's 'For teachers')."
        )

    def _inside(self, resolved: Path) -> bool:
        return any(resolved.is_relative_to(folder) for folder in self.policy.allowed_dirs)

    def _leak(self, folder: Path, kind: Kind) -> str | None:
        """The first entry of ``folder`` the loader could read whose real path lies outside the allowed
        folders (relative to ``folder``), or None. A training set is read from the folder's own files;
        a model from its whole tree (config, weights, scheduler and their subfolders)."""
        if not folder.is_dir():
            return None  # a file: the loader refuses it with its own message
        if kind == "data":
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_symlink() and entry.name.lower().endswith(IMAGE_SUFFIXES):
                        target = _resolved(entry.path)
                        if target is None or not self._inside(target):
                            return entry.name
            return None
        seen, stack, count = {folder}, [(folder, Path())], 0
        while stack:
            where, shown = stack.pop()
            with os.scandir(where) as entries:
                for entry in entries:
                    count += 1
                    if count > MAX_MODEL_ENTRIES:
                        raise SideError(
                            f"'{folder}' holds more than {MAX_MODEL_ENTRIES:,} files and folders, too many to check "
                            f"that each lies inside the folders this shared server offers: choose the model's own "
                            f"folder (the one with config.json or model_index.json)."
                        )
                    target = _resolved(entry.path) if entry.is_symlink() else Path(entry.path)
                    if target is None or not self._inside(target):
                        return str(shown / entry.name)
                    if target.is_dir() and target not in seen:
                        seen.add(target)
                        stack.append((target, shown / entry.name))
        return None

    def choices(self, kind: Kind) -> list[str]:
        """What the picker offers a locked visitor: the named ones, then each allowed folder and its
        direct subfolders that hold a model (or images), in name order."""
        found = list(self.named(kind))
        looks_right = _is_model_folder if kind == "model" else _is_image_folder
        for folder in self.policy.allowed_dirs:
            candidates = [folder, *sorted(_subfolders(folder))]
            found += [str(path) for path in candidates if looks_right(path)]
        return list(dict.fromkeys(found))


def decide(policy: Policy, address: str | None) -> Access:
    """Locked or not, for a visitor at ``address`` (LOOPBACK, an IP, or None when unknown)."""
    if policy.mode == "unlocked":
        return Access(False, f"Unlocked for every visitor ({MODE_VAR}=0)", policy, address)
    if policy.mode == "locked":
        return Access(True, f"Locked for every visitor ({MODE_VAR}=1)", policy, address)
    if address is None:
        return Access(True, "Locked: the server cannot tell where you connect from", policy, address)
    if is_loopback(address):
        return Access(False, "Unlocked: you are on the server's own machine", policy, address)
    return Access(True, f"Locked: you connect from {address}, not from the server's own machine", policy, address)


def visitor_address() -> str | None:
    """This session's browser address: an IP, LOOPBACK, or None when unknown (module docstring)."""
    import streamlit as st

    if str(st.get_option("server.address") or "").startswith("unix://"):
        return None  # a unix socket has no peer address: a proxy in front would make everyone local
    address = st.context.ip_address
    if isinstance(address, str) and address:
        return address
    if address is None and len(st.context.headers) > 0:  # connected, and Streamlit hid 127.0.0.1 / ::1
        return LOOPBACK
    return None


def current() -> Access:
    """The one entry point for the app: this visitor's access under the operator's policy."""
    return decide(read_policy(), visitor_address())


def _resolved(spec: str) -> Path | None:
    """The real path (symlinks and '..' followed), or None if it does not exist, loops or is not a
    valid path (a NUL byte, a name the file system cannot encode)."""
    try:
        return Path(spec).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop, before Python 3.13
        return None


_logged: set[str] = set()


def _log_once(problem: str) -> None:
    """Log an operator's configuration problem once per server process (the app reruns often)."""
    if problem not in _logged:
        _logged.add(problem)
        log.warning("%s", problem)


def _subfolders(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        picked = []
        for i, entry in enumerate(entries):
            if i >= MAX_LISTED:
                break
            # symlinks are not offered (one may lead outside); typed in, allow() checks where they lead
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                picked.append(Path(entry.path))
        return picked


def _is_model_folder(folder: Path) -> bool:
    """The layouts load_model reads: a saved pipeline, a flat folder, a bare UNet folder."""
    return (folder / "model_index.json").is_file() or (folder / "config.json").is_file()


def _is_image_folder(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        for i, entry in enumerate(entries):
            if i >= MAX_LISTED:
                return False
            if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                return True
    return False
