"""Name-to-object registries.

Models, losses and data sets are chosen in recipes by a stable registered name, never by an
import path. Registering a name twice raises; asking for an unknown name raises with the
closest registered names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from sepzoo.errors import SepzooError, suggestion

T = TypeVar("T")


class DuplicateNameError(SepzooError):
    """A name was registered twice."""


class UnknownNameError(SepzooError):
    """A name is not registered."""


class Registry(Generic[T]):
    """A mapping from stable names to registered objects (classes or builder functions).

    Args:
        kind: What the registry holds, used in error messages (e.g. ``"model"``).
        discover: Called once before the first look-up, to import the modules that register
            entries (the package's own files and third-party entry points).
    """

    def __init__(self, kind: str, discover: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._discover = discover
        self._discovered = discover is None
        self._discovering = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers an object under ``name``.

        Args:
            name: The stable name recipes use; lowercase letters, digits, ``_`` and ``-``.
        """
        if not name or not all(c.isalnum() or c in "_-" for c in name) or name != name.lower():
            raise ValueError(f"invalid {self.kind} name {name!r}: use lowercase letters, digits, '_' or '-'")

        def decorator(obj: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and existing is not obj:
                where = getattr(existing, "__module__", "?")
                raise DuplicateNameError(
                    f"{self.kind} name {name!r} is already registered (by {where}); choose another name"
                )
            self._entries[name] = obj
            try:
                obj.registry_name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj

        return decorator

    def ensure_discovered(self) -> None:
        """Import every module that registers entries, once."""
        if self._discovered or self._discovering:
            return
        self._discovering = True
        try:
            assert self._discover is not None
            self._discover()
            self._discovered = True
        finally:
            self._discovering = False

    def get(self, name: str) -> T:
        """Return the object registered under ``name``.

        Args:
            name: A registered name.

        Raises:
            UnknownNameError: With the closest registered names.
        """
        self.ensure_discovered()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{suggestion(str(name), self._entries)}"
                f" (registered: {', '.join(sorted(self._entries)) or 'none'})"
            ) from None

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self.ensure_discovered()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self.ensure_discovered()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self.ensure_discovered()
        return len(self._entries)
