"""The resolved run configuration: a config with every default it runs with written out.

A config names what differs from the defaults; ``resolve_defaults`` adds the rest, so the
``config.json`` of a run and the config in its checkpoints say everything that ran:

- the arguments of this project's constructors that the config leaves out, with their
  default values (``arch``, ``dataset``, ``warper`` and ``keypoint_regressor`` blocks; the
  loss's keyword arguments under ``loss_args``), read from the constructors' signatures;
- the top-level and ``trainer`` keys the code reads, with the values it uses when they
  are absent (:data:`RUN_DEFAULTS`, :data:`REGRESSOR_DEFAULTS`, :data:`TRAINER_DEFAULTS`;
  ``trainer.log_dir`` defaults to ``trainer.save_dir``) and ``name`` (the experiment
  folder, ``utils.config.experiment_name``).

Not filled: the arguments of PyTorch's optimizers and schedulers (``optimizer``,
``lr_scheduler``), whose defaults belong to the installed PyTorch (its version is in the
run's ``provenance.json``) and whose newer keywords older versions refuse.

Resolving is idempotent, and a resolved config runs exactly as the config it came from:
every value added is the one the code would have used.
"""
import copy
import inspect
from typing import Any, Callable, Dict, Iterable

from data_loader.registry import DATASETS, WARPERS
from model.registry import KEYPOINT_REGRESSORS, LOSSES, NETWORKS
from utils.config import experiment_name
from utils.registry import Registry

RUN_DEFAULTS = {"n_gpu": 1, "bias_lr": None, "loss_args": {}, "metrics": [],
                "visualizations": [], "finetune_from": None}
REGRESSOR_DEFAULTS = {"keypoint_regressor_upsample": False, "warp_val": True,
                      "cache_descriptors": False, "restrict_annos": None}
TRAINER_DEFAULTS = {"save_dir": "saved/", "save_period": 1, "verbosity": 2, "monitor": "off",
                    "early_stop": 0, "tensorboardX": True, "num_workers": None}
# block -> (registry, arguments the code passes itself)
BLOCK_REGISTRIES = {
    "arch": (NETWORKS, ()),
    "dataset": (DATASETS, ("train",)),
    "warper": (WARPERS, ()),
    "keypoint_regressor": (KEYPOINT_REGRESSORS, ("descriptor_dimension",)),
}
LOSS_RESERVED = ("feats", "meta", "outputs")


def _plain(value) -> bool:
    """A value JSON writes and reads back unchanged (tuples are written as lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(item) for item in value)
    return False


def signature_defaults(func: Callable, reserved: Iterable[str] = ()) -> Dict[str, Any]:
    """The keyword arguments of ``func`` that have a plain default (``_plain``), with it
    (tuples as lists); ``reserved`` names and ``*args``/``**kwargs`` left out."""
    defaults = {}
    for name, parameter in inspect.signature(func).parameters.items():
        if name in ("self", *reserved) or parameter.default is inspect.Parameter.empty \
                or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if _plain(parameter.default):
            value = parameter.default
            defaults[name] = list(value) if isinstance(value, tuple) else value
    return defaults


def _filled_block(registry: Registry, spec: Dict[str, Any], reserved) -> Dict[str, Any]:
    constructor = registry.get(spec["type"])
    return {**spec, "args": {**signature_defaults(constructor, reserved), **spec.get("args", {})}}


def resolve_defaults(config: Dict[str, Any], path) -> Dict[str, Any]:
    """``config`` (already checked: ``trainer.builders.check_run_config``) with every
    default written out (module docstring); ``path`` is the config's file (for ``name``).
    Returns a new dict; ``config`` is not modified."""
    resolved = copy.deepcopy(config)
    resolved.setdefault("name", experiment_name(path, config))
    for key, value in RUN_DEFAULTS.items():
        resolved.setdefault(key, copy.deepcopy(value))
    if "keypoint_regressor" in resolved:
        for key, value in REGRESSOR_DEFAULTS.items():
            resolved.setdefault(key, value)
    trainer = resolved["trainer"]
    for key, value in TRAINER_DEFAULTS.items():
        trainer.setdefault(key, value)
    trainer.setdefault("log_dir", trainer["save_dir"])
    for block, (registry, reserved) in BLOCK_REGISTRIES.items():
        if block in resolved:
            resolved[block] = _filled_block(registry, resolved[block], reserved)
    loss = LOSSES.get(resolved["loss"])
    resolved["loss_args"] = {**signature_defaults(loss, LOSS_RESERVED), **resolved["loss_args"]}
    return resolved
