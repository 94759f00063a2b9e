"""The resolved run configuration: a config with every default it runs with written out.

A config names what differs from the defaults; ``resolve_defaults`` adds the rest, so the
``config.json`` of a run and the config in its checkpoints say everything that ran:

- the arguments of this project's constructors that the config leaves out, with their
  default values (``arch``, ``dataset``, ``warper`` and ``keypoint_regressor`` blocks; the
  loss's keyword arguments under ``loss_args``), read from the constructors' signatures;
- the ``method`` of an embedding run (``trainer.method``; ``WarpedPairs``, the original's
  warped pairs, when the config names none);
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch

from data_loader.registry import DATASETS, WARPERS
from model.registry import KEYPOINT_REGRESSORS, LOSSES, NETWORKS
from trainer.builders import check_run_config
from trainer.method import DEFAULT_METHOD, METHODS
from trainer.optim import refuse_network_changes, resume_changes
from utils.checkpoint import load_checkpoint, require_resumable
from utils.checkpoint_search import require_checkpoint
from utils.cli import resolve_seeds, run_config
from utils.config import experiment_name
from utils.device import resolve_device
from utils.registry import ConfigError, Registry

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
    "method": (METHODS, ("context",)),
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
    if "keypoint_regressor" not in resolved:
        resolved.setdefault("method", {"type": DEFAULT_METHOD, "args": {}})
    for block, (registry, reserved) in BLOCK_REGISTRIES.items():
        if block in resolved:
            resolved[block] = _filled_block(registry, resolved[block], reserved)
    loss = LOSSES.get(resolved["loss"])
    resolved["loss_args"] = {**signature_defaults(loss, LOSS_RESERVED), **resolved["loss_args"]}
    return resolved


@dataclass
class ResolvedRun:
    """A run decided once: the resolved config and everything the command line adds.

    config: the resolved config (``resolve_defaults``; ``seed`` is added per run).
    path: the config's file (or, resuming without ``--config``, the checkpoint's).
    state: the ``--resume`` checkpoint as read, or None.
    device: where the run trains.
    seeds: one run each (``--seeds``, else the config's ``seed``, else 0).
    summary: ``trainer.builders.check_run_config``'s (``arch``, ``parameters``,
        ``missing`` inputs, ``finetune_checkpoint``).
    """
    config: Dict[str, Any]
    path: Path
    state: Optional[Dict[str, Any]]
    device: torch.device
    seeds: List[int]
    summary: Dict[str, Any]

    def config_for(self, seed: int) -> Dict[str, Any]:
        """The config a run with ``seed`` writes to its ``config.json``."""
        return {**self.config, "seed": seed}


def command_line_overrides(args) -> List[str]:
    """``--set`` plus the flags that set config keys (``-b``, ``-g``, ``-f``), as overrides."""
    overrides = list(args.set)
    if args.batch_size:
        overrides.append(f"batch_size={args.batch_size}")
    if args.n_gpu is not None:
        overrides.append(f"n_gpu={args.n_gpu}")
    if args.folded_correlation:
        overrides.append("loss_args.fold_corr=true")
    return overrides


def check_resume(state: Dict[str, Any], config: Dict[str, Any], path, resume) -> None:
    """Before anything is written: a resumed run must have epochs left to train, keep the
    network of the checkpoint's run, and its changed optimizer settings must fit the
    saved optimizer state. The checkpoint's config is compared resolved (and kept so in
    ``state``), as the new one is."""
    epoch = state.get("epoch") or 0
    if epoch >= config["trainer"]["epochs"]:
        raise ConfigError(f"--resume {resume}: the checkpoint is at epoch {epoch} and "
                          f"trainer.epochs is {config['trainer']['epochs']}: nothing to train; "
                          f"raise it, e.g. --set trainer.epochs={epoch + 1}")
    if not state.get("released"):
        if isinstance(state.get("config"), dict):
            state["config"] = resolve_defaults(state["config"], path)
        refuse_network_changes(state.get("config"), config, resume)
        resume_changes(state.get("config"), config, resume)


def resolve_run(args) -> ResolvedRun:
    """The one place a run's raw config is read: ``--config`` (else the ``--resume``
    checkpoint's config) with the command-line overrides, checked
    (``check_run_config``), resolved, with the device, the seeds and the resume checks.
    ``args.resume`` becomes the file it designates. Raises the user errors of those steps
    (``ConfigError``, ``CheckpointError``) with one-line messages."""
    if args.resume:
        args.resume = str(require_checkpoint(args.resume, "--resume"))
    state = load_checkpoint(args.resume) if args.resume else None
    if state is not None:
        require_resumable(state, args.resume)
    config, path = run_config(args.config, state if not args.config else None, args.resume,
                              command_line_overrides(args))
    device = resolve_device(args.device)
    summary = check_run_config(config, path, args.resume, state)
    config = resolve_defaults(config, path)
    seeds = resolve_seeds(args.seeds, config, path)
    if state is not None:
        if len(seeds) > 1:
            raise ConfigError(f"--resume continues one run; drop --seeds {args.seeds}")
        check_resume(state, config, path, args.resume)
    return ResolvedRun(config, Path(path), state, device, seeds, summary)
