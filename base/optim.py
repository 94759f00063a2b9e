"""Optimizer and learning-rate scheduler registries, the parameter grouping of DVE, the
checks of their settings, carrying changed settings into a resumed run, and refusing
the changes a resumed run cannot take."""
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from utils.config import build_block
from utils.config_values import (check_table, non_negative_number, positive_integer,
                                 positive_number)
from utils.registry import ConfigError, Registry, named

OPTIMIZERS = Registry("optimizer", "(param_groups, **optimizer.args)",
                      named(torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD))
SCHEDULERS = Registry("lr_scheduler", "(optimizer, **lr_scheduler.args)",
                      named(torch.optim.lr_scheduler.MultiStepLR, torch.optim.lr_scheduler.StepLR,
                            torch.optim.lr_scheduler.ExponentialLR,
                            torch.optim.lr_scheduler.CosineAnnealingLR))


# argument -> (predicate, what is expected); torch's own checks would fail with a
# comparison error on a string, or not at all on a float step size.
ARGUMENT_CHECKS = {
    "optimizer.args.lr": (positive_number, "a positive number, e.g. 0.001"),
    "optimizer.args.weight_decay": (non_negative_number, "a number >= 0"),
    "optimizer.args.eps": (positive_number, "a positive number, e.g. 1e-8"),
    "optimizer.args.momentum": (non_negative_number, "a number >= 0"),
    "optimizer.args.amsgrad": (lambda v: isinstance(v, bool), "true or false"),
    "optimizer.args.betas": (lambda v: isinstance(v, list) and len(v) == 2 and all(
        non_negative_number(b) and b < 1 for b in v), "two numbers in [0, 1), e.g. [0.9, 0.999]"),
    "lr_scheduler.args.milestones": (
        lambda v: isinstance(v, list) and all(positive_integer(m) for m in v),
        "a list of epochs (positive integers), e.g. [70, 90]"),
    "lr_scheduler.args.gamma": (positive_number, "a positive number, e.g. 0.1"),
    "lr_scheduler.args.step_size": (positive_integer, "a positive integer (epochs), e.g. 50"),
    "lr_scheduler.args.T_max": (positive_integer, "a positive integer (epochs)"),
    "lr_scheduler.args.eta_min": (non_negative_number, "a number >= 0"),
}
# Changes that a resumed run cannot apply to the optimizer state it loads.
STATE_CHANGING = ("optimizer.type", "lr_scheduler.type", "optimizer.args.amsgrad")
# The blocks (and plain keys) that define the network a resumed run continues.
NETWORK_BLOCKS = ("arch", "keypoint_regressor")
NETWORK_KEYS = ("keypoint_regressor_upsample",)


def check_optimizer_settings(config: Dict[str, Any], path) -> None:
    """Raise a one-line :class:`ConfigError` for an optimizer or scheduler argument of
    the wrong type or range (:data:`ARGUMENT_CHECKS`)."""
    check_table(config, path, ARGUMENT_CHECKS)


