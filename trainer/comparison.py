"""Comparing landmark methods on one protocol (``compare.py``).

Every checkpoint of every entry (any method: its stored config says the network) gets
the two evaluations of the project, with the commands' own code:

- the matching evaluation of its embedding (``test_matching.py``'s
  ``trainer.matching_run.match_evaluation_run``; SPEC section 6, or SPEC-contrastive
  section 5 with the contrastive protocol), written as ``<label>/<k>/matching.json``;
- a landmark regressor trained on its frozen embedding (``train.py``'s
  ``trainer.regression_task.train_keypoint_regressor``) with one regressor config whose
  ``arch`` block is the checkpoint's and whose ``finetune_from`` is the checkpoint; its run
  folder (``keypoints.json``, the error curve) is ``<label>/<k>/models/regressor/<run>``.

An ``untrained:`` entry is a seeded untrained network of a config (the random
initialisation baseline), written as ``<label>/<k>/untrained-seed<S>.pth`` in the
project's checkpoint format and treated like any checkpoint. ``trainer.comparison_table``
turns the figures into the table. Every entry is checked (syntax, checkpoints, their
configs, the regressor config with their networks) before anything trains.
"""
import argparse
import copy
import dataclasses
import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from trainer.builders import build_model, check_run_config
from trainer.matching import DVE_PROTOCOL, MatchingProtocol
from trainer.matching_run import DEFAULT_EVAL_DATA, evaluation_reason, match_evaluation_run
from trainer.regression_task import train_keypoint_regressor
from trainer.run_config import (EvaluationRun, resolve_defaults, resolve_evaluation,
                                resolve_seeds)
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.checkpoint_search import require_checkpoint
from utils.config import apply_overrides, load_config
from utils.config_values import check_values
from utils.logging_setup import close_run_log
from utils.registry import ConfigError

