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
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import torch

from base.optim import refuse_network_changes, resume_changes
from data_loader.registry import DATASETS, WARPERS
from model.registry import KEYPOINT_REGRESSORS, LOSSES, NETWORKS
from trainer.builders import check_run_config
from trainer.method import DEFAULT_METHOD, METHODS
from utils.checkpoint import CheckpointError, load_checkpoint, require_resumable
from utils.checkpoint_search import require_checkpoint
from utils.config import apply_overrides, experiment_name, load_config
from utils.config_values import check_values
from utils.device import resolve_device
from utils.distributed import (SINGLE_PROCESS, ProcessGroup, process_device,
                               process_group_from_environment)
from utils.registry import ConfigError, Registry

_logger = logging.getLogger(__name__)
DEFAULT_SEED = 0
RUN_DEFAULTS = {"n_gpu": 1, "bias_lr": None, "loss_args": {}, "metrics": [],
                "visualizations": [], "finetune_from": None, "amp": False,
                "channels_last": False, "compile": False, "sync_batchnorm": False,
                "cache_images": False, "cache_dir": "saved/image_cache"}
REGRESSOR_DEFAULTS = {"keypoint_regressor_upsample": False, "warp_val": True,
                      "cache_descriptors": False, "restrict_annos": None}
TRAINER_DEFAULTS = {"save_dir": "saved/", "save_period": 1, "verbosity": 2, "monitor": "off",
                    "early_stop": 0, "tensorboardX": True, "num_workers": None,
                    "lr_step": "after_epoch"}
# block -> (registry, arguments the code passes itself)
BLOCK_REGISTRIES = {
    "arch": (NETWORKS, ()),
    "dataset": (DATASETS, ("train",)),
    "warper": (WARPERS, ()),
    "keypoint_regressor": (KEYPOINT_REGRESSORS, ("descriptor_dimension",)),
    "method": (METHODS, ("context",)),
}
LOSS_RESERVED = ("feats", "meta", "outputs")


def released_run_config(checkpoint) -> Tuple[Dict[str, Any], Path]:
    """The config of the released checkpoint ``checkpoint``: the ``config.json`` of its run
    folder, beside it (original schema; ``utils.model_zoo`` downloads it there), read by
    ``load_config``; ``name`` defaults to the experiment folder above the run folder, as
    the original named runs. Raises :class:`CheckpointError` when there is none."""
    path = Path(checkpoint).with_name("config.json")
    if not path.is_file():
        raise CheckpointError(f"{checkpoint} stores no readable config (a released DVE "
                              f"checkpoint keeps it as a pickled object, which is not "
                              f"loaded) and has no config.json beside it; pass --config "
                              f"CONFIG.json as well")
    config = load_config(path)
    config.setdefault("name", path.parent.parent.name)
    _logger.info("no --config: using %s, the released run's config (original schema)", path)
    return config, path


def read_config(config_file: Optional[str], state: Optional[Dict[str, Any]],
               checkpoint: Optional[str], overrides: List[str]) -> Tuple[Dict[str, Any], Path]:
    """The config of ``--config`` (else the one stored in the loaded checkpoint ``state``
    of ``checkpoint``, or for a released checkpoint :func:`released_run_config`) with the
    ``--set`` style ``overrides`` applied; -> (config, path)."""
    if config_file:
        path = Path(config_file)
        config = load_config(path)
    elif state is not None:
        config = state.get("config")
        if state.get("bare"):
            raise CheckpointError(f"{checkpoint} is a bare state dict (weights only, no "
                                  f"config); pass --config CONFIG.json as well")
        if isinstance(config, dict):
            path = Path(state.get("config_path") or "resumed/config.json")
        elif state.get("released"):
            config, path = released_run_config(checkpoint)
        else:
            raise CheckpointError(f"{checkpoint} stores no readable config; pass --config "
                                  f"CONFIG.json as well")
    else:
        raise ConfigError("pass --config CONFIG.json (or --resume CHECKPOINT, whose stored "
                          "config is then used)")
    return apply_overrides(config, overrides, path), path


