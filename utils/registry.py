"""Name -> constructor registries, one per role (networks, losses, datasets, ...).

Config ``type`` names and the names listed under ``loss``, ``metrics`` and
``visualizations`` are resolved here, so that a typo fails with a one-line error
naming the registry and every valid name instead of a bare ``AttributeError``.
"""
from typing import Callable, Dict, Iterator, Optional

from utils.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration problem the user can fix; the message says how, in one line."""


class Registry:
    """Maps names to callables.

    Args:
        role: what the registered objects are (used in error messages), e.g. "arch".
        called_with: what a registered callable receives, for the docstring of the role.
    """

    def __init__(self, role: str, called_with: str = ""):
        self.role = role
        self.called_with = called_with
        self._entries: Dict[str, Callable] = {}

    def register(self, obj: Optional[Callable] = None, *, name: Optional[str] = None):
        """Register ``obj`` under ``name`` (default: its ``__name__``); usable as a decorator."""

        def add(item: Callable) -> Callable:
            key = name or item.__name__
            if key in self._entries:
                raise KeyError(f"{self.role} registry: '{key}' is registered twice")
            self._entries[key] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> Callable:
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.role} '{name}'; valid names: {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
