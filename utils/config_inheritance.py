"""Config files that inherit: ``"_base_": "relative/path.json"``, then the keys that differ.

Our own configs write each family once (e.g. ``configs/synthetic/smallnet-3d.json`` is
``smallnet-16d-dve.json`` with three channels and the plain loss); configs of the
original schema have no ``_base_`` and read unchanged. What a run saves is the merged
config, without ``_base_``.

Merging (child over base): objects merge key by key, recursively; any other value (a
number, a string, a list, null) replaces the base's. A block whose ``type`` differs from
the base's (``arch``, ``dataset``, ...) replaces the base's block whole, so the arguments
of one type never leak into another. ``_base_`` paths are relative to the file that names
them, and a base may have a base of its own.
"""
import json
from pathlib import Path
from typing import Any, Dict, List

from utils.registry import ConfigError

BASE_KEY = "_base_"


def merge_config(base: Dict[str, Any], child: Dict[str, Any]) -> Dict[str, Any]:
    """``child`` over ``base`` (module docstring rules); neither argument is modified."""
    merged = dict(base)
    for key, value in child.items():
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict) \
                and ("type" not in value or value.get("type") == old.get("type")):
            merged[key] = merge_config(old, value)
        else:
            merged[key] = value
    return merged


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass an existing file to --config")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; a config is a JSON object") from None


def read_config_file(path, _chain: List[Path] = ()) -> Any:
    """The JSON of ``path`` with its ``_base_`` chain merged in (no ``_base_`` key left);
    a file without ``_base_`` comes back as written.

    Raises:
        ConfigError: a file is missing or not JSON, ``_base_`` is not a string naming a
            JSON object file, or the chain comes back to a file it started from (one line
            naming the files).
    """
    path = Path(path)
    config = _read_json(path)
    if not isinstance(config, dict) or BASE_KEY not in config:
        return config
    base_name = config.pop(BASE_KEY)
    if not isinstance(base_name, str) or not base_name.strip():
        raise ConfigError(f"{path}: {BASE_KEY} must be the path of the config it inherits "
                          f"from, relative to this file, e.g. \"smallnet-16d-dve.json\"")
    base_path = path.parent / base_name
    chain = [*_chain, path.resolve()]
    if base_path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in [*chain, base_path.resolve()])
        raise ConfigError(f"{path}: {BASE_KEY} makes a cycle ({cycle}); one of these files "
                          f"must not inherit")
    if not base_path.is_file():
        raise ConfigError(f"{path}: {BASE_KEY} names {base_path}, which does not exist; give "
                          f"a path relative to {path.parent}")
    base = read_config_file(base_path, chain)
    if not isinstance(base, dict):
        raise ConfigError(f"{base_path} (the {BASE_KEY} of {path}): the config must be a "
                          f"JSON object")
    return merge_config(base, config)