def resolve_seeds(cli_seeds: Optional[str], config: Dict[str, Any], path) -> List[int]:
    """The run seeds: ``--seeds`` when given (it wins), else the config's ``seed``, else
    0; logs which and why. Raises :class:`ConfigError` for a malformed ``--seeds``."""
    if cli_seeds is not None:
        try:
            seeds = [int(s) for s in str(cli_seeds).split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds {cli_seeds}: expected comma-separated integers, "
                              f"e.g. --seeds 0,1,2") from None
        if not seeds:
            raise ConfigError("--seeds is empty; give comma-separated integers, e.g. 0,1,2")
        ignored = f" (the config's seed {config['seed']} is overridden)" if "seed" in config else ""
        _logger.info("seeds %s from --seeds%s", seeds, ignored)
        return seeds
    if "seed" in config:
        _logger.info("seed %d from the config's seed key (%s); --seeds overrides it",
                     config["seed"], path)
        return [int(config["seed"])]
    _logger.info("seed %d (the default: no --seeds and no seed key in %s)", DEFAULT_SEED, path)
    return [DEFAULT_SEED]


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
    if "loss" in resolved:  # a method with a loss of its own needs none
        loss = LOSSES.get(resolved["loss"])
        resolved["loss_args"] = {**signature_defaults(loss, LOSS_RESERVED),
                                 **resolved["loss_args"]}
    return resolved


@dataclass
class ResolvedRun:
    """A run decided once: the resolved config and everything the command line adds.

    config: the resolved config (``resolve_defaults``; ``seed`` is added per run).
    path: the config's file (or, resuming without ``--config``, the checkpoint's).
    state: the ``--resume`` checkpoint as read, or None.
    device: where the run trains.
    seeds: one run each (``--seeds``, else the config's ``seed``, else 0).
    group: this process among the ``torchrun`` processes (``utils.distributed``).
    summary: ``trainer.builders.check_run_config``'s (``arch``, ``parameters``,
        ``missing`` inputs, ``finetune_checkpoint``).
    """
    config: Dict[str, Any]
    path: Path
    state: Optional[Dict[str, Any]]
    device: torch.device
    seeds: List[int]
    summary: Dict[str, Any]
    group: ProcessGroup = SINGLE_PROCESS

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
    config, path = read_config(args.config, state if not args.config else None, args.resume,
                               command_line_overrides(args))
    group = process_group_from_environment()
    device = process_device(resolve_device(args.device), group)
    summary = check_run_config(config, path, args.resume, state)
    config = resolve_defaults(config, path)
    seeds = resolve_seeds(args.seeds, config, path)
    if state is not None:
        if len(seeds) > 1:
            raise ConfigError(f"--resume continues one run; drop --seeds {args.seeds}")
        check_resume(state, config, path, args.resume)
    return ResolvedRun(config, Path(path), state, device, seeds, summary, group)


@dataclass
class EvaluationRun:
    """What an evaluation command (``test_matching.py``, ``test_keypoints.py``,
    ``predict.py``, ``hubconf.py``) works from, decided once.

    config: the resolved config (``resolve_defaults``) of ``--config``, else the
        checkpoint's own (a released checkpoint's run ``config.json``), with ``--set``.
    path: the config's file (or the checkpoint's, for its stored config).
    checkpoint: the file ``--resume`` designates, or None.
    state: that checkpoint as read (``utils.checkpoint.load_checkpoint``), or None.
    """
    config: Dict[str, Any]
    path: Path
    checkpoint: Optional[Path]
    state: Optional[Dict[str, Any]]


def resolve_evaluation(config_file: Optional[str], resume: Optional[str], overrides: List[str],
                       device: torch.device, source: str = "--resume") -> EvaluationRun:
    """The one place an evaluation's raw config is read: the checkpoint ``resume`` (a file,
    a folder of runs, a glob or a released model's name, ``source`` names the option in
    messages) read onto ``device``, the config of ``config_file`` (else the
    checkpoint's), the ``overrides``, its values checked and every default written out.
    Raises ``ConfigError`` / ``CheckpointError`` with one-line messages."""
    checkpoint = require_checkpoint(resume, source) if resume else None
    state = load_checkpoint(checkpoint, map_location=device) if checkpoint else None
    config, path = read_config(config_file, state, checkpoint, overrides)
    check_values(config, path)
    return EvaluationRun(resolve_defaults(config, path), Path(path), checkpoint, state)
