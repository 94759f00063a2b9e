"""Name -> constructor registries, one per role (networks, losses, datasets, ...).

Config ``type`` names and the names listed under ``loss``, ``metrics`` and
``visualizations`` are resolved here, so that a typo fails with a one-line error
naming the registry and every valid name instead of a bare ``AttributeError``.

Each registry is an explicit, fixed table built where it is defined (``model.registry``,
``data_loader.registry``, ``base.optim``, ``utils.visualization``...), so importing
that one module gives the complete registry. A name outside the table that contains a
dot (``package.module.Name``) is imported instead: a new network, loss or dataset can
live outside this code base.
"""
import importlib
from types import MappingProxyType
from typing import Callable, Dict, Iterator, Mapping

from utils.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration problem the user can fix; the message says how, in one line."""


def named(*objects: Callable) -> Dict[str, Callable]:
    """``{obj.__name__: obj}`` of ``objects``, the entries of a :class:`Registry`.

    Raises:
        ValueError: two objects share a name (one would hide the other).
    """
    entries: Dict[str, Callable] = {}
    for obj in objects:
        if obj.__name__ in entries:
            raise ValueError(f"two registry entries are named '{obj.__name__}'")
        entries[obj.__name__] = obj
    return entries


def import_named(name: str) -> Callable:
    """The callable ``Name`` of the module ``package.module`` for ``name`` =
    ``"package.module.Name"``, the module imported as Python imports it (``sys.path``:
    the folder of the script run, or the working directory under ``python -m``).

    Raises:
        LookupError: with the reason in one line: no module path, the module cannot be
            imported (it or a module it imports is missing), it has no such attribute, or
            the attribute is not callable. Any other error raised while the module runs
            is a bug of that module and propagates.
    """
    module_name, _, attribute = name.rpartition(".")
    if not module_name or module_name.startswith(".") or not attribute:
        raise LookupError(f"'{name}' is not a module path of the form package.module.Name")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise LookupError(f"cannot import {module_name} ({' '.join(str(err).split())})") from None
    if not hasattr(module, attribute):
        raise LookupError(f"module {module_name} has no attribute {attribute}")
    found = getattr(module, attribute)
    if not callable(found):
        raise LookupError(f"{name} is a {type(found).__name__}, not a class or function")
    return found


class Registry:
    """A fixed table of names -> callables of one role.

    ``get(name)`` returns the entry ``name``; a name that is not in the table but
    contains a dot, ``package.module.Name``, is imported (:func:`import_named`) and its
    attribute ``Name`` returned, so a plug-in outside the core (e.g. ``"arch": {"type":
    "my_methods.nets.TinyNet"}``) needs no change here. The table never changes after
    construction.

    Args:
        role: what the entries are, in error messages and docs, e.g. "arch".
        called_with: what an entry receives and returns (for the docs of the role).
        entries: name -> callable; copied, then read-only (:func:`named` builds it from
            the objects' ``__name__``).
    """

    def __init__(self, role: str, called_with: str, entries: Mapping[str, Callable]):
        self.role = role
        self.called_with = called_with
        self._entries = MappingProxyType(dict(entries))

    def get(self, name: str) -> Callable:
        """The entry ``name``, or the imported ``package.module.Name``.

        Raises:
            ConfigError: one line naming the role, the name, why a module path failed,
                and every name of the table.
        """
        if name in self._entries:
            return self._entries[name]
        reason = ""
        if isinstance(name, str) and "." in name:
            try:
                return import_named(name)
            except LookupError as err:
                reason = f": {err}"
        raise ConfigError(f"unknown {self.role} '{name}'{reason}; "
                          f"valid names: {', '.join(sorted(self._entries))}")

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
