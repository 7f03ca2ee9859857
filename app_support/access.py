"""Who may open what: the locked mode of a shared (classroom) server.

The operator, on the server's own machine, uses the app as it always worked: any model folder,
image folder or hub id. Every other visitor (a student on the classroom network) gets the locked
app: the model and data pickers offer the bundled models and the folders the operator lists, and
anything else typed in (a path outside those folders, a symlink that leads outside them, a hub id)
is refused with a message that says how the operator allows it. Locked visitors also meet the caps
of :mod:`app_support.limits`.

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
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from app_support.limits import Limits, read_limits
from side_core.data import DEFAULT_DATA, IMAGE_SUFFIXES
from side_core.errors import SideError
from side_core.models import BUNDLED_MODELS, HUB_ID

MODE_VAR = "SIDE_LOCKED"
DIRS_VAR = "SIDE_ALLOWED_DIRS"
MODES = {"auto": "auto", "": "auto", "1": "locked", "true": "locked", "0": "unlocked", "false": "unlocked"}
LOOPBACK = "loopback"  # a visitor Streamlit saw on 127.0.0.1 or ::1
# Entries looked at per allowed folder when listing what the pickers offer: a huge folder stays quick.
MAX_LISTED = 200
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

    @property
    def limits(self) -> Limits | None:
        return self.policy.limits if self.locked else None

    def named(self, kind: Kind) -> tuple[str, ...]:
        """The names a locked visitor may open without a path: bundled ones, then the operator's."""
        bundled = tuple(BUNDLED_MODELS) if kind == "model" else (DEFAULT_DATA,)
        own = self.policy.operator_model if kind == "model" else self.policy.operator_data
        return tuple(dict.fromkeys((*bundled, own)))

    def allow(self, spec: str, kind: Kind) -> str:
        """``spec`` if this visitor may open it, as the path that was checked (resolved, so a
        symlink swapped afterwards cannot redirect the load); else a SideError saying how the
        operator allows it."""
        spec = spec.strip()
        if not self.locked or spec in self.named(kind):
            return spec
        resolved = _resolved(spec)
        if resolved is not None and any(resolved.is_relative_to(folder) for folder in self.policy.allowed_dirs):
            return str(resolved)
        what = "model" if kind == "model" else "training set"
        if resolved is None and kind == "model" and HUB_ID.match(spec):
            problem = f"'{spec}' is a hub id, and this shared server does not download models for its visitors"
            fix = f"the operator can download it into a folder listed in {DIRS_VAR}, or start the server with it"
        else:
            # Same words whether or not the path exists: a locked visitor learns nothing about the disk.
            problem = f"'{spec}' is not a {what} this shared server offers"
            fix = f"the operator allows more by listing folders in {DIRS_VAR}"
        offered = ", ".join(f"'{name}'" for name in self.named(kind))
        folders = ", ".join(str(folder) for folder in self.policy.allowed_dirs) or "none listed"
        raise SideError(
            f"{problem}. {self.reason}. Choose {offered} or a folder inside the allowed folders ({folders}); "
            f"{fix}, or unlocks the app for everyone with {MODE_VAR}=0 (see the README's 'For teachers')."
        )

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
        return Access(False, f"Unlocked for every visitor ({MODE_VAR}=0)", policy)
    if policy.mode == "locked":
        return Access(True, f"Locked for every visitor ({MODE_VAR}=1)", policy)
    if address is None:
        return Access(True, "Locked: the server cannot tell where you connect from", policy)
    if is_loopback(address):
        return Access(False, "Unlocked: you are on the server's own machine", policy)
    return Access(True, f"Locked: you connect from {address}, not from the server's own machine", policy)


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
    """The real path (symlinks and '..' followed), or None if it does not exist or loops."""
    try:
        return Path(spec).resolve(strict=True)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, before Python 3.13
        return None


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
