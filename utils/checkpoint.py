"""Checkpoints: writing ours, reading ours and the released DVE ones, loading weights.

Ours hold only tensors, numbers, strings and plain containers (checked when saving),
are written atomically (temporary file in the same folder, then ``os.replace``), so a
run killed at any moment leaves every checkpoint either absent or complete, and are read
back with ``torch.load(weights_only=True)``, which never runs code from the file. The
released checkpoints, whose pickled config needs the original code, are read through
the restricted unpickler of :mod:`utils.released_checkpoint`.

:func:`load_weights_into` is the one way weights enter a network (``--resume``,
``finetune_from``, ``test_matching.py``, ``test_keypoints.py``), from any of the three
kinds (ours, released, a bare state dict): it picks the part of the checkpoint that fits
(``module.`` prefixes, an embedding inside a regressor checkpoint) and fails with the
names that do not fit and what the checkpoint looks like.
"""
import collections
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from utils.distributed import unwrapped
from utils.errors import UserError
from utils.released_checkpoint import ForbiddenPickleError, load_released_checkpoint

_logger = logging.getLogger(__name__)

MAX_LISTED_NAMES = 4
_PLAIN_CONTAINERS = (dict, collections.OrderedDict, collections.Counter, list, tuple, set)
_PLAIN_LEAVES = (str, int, float, bool, type(None), torch.Tensor, torch.nn.Parameter, torch.Size,
                 torch.dtype, torch.device)


class CheckpointError(UserError, RuntimeError):
    """The file is not a loadable checkpoint, or does not fit the network; the message
    names the file."""


def check_plain_data(value: Any, where: str = "checkpoint") -> None:
    """Raise ``TypeError`` naming the entry unless ``value`` is tensors, numbers, strings
    and plain containers (what ``weights_only=True`` reads back)."""
    if type(value) in _PLAIN_LEAVES:
        return
    if type(value) not in _PLAIN_CONTAINERS:
        raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__name__}; a "
                        f"checkpoint holds only tensors, numbers, strings and plain containers")
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        check_plain_data(item, f"{where}[{key!r}]")


