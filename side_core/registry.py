"""Named choices and their implementations: one registry per open choice (features, similarities,
allocations, classifiers, samplers), kept beside the code it names, so that a new choice is one
``register`` call and every list shown to users (CLI choices, app options, errors) follows it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

from side_core.errors import SideError


class Entry(Protocol):
    """What every registered implementation says about itself: one line for the user choosing it."""

    @property
    def help(self) -> str: ...


E = TypeVar("E", bound=Entry)


class Registry(Generic[E]):
    """The implementations of one choice, by name, in registration order."""

    def __init__(self, kind: str):
        self.kind = kind  # what a name names, for errors ("feature", "sampler", ...)
        self._entries: dict[str, E] = {}

    def register(self, name: str, entry: E) -> E:
        if name in self._entries:
            raise ValueError(f"The {self.kind} {name!r} is already registered.")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        del self._entries[name]

    def get(self, name: str) -> E:
        """The entry of ``name``; a name that is not registered is bad input."""
        if not isinstance(name, str) or name not in self._entries:
            raise SideError(f"Unknown {self.kind} {name!r}: use one of {', '.join(self._entries)}.")
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> tuple[tuple[str, E], ...]:
        return tuple(self._entries.items())

    def help(self) -> str:
        """Every choice and its one line: 'a: what a does; b: what b does'."""
        return "; ".join(f"{name}: {entry.help}" for name, entry in self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
