"""Reading the released DVE checkpoints without running anything from them.

Their ``config`` entry is a pickled ``parse_config.ConfigParser`` of the original code
(holding ``pathlib`` paths and an ``argparse.Namespace``), so ``torch.load(...,
weights_only=True)`` refuses them. :data:`RESTRICTED_PICKLE`, passed to ``torch.load`` as
its ``pickle_module``, unpickles with a ``find_class`` that

- returns the real object only for an allow-list of what ``torch.save`` writes for
  tensors and state dicts (tensor and parameter rebuilders, ``OrderedDict``, dtypes,
  ``torch.Size``); storages are resolved by ``torch.load`` itself;
- returns an inert placeholder class for every other name, imported from nowhere: an
  instance built by the pickle's NEWOBJ/BUILD opcodes swallows its state and never
  executes anything;
- refuses a pickle that *calls* a placeholder (the REDUCE/INST opcodes a ``__reduce__``
  such as ``os.system`` produces), except for the plain-data types the released configs
  hold (paths, namespaces, numpy scalars), which also become placeholders.

Only the weights and ``epoch`` of such a checkpoint are meant to be used. The contrastive
method's released checkpoints (SPEC-contrastive sections 2, 3; their ``opt`` is an
``argparse.Namespace``, read as a placeholder) hold their weights under ``model`` (the MoCo
query encoder; ``model_ema`` is never taken) or ``feat_disiller`` (the projector).
"""
import _codecs
import collections
import pickle
import types
from typing import Any, Dict, Tuple

import torch
import torch._utils

# module renames of Python 2 pickles (protocol 2, which torch.save writes by default)
_MODULE_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg"}

_ALLOWED: Dict[Tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): collections.Counter,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("_codecs", "encode"): _codecs.encode,  # bytes in protocol-2 pickles
}
if hasattr(torch._utils, "_rebuild_tensor_v3"):
    _ALLOWED[("torch._utils", "_rebuild_tensor_v3")] = torch._utils._rebuild_tensor_v3

# Plain-data types found in released configs; calling them (REDUCE) yields a placeholder.
DATA_TYPES_READ_AS_PLACEHOLDERS = frozenset({
    "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePath",
    "pathlib.PurePosixPath", "pathlib.PureWindowsPath", "argparse.Namespace",
    "copyreg._reconstructor", "datetime.datetime", "datetime.date", "datetime.time",
    "datetime.timedelta", "numpy.dtype", "numpy.ndarray", "numpy.core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray.scalar",
    "numpy._core.multiarray._reconstruct",
})


class ForbiddenPickleError(pickle.UnpicklingError):
    """The pickle asks to call something that is not plain data."""


class InertObject:
    """Stands in for an instance of a class that is not imported. It accepts whatever
    state the pickle gives it (``__setstate__``, items, appended elements) and keeps none."""

    __slots__ = ()
    placeholder_for = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state) -> None:
        pass

    def __setitem__(self, key, value) -> None:
        pass

    def append(self, value) -> None:
        pass

    def extend(self, values) -> None:
        pass

    def __repr__(self) -> str:
        return f"<unloaded {self.placeholder_for}>"


class _PlaceholderType(type):
    """Metaclass of the placeholders: calling one (what REDUCE does) is refused unless it
    stands for a plain-data type; NEWOBJ (``cls.__new__``) builds an inert instance."""

    def __call__(cls, *args, **kwargs):
        if cls.placeholder_for in DATA_TYPES_READ_AS_PLACEHOLDERS:
            return cls.__new__(cls)
        shown = ", ".join(repr(a)[:60] for a in args)
        raise ForbiddenPickleError(
            f"the pickle asks to call {cls.placeholder_for}({shown}); refusing to run code "
            f"from a checkpoint")


def _placeholder(qualified_name: str) -> type:
    return _PlaceholderType(f"Unloaded[{qualified_name}]", (InertObject,),
                            {"__slots__": (), "placeholder_for": qualified_name})


def _allowed_global(module: str, name: str):
    """The real object for an allowed (module, name), else None."""
    if (module, name) in _ALLOWED:
        return _ALLOWED[(module, name)]
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return getattr(torch, name)
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` imports nothing (see the module doc)."""

    def find_class(self, module: str, name: str):
        module = _MODULE_ALIASES.get(module, module)
        found = _allowed_global(module, name)
        return found if found is not None else _placeholder(f"{module}.{name}")


def _restricted_load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


# A module-like object for torch.load(pickle_module=...): it reads Unpickler and load.
RESTRICTED_PICKLE = types.SimpleNamespace(__name__="restricted_pickle",
                                          Unpickler=RestrictedUnpickler, load=_restricted_load)


# Where each released layout keeps its weights, in the order looked at: DVE, the
# contrastive method's MoCo (the query encoder) and projector checkpoints.
STATE_DICT_ENTRIES = ("state_dict", "model", "feat_disiller")


def load_released_checkpoint(path, map_location) -> Dict[str, Any]:
    """``torch.load`` through :data:`RESTRICTED_PICKLE`; returns the checkpoint's weights
    (the first of :data:`STATE_DICT_ENTRIES` it has) as ``state_dict``, its ``epoch`` and
    ``arch`` (other entries are dropped) plus ``released: True``.

    Raises ``pickle.UnpicklingError`` (a :class:`ForbiddenPickleError` when the pickle
    asks to run code) or the error ``torch.load`` raised on a damaged file.
    """
    state = torch.load(path, map_location=map_location, pickle_module=RESTRICTED_PICKLE,
                       weights_only=False)
    entries = [key for key in STATE_DICT_ENTRIES if isinstance(state, dict) and key in state]
    state_dict = state[entries[0]] if entries else None
    if not isinstance(state_dict, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise pickle.UnpicklingError(f"no {' / '.join(repr(k) for k in STATE_DICT_ENTRIES)} "
                                     f"mapping names to tensors in the file")
    epoch = state.get("epoch")
    return {"state_dict": state_dict,
            "epoch": epoch if isinstance(epoch, int) else None,
            "arch": state.get("arch") if isinstance(state.get("arch"), str) else None,
            "released": True}