def save_checkpoint(state: Dict[str, Any], path) -> Path:
    """Write ``state`` (plain data only, see :func:`check_plain_data`) to ``path``
    atomically and return the path."""
    check_plain_data(state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(state, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return path


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_checkpoint(path, map_location="cpu") -> Dict[str, Any]:
    """Read a checkpoint of this project (``weights_only=True``), a released DVE one, or a
    bare state dict.

    A released checkpoint (its pickle names classes of the original code) is read by the
    restricted unpickler; only ``state_dict``, ``epoch`` and ``arch`` are returned, with
    ``released: True``. A bare state dict (``torch.save(model.state_dict())``, what most
    repositories publish) is returned as ``{"state_dict": it, "epoch": None, "bare":
    True}``. A file that is missing, damaged, not a checkpoint or whose pickle asks to
    run code raises :class:`CheckpointError`; nothing from it is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; pass an existing file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # names a class weights_only does not know, or is no pickle
        state = _load_released(path, map_location)
    except Exception as err:  # truncated archive, not a torch file, ...
        raise CheckpointError(f"{path} is not a loadable checkpoint (truncated, corrupt or "
                              f"not written by torch.save): {_first_line(err)}") from None
    if is_bare_state_dict(state):
        return {"state_dict": state, "epoch": None, "bare": True}
    if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a checkpoint: neither a 'state_dict' entry nor "
                              f"a state dict (names -> tensors)")
    return state


def is_bare_state_dict(value: Any) -> bool:
    """Whether ``value`` is what ``torch.save(model.state_dict())`` writes: a non-empty
    mapping of parameter names to tensors."""
    return (isinstance(value, dict) and bool(value) and "state_dict" not in value
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()))


def require_resumable(state: Dict[str, Any], path) -> None:
    """Raise :class:`CheckpointError` if ``state`` (from :func:`load_checkpoint`) holds
    only weights (a bare state dict): training cannot continue without an epoch and an
    optimizer state, but it can start from those weights."""
    if state.get("bare"):
        raise CheckpointError(f"--resume {path}: a bare state dict (weights only: no epoch, "
                              f"optimizer or config) cannot be resumed; start a new run from "
                              f"its weights with \"finetune_from\": \"{path}\" in the config")


def _load_released(path: Path, map_location) -> Dict[str, Any]:
    try:
        state = load_released_checkpoint(path, map_location)
    except ForbiddenPickleError as err:
        raise CheckpointError(f"{path} is refused: {err} (a checkpoint holds only data; this "
                              f"file is damaged or malicious)") from None
    except Exception as err:
        raise CheckpointError(f"{path} is not a loadable checkpoint (truncated, corrupt or "
                              f"holding more than tensors and plain data, e.g. a whole "
                              f"torch.save(model): save model.state_dict() instead): "
                              f"{_first_line(err)}") from None
    _logger.info("%s is a released DVE checkpoint: its pickled config was not executed; "
                 "only its weights and epoch are used", path)
    return state


def _drop_module_segments(key: str) -> str:
    return ".".join(part for part in key.split(".") if part != "module")


def select_state_dict(target_keys, state_dict: Dict[str, torch.Tensor]) -> Tuple[str, Dict]:
    """The view of ``state_dict`` that fits a module with ``target_keys``.

    ``module`` path segments (DataParallel, anywhere) are dropped, then among the
    prefixes after which checkpoint keys are target keys (``""``, ``0.wrapped_module.``
    of a regressor checkpoint, ...) the one matching the most target keys is stripped,
    keeping only the keys under it. Returns (prefix, view).
    """
    targets = set(target_keys)
    if not any(part == "module" for key in targets for part in key.split(".")):
        state_dict = {_drop_module_segments(k): v for k, v in state_dict.items()}
    matches: Dict[str, int] = collections.Counter()
    for key in state_dict:
        parts = key.split(".")
        for start in range(len(parts)):
            if ".".join(parts[start:]) in targets:
                matches[".".join(parts[:start]) + ("." if start else "")] += 1
    prefix = min(matches, key=lambda p: (-matches[p], len(p))) if matches else ""
    return prefix, {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _embedding_description(state_dict: Dict[str, torch.Tensor], prefix: str) -> Optional[str]:
    """``SmallNet``/``HourglassNet`` and its channel count from the keys under ``prefix``."""
    heads = {"conv6.weight": "SmallNet", "output_layers.0.4.weight": "HourglassNet"}
    for head, arch in heads.items():
        if prefix + head in state_dict:
            channels = state_dict[prefix + head].shape[0]
            norm = ""
            if arch == "HourglassNet" and prefix + "bn1.running_mean" not in state_dict:
                norm = ", GroupNorm"
            return f"{arch} with {channels} output channels{norm}"
    return None


def describe_state_dict(state_dict: Dict[str, torch.Tensor]) -> str:
    """What network a state dict looks like, e.g. "SmallNet with 16 output channels"."""
    state_dict = {_drop_module_segments(k): v for k, v in state_dict.items()}
    embedding = _embedding_description(state_dict, "")
    if embedding is not None:
        return embedding
    embedding = _embedding_description(state_dict, "0.wrapped_module.")
    if embedding is None:
        shown = ", ".join(list(state_dict)[:MAX_LISTED_NAMES])
        return f"an unknown network (first names: {shown})"
    regressor = ""
    for index in (1, 2):
        inner = state_dict.get(f"{index}.inner_conv.weight")
        reg = state_dict.get(f"{index}.reg_conv.weight")
        if inner is not None and reg is not None:
            points = reg.shape[0] // 2
            regressor = (f", IntermediateKeypointPredictor for {points} points x "
                         f"{inner.shape[0] // max(points, 1)} intermediate under '{index}.'"
                         f"{' (after an upsampling)' if index == 2 else ''}")
    return f"a keypoint regressor checkpoint ({embedding} under '0.wrapped_module.'{regressor})"


def _listed(names: List[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED_NAMES])
    more = len(names) - MAX_LISTED_NAMES
    return shown + (f" and {more} more" if more > 0 else "")


def _mismatch_message(path, source: str, target: Dict[str, torch.Tensor], missing: List[str],
                      unexpected: List[str], reshaped: List[str], prefix: str,
                      checkpoint_state_dict: Dict[str, torch.Tensor]) -> str:
    """One line: what does not fit, what the checkpoint and the network (whose state dict
    is ``target``) look like."""
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_listed(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_listed(unexpected)})")
    if reshaped:
        problems.append(f"{len(reshaped)} of another shape ({_listed(reshaped)})")
    view = f" under '{prefix}'" if prefix else ""
    configured = describe_state_dict(target)
    found = describe_state_dict(checkpoint_state_dict)
    keys = "arch.type and arch.args.num_output_channels"
    if "regressor" in configured:
        keys += ", keypoint_regressor.args and keypoint_regressor_upsample"
    return (f"{source} {path}: its parameters{view} do not fit the configured network, "
            f"{configured}: {'; '.join(problems)}. The checkpoint looks like {found}: set "
            f"{keys} in the config to match")


def load_weights_into(network: nn.Module, path, device, source: str = "checkpoint",
                      state: Optional[Dict[str, Any]] = None,
                      announce: bool = True) -> Dict[str, Any]:
    """Load the weights of checkpoint ``path`` (ours or released) into ``network``.

    Args:
        network: the module to fill (``DataParallel``, ``DistributedDataParallel`` and
            ``torch.compile`` wrappers are unwrapped).
        path: the checkpoint file.
        device: where its tensors are mapped.
        source: what named the file, for messages (``--resume``, ``finetune_from``).
        state: the checkpoint as :func:`load_checkpoint` already returned it, if read.
        announce: log the load (False for a check before the run loads them for real).

    Returns the checkpoint dict. Raises :class:`CheckpointError` when the file cannot be
    read or its parameters do not fit: missing, unexpected and reshaped names are listed
    (the network is left untouched, except when only unexpected names remain after the
    network's load hooks dropped those it ignores).
    """
    network = unwrapped(network)
    if state is None:
        state = load_checkpoint(path, map_location=device)
    target = network.state_dict()
    prefix, view = select_state_dict(target.keys(), state["state_dict"])
    missing = [k for k in target if k not in view]
    unexpected = [k for k in view if k not in target]
    reshaped = [f"{key}: checkpoint {list(view[key].shape)}, network {list(value.shape)}"
                for key, value in target.items() if key in view and view[key].shape != value.shape]
    if not missing and not reshaped:  # unexpected entries may be dropped by load hooks
        refused = set(network.load_state_dict(view, strict=False).unexpected_keys)
        unexpected = [k for k in unexpected if k in refused]
    if missing or reshaped or unexpected:
        raise CheckpointError(_mismatch_message(path, source, target, missing, unexpected,
                                                reshaped, prefix, state["state_dict"]))
    if not announce:
        return state
    origin = "a bare state dict" if state.get("bare") else f"epoch {state.get('epoch')}"
    _logger.info("loaded the weights of %s%s (%s) into %s", path,
                 f" under '{prefix}'" if prefix else "", origin, type(network).__name__)
    return state