def parameter_groups(model: nn.Module, bias_lr=None) -> List[Dict[str, Any]]:
    """Trainable parameters; with ``bias_lr`` the conv biases form a group with that lr."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if bias_lr is None:
        return [{"params": trainable}]
    bias_ids = {id(m.bias) for m in model.modules()
                if isinstance(m, nn.Conv2d) and m.bias is not None}
    biases = [p for p in trainable if id(p) in bias_ids]
    others = [p for p in trainable if id(p) not in bias_ids]
    return [{"params": biases, "lr": bias_lr}, {"params": others}]


def build_optimizer(config: Dict[str, Any], model: nn.Module, path) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.get("bias_lr"))
    return build_block(OPTIMIZERS, config, "optimizer", path, params=groups)


def build_scheduler(config: Dict[str, Any], optimizer, path):
    if "lr_scheduler" not in config:
        return None
    return build_block(SCHEDULERS, config, "lr_scheduler", path, optimizer=optimizer)


def _flat_settings(config: Dict[str, Any], keys, blocks) -> Dict[str, Any]:
    """Flat ``key -> value`` of the plain ``keys`` and of each ``{"type", "args"}`` block
    of ``blocks`` (``block.type``, ``block.args.<name>``; None where absent)."""
    settings = {key: config.get(key) for key in keys}
    for block in blocks:
        spec = config.get(block) or {}
        settings[f"{block}.type"] = spec.get("type")
        for key, value in (spec.get("args") or {}).items():
            settings[f"{block}.args.{key}"] = value
    return settings


def _differences(before: Dict[str, Any], after: Dict[str, Any]) -> List[Tuple[str, Any, Any]]:
    """(key, old, new) of every key whose value differs, sorted by key."""
    return [(key, before.get(key), after.get(key)) for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)]


def _optimizer_settings(config: Dict[str, Any]) -> Dict[str, Any]:
    """Flat ``key -> value`` of the settings that shape the optimizer and its schedule."""
    return _flat_settings(config, ("bias_lr",), ("optimizer", "lr_scheduler"))


def refuse_network_changes(saved: Optional[Dict[str, Any]], config: Dict[str, Any],
                           checkpoint) -> None:
    """A resumed run continues the network of the checkpoint's run (config ``saved``):
    raise one :class:`ConfigError` naming every key of ``arch``, ``keypoint_regressor``
    or ``keypoint_regressor_upsample`` that ``config`` changes, even when the weights
    would still load (e.g. ``arch.args.do_maxpool``); a new run with ``finetune_from``
    starts another network from those weights."""
    if not isinstance(saved, dict):
        return
    changes = _differences(_flat_settings(saved, NETWORK_KEYS, NETWORK_BLOCKS),
                           _flat_settings(config, NETWORK_KEYS, NETWORK_BLOCKS))
    if changes:
        listed = "; ".join(f"{key} {old!r} -> {new!r}" for key, old, new in changes)
        raise ConfigError(f"--resume {checkpoint}: the network differs from the checkpoint's "
                          f"run ({listed}); a resumed run continues the same network: keep "
                          f"the checkpoint's settings, or start a new run from its weights "
                          f"with \"finetune_from\": \"{checkpoint}\"")


def resume_changes(saved: Optional[Dict[str, Any]], config: Dict[str, Any],
                   checkpoint) -> List[str]:
    """The optimizer and scheduler settings of ``config`` that differ from those of the
    checkpoint's config ``saved``, as ``"key old -> new"``; a resumed run applies them
    (:func:`apply_changed_settings`). Raises :class:`ConfigError` for a change the loaded
    optimizer state cannot take (another optimizer or scheduler type, ``amsgrad``,
    ``bias_lr`` added or removed: other parameter groups)."""
    if not isinstance(saved, dict):
        return []
    changes = []
    for key, old, new in _differences(_optimizer_settings(saved), _optimizer_settings(config)):
        if key in STATE_CHANGING or (key == "bias_lr" and None in (old, new)):
            raise ConfigError(f"--resume {checkpoint}: {key} was {old!r} in the checkpoint's run "
                              f"and is {new!r} now; its optimizer state cannot carry over: keep "
                              f"{old!r}, or start a new run with "
                              f"\"finetune_from\": \"{checkpoint}\"")
        changes.append(f"{key} {old!r} -> {new!r}")
    return changes


def group_settings(optimizer: torch.optim.Optimizer) -> List[Dict[str, Any]]:
    """The hyperparameters of each parameter group (everything but the parameters)."""
    return [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]


def apply_changed_settings(optimizer: torch.optim.Optimizer, scheduler, fresh: List[Dict[str, Any]],
                           steps: int, config: Dict[str, Any], path) -> List[float]:
    """After the checkpoint's optimizer state was loaded: give each parameter group the
    hyperparameters ``fresh`` of an optimizer built from ``config``, and the learning
    rate (and scheduler state) that a run with ``config``'s schedule has after ``steps``
    scheduler steps, found by stepping that schedule on a stand-in optimizer. Returns
    the learning rates now in force."""
    for group, settings in zip(optimizer.param_groups, fresh):
        group.update({k: v for k, v in settings.items() if k not in ("lr", "initial_lr")})
    if scheduler is None:
        for group, settings in zip(optimizer.param_groups, fresh):
            group["lr"] = settings["lr"]
        return [group["lr"] for group in optimizer.param_groups]
    stand_in = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": settings["initial_lr"]}
                                for settings in fresh])
    schedule = build_scheduler(config, stand_in, path)
    for _ in range(steps):
        stand_in.step()  # no gradients: nothing moves; keeps the call order torch expects
        schedule.step()
    scheduler.load_state_dict(schedule.state_dict())
    for group, stepped in zip(optimizer.param_groups, stand_in.param_groups):
        group["lr"], group["initial_lr"] = stepped["lr"], stepped["initial_lr"]
    return [group["lr"] for group in optimizer.param_groups]