_logger = logging.getLogger(__name__)
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
UNTRAINED = "untrained:"
ENTRY_FORMS = "LABEL=CKPT[,CKPT...] or LABEL=untrained:CONFIG.json@SEED[,SEED...]"
REGRESSOR_NAME = "regressor"  # the experiment folder of each regressor run
# keys compare.py sets itself in each regressor config
SET_BY_COMPARISON = ("arch", "finetune_from", "name", "trainer.save_dir", "trainer.log_dir")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One row of the comparison: a method's checkpoints (its seeds).

    label: the row's name and its folder in the output folder.
    checkpoints: what designates each trained checkpoint (a file, a folder of runs, a
        glob or a released model's name: ``utils.checkpoint_search``); empty for an
        untrained entry.
    untrained_config: the config of a seeded untrained network, or None.
    seeds: the initialisation seeds of ``untrained_config``.
    """
    label: str
    checkpoints: Tuple[str, ...] = ()
    untrained_config: Optional[str] = None
    seeds: Tuple[int, ...] = ()


def _items(text: str, spec: str, what: str) -> List[str]:
    items = [item.strip() for item in spec.split(",")]
    if not all(items):
        raise ConfigError(f"--entry {text}: an empty {what} in the list; expected {ENTRY_FORMS}")
    if len(set(items)) != len(items):
        raise ConfigError(f"--entry {text}: a {what} is listed twice; each counts once in the "
                          f"mean and standard deviation")
    return items


def parse_entry(text: str) -> Entry:
    """``LABEL=CKPT[,CKPT...]`` or ``LABEL=untrained:CONFIG.json@SEED[,SEED...]`` -> an
    :class:`Entry`. Raises a one-line ``ConfigError`` naming the entry and the form."""
    label, separator, spec = text.partition("=")
    if not separator or not spec.strip():
        raise ConfigError(f"--entry {text}: expected {ENTRY_FORMS}")
    if not LABEL.fullmatch(label):
        raise ConfigError(f"--entry {text}: the label '{label}' names a folder of the output: "
                          f"use letters, digits and _ . + - (starting with a letter or digit)")
    if not spec.startswith(UNTRAINED):
        return Entry(label, checkpoints=tuple(_items(text, spec, "checkpoint")))
    config, at, seeds = spec[len(UNTRAINED):].rpartition("@")
    if not at or not config:
        raise ConfigError(f"--entry {text}: expected untrained:CONFIG.json@SEED[,SEED...], "
                          f"e.g. {label}=untrained:configs/celeba/smallnet-16d-dve.json@0,1")
    try:
        numbers = tuple(int(seed) for seed in _items(text, seeds, "seed"))
    except ValueError:
        raise ConfigError(f"--entry {text}: the seeds after '@' must be integers, e.g. "
                          f"@0,1,2") from None
    return Entry(label, untrained_config=config, seeds=numbers)


def parse_entries(texts: Sequence[str]) -> List[Entry]:
    """:func:`parse_entry` of each ``--entry``; at least one, labels unique."""
    if not texts:
        raise ConfigError(f"give at least one --entry {ENTRY_FORMS}")
    entries = [parse_entry(text) for text in texts]
    labels = [entry.label for entry in entries]
    for label in labels:
        if labels.count(label) > 1:
            raise ConfigError(f"--entry: the label '{label}' is given twice; one --entry per "
                              f"method, its checkpoints comma-separated")
    return entries


def scoped_overrides(texts: Sequence[str], labels: Sequence[str],
                     option: str = "--matching_set") -> Dict[str, List[str]]:
    """``option [LABEL:]KEY.PATH=VALUE`` -> {label: its overrides, in order}; an override
    without a label applies to every entry. Raises ``ConfigError`` for an unknown label."""
    scoped = {label: [] for label in labels}
    for text in texts:
        key, separator, value = text.partition("=")
        label, colon, key = key.rpartition(":") if ":" in key else ("", "", key)
        if colon and label not in scoped:
            raise ConfigError(f"{option} {text}: no --entry is labelled '{label}'; "
                              f"labels: {', '.join(labels)}")
        for target in ([label] if colon else labels):
            scoped[target].append(f"{key}{separator}{value}")
    return scoped


@dataclasses.dataclass(frozen=True)
class ComparisonSettings:
    """What ``compare.py`` was asked for.

    regressor_config: the landmark regressor's config (its ``arch`` and ``finetune_from``
        are replaced per checkpoint).
    output_dir: where everything goes.
    device: where both evaluations run.
    protocol: the matching protocol (``trainer.matching``).
    eval_data: the dataset type matched on (None: ``test_matching.py``'s default).
    regressor_overrides: {label: ``--set`` overrides of the regressor config for its
        checkpoints, applied last (e.g. ``arch.args.hypercolumn_layers=1``: the same
        checkpoints' last layer alone)}.
    matching_overrides: {label: ``--set`` style overrides of its checkpoints' configs for
        the matching evaluation, e.g. the contrastive method's 96-px hypercolumn}.
    disable_workers: load the regressor's data in the main process.
    provenance: the ``utils.provenance`` entry of the command, for each regressor run.
    """
    regressor_config: Path
    output_dir: Path
    device: torch.device
    protocol: MatchingProtocol = DVE_PROTOCOL
    eval_data: Optional[str] = None
    regressor_overrides: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
    matching_overrides: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
    disable_workers: bool = False
    provenance: Optional[Dict[str, Any]] = None


@dataclasses.dataclass(frozen=True)
class PlannedCheckpoint:
    """One checkpoint to evaluate: its entry's ``label``, its 1-based ``index`` there, the
    ``checkpoint`` file and its ``folder`` (``<output_dir>/<label>/<index>``)."""
    label: str
    index: int
    checkpoint: Path
    folder: Path


def write_untrained_checkpoint(config_file: str, seed: int, path: Path, label: str) -> Path:
    """The network of ``config_file`` built after ``torch.manual_seed(seed)`` on the CPU
    (as ``test_matching.py --seed`` builds it), saved at ``path`` as a checkpoint of this
    project (``utils.checkpoint.save_checkpoint``: ``state_dict``, epoch 0, the resolved
    config with ``seed``). Raises ``ConfigError`` for a regressor config."""
    run = resolve_evaluation(config_file, None, [], torch.device("cpu"),
                             source=f"--entry {label}")
    if "keypoint_regressor" in run.config:
        raise ConfigError(f"--entry {label}: {config_file} is a landmark regressor's config; "
                          f"untrained: takes an embedding config (the network to initialise)")
    config = {**run.config, "seed": seed}
    torch.manual_seed(seed)
    network = build_model(config, run.path)
    return save_checkpoint({"arch": type(network).__name__, "epoch": 0,
                            "state_dict": network.state_dict(), "config": config,
                            "config_path": str(run.path)}, path)


def stored_config(checkpoint: Path, label: str, device: torch.device) -> EvaluationRun:
    """The resolved ``EvaluationRun`` of ``checkpoint`` (read onto ``device``) with its own
    stored config; a checkpoint without one (a bare state dict, a released one without
    its run's config.json) is a one-line ``CheckpointError`` naming the entry."""
    source = f"--entry {label}"
    try:
        return resolve_evaluation(None, str(checkpoint), [], device, source=source)
    except CheckpointError:
        state = load_checkpoint(checkpoint)
        if state.get("bare") or not isinstance(state.get("config"), dict):
            raise CheckpointError(f"{source}: {checkpoint} stores no config, and compare.py "
                                  f"reads each network from its checkpoint's config; evaluate "
                                  f"it with test_matching.py --config CONFIG.json, or resave "
                                  f"it with a 'config' entry") from None
        raise


def with_overrides(run: EvaluationRun, overrides: Sequence[str]) -> EvaluationRun:
    """``run`` with ``--set`` style ``overrides`` applied to its config, checked and
    resolved as ``resolve_evaluation`` does (the same run when there are none)."""
    if not overrides:
        return run
    config = apply_overrides(run.config, overrides, run.path)
    check_values(config, run.path)
    return dataclasses.replace(run, config=resolve_defaults(config, run.path))


def regressor_run_config(settings: ComparisonSettings, label: str, checkpoint: Path,
                         embedding_config: Dict[str, Any], folder: Path):
    """The regressor config for ``checkpoint`` and its summary (``check_run_config``):
    ``settings.regressor_config`` with the ``arch`` block of ``embedding_config`` (the
    checkpoint's), ``finetune_from`` the checkpoint, ``name`` ``regressor`` and its save
    and log folders ``folder``, then the ``settings.regressor_overrides`` of entry
    ``label``; resolved with the
    seed train.py would use. -> (config, path, summary, seed)."""
    path = Path(settings.regressor_config)
    config = load_config(path)
    if "keypoint_regressor" not in config:
        raise ConfigError(f"--regressor_config {path}: no 'keypoint_regressor' block; give a "
                          f"landmark regressor's config (e.g. configs/mafl-keypoints/...)")
    overrides = settings.regressor_overrides.get(label, [])
    for text in overrides:
        if text.partition("=")[0].strip() in SET_BY_COMPARISON:
            raise ConfigError(f"--set {text}: compare.py sets {', '.join(SET_BY_COMPARISON)} "
                              f"itself for each checkpoint; change the other keys")
    config["arch"] = copy.deepcopy(embedding_config["arch"])
    config["finetune_from"] = str(checkpoint)
    config["name"] = REGRESSOR_NAME
    config["trainer"] = {**config["trainer"], "save_dir": str(folder), "log_dir": str(folder)}
    config = apply_overrides(config, overrides, path)
    summary = check_run_config(config, path)
    config = resolve_defaults(config, path)
    (seed,) = resolve_seeds(None, config, path)
    return {**config, "seed": seed}, path, summary, seed


def plan_comparison(entries: Sequence[Entry], settings: ComparisonSettings
                    ) -> List[PlannedCheckpoint]:
    """Every checkpoint to evaluate, checked before anything trains: each exists and
    stores its config, the matching overrides fit its network, and the regressor config
    runs with its network and weights. Untrained entries' checkpoints are written here."""
    planned = []
    for entry in entries:
        folder = Path(settings.output_dir) / entry.label
        designations = [(name, None) for name in entry.checkpoints] or \
            [(entry.untrained_config, seed) for seed in entry.seeds]
        for index, (name, seed) in enumerate(designations, start=1):
            if seed is None:
                checkpoint = require_checkpoint(name, f"--entry {entry.label}")
            else:
                checkpoint = write_untrained_checkpoint(
                    name, seed, folder / str(index) / f"untrained-seed{seed}.pth", entry.label)
            run = stored_config(checkpoint, entry.label, torch.device("cpu"))
            regressor_run_config(settings, entry.label, checkpoint, run.config,
                                 folder / str(index))
            matched = with_overrides(run, settings.matching_overrides.get(entry.label, []))
            build_model(matched.config, matched.path)  # the overrides fit the network
            planned.append(PlannedCheckpoint(entry.label, index, checkpoint,
                                             folder / str(index)))
    return planned


def train_regressor(settings: ComparisonSettings, plan: PlannedCheckpoint,
                    embedding_config: Dict[str, Any]) -> Tuple[Dict[str, float], Path]:
    """Train the regressor of :func:`regressor_run_config` on ``plan``'s checkpoint as
    ``train.py`` does; -> (its ``keypoints.json`` summary: ``inter_ocular_error`` in %
    of the inter-ocular distance, ``auc@8``, ``auc@10``, ``failure_rate@10``, ...; its
    run folder)."""
    config, path, summary, seed = regressor_run_config(settings, plan.label, plan.checkpoint,
                                                       embedding_config, plan.folder)
    runs = plan.folder / "models" / REGRESSOR_NAME
    before = set(runs.iterdir()) if runs.is_dir() else set()
    args = argparse.Namespace(resume=None, disable_workers=settings.disable_workers,
                              train_single_epoch=False, mini_train=False)
    try:
        report = train_keypoint_regressor(config, path, args, settings.device, seed, None,
                                          summary["finetune_checkpoint"], settings.provenance)
    finally:
        close_run_log()
    (run_folder,) = set(runs.iterdir()) - before
    return report, run_folder


def evaluate_checkpoint(settings: ComparisonSettings, plan: PlannedCheckpoint) -> Dict[str, Any]:
    """Both evaluations of one planned checkpoint -> its record for ``comparison.json``:
    ``checkpoint``, ``matching`` (``matching.json``: pixels of the 70-px frame),
    ``regression`` (``keypoints.json``: % of the inter-ocular distance, AUC, failure
    rate) and the files they came from."""
    run = stored_config(plan.checkpoint, plan.label, settings.device)
    matching = match_evaluation_run(
        with_overrides(run, settings.matching_overrides.get(plan.label, [])), settings.device,
        settings.eval_data or DEFAULT_EVAL_DATA, plan.folder,
        evaluation_reason(settings.eval_data), settings.protocol, source=f"--entry {plan.label}")
    regression, run_folder = train_regressor(settings, plan, run.config)
    return {"label": plan.label, "checkpoint": str(plan.checkpoint),
            "matching": matching, "matching_json": str(plan.folder / "matching.json"),
            "regression": regression, "regressor_run": str(run_folder),
            "keypoints_json": str(run_folder / "keypoints.json")}


def run_comparison(entries: Sequence[Entry], settings: ComparisonSettings
                   ) -> List[Dict[str, Any]]:
    """:func:`plan_comparison`, then :func:`evaluate_checkpoint` of each planned
    checkpoint, in entry order; -> their records."""
    planned = plan_comparison(entries, settings)
    _logger.info("comparing %d checkpoints of %d entries (%s matching protocol)", len(planned),
                 len(entries), settings.protocol.name)
    records = []
    for plan in planned:
        _logger.info("--entry %s, checkpoint %d: %s", plan.label, plan.index, plan.checkpoint)
        records.append(evaluate_checkpoint(settings, plan))
    return records
