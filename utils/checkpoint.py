"""Checkpoints holding only tensors, numbers, strings and plain containers.

Written atomically (temporary file in the same folder, then ``os.replace``), so a run
killed at any moment leaves every checkpoint either absent or complete; read back with
``torch.load(weights_only=True)``, which never runs code from the file.
"""
import os
import tempfile
from pathlib import Path
from typing import Any, Dict

import torch


class CheckpointError(RuntimeError):
    """The file is not a loadable checkpoint; the message names it."""


def save_checkpoint(state: Dict[str, Any], path) -> Path:
    """Write ``state`` to ``path`` atomically and return the path."""
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


def load_checkpoint(path, map_location="cpu") -> Dict[str, Any]:
    """Load a checkpoint of this project with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; pass an existing file to --resume")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # any failure to unpickle means: not a loadable checkpoint
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a loadable checkpoint (truncated, corrupt or "
                              f"holding more than tensors and plain data): {first}") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise CheckpointError(f"{path} is not a checkpoint: no 'state_dict' entry")
    return state


def strip_prefix(state_dict: Dict[str, torch.Tensor], prefix: str = "module.") -> Dict:
    """Remove a DataParallel/DDP ``module.`` prefix from every key that has it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}
