"""Everything a run needs, built from a config dict (the one place that reads configs).

Each ``resolve_*`` looks a name up and checks its arguments without building anything
heavy or reading data; each ``build_*`` constructs. ``check_run_config`` is the one
validation of a config, run by ``--dry-run`` and before every real run.
"""
import inspect
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from base.optim import build_optimizer, build_scheduler, check_optimizer_settings
from data_loader.image_cache import DEFAULT_CACHE_DIR, cached
from data_loader.registry import DATASETS, WARPERS
from model.frozen_embedding import keypoint_regression_model
from model.registry import KEYPOINT_REGRESSORS, LOSSES, METRICS, NETWORKS
from trainer.embedding_trainer import EmbeddingTrainer
from trainer.keypoint_trainer import KeypointTrainer
from trainer.method import DEFAULT_METHOD, METHODS
from utils.checkpoint import load_checkpoint, load_weights_into, select_state_dict
from utils.checkpoint_search import checkpoint_remedy, find_checkpoint
from utils.config import as_config_error, build_block, check_arguments, resolve_block
from utils.config_values import check_values, log_ignored_keys, parse_monitor
from utils.keypoint_visualization import KEYPOINT_VISUALIZATIONS
from utils.registry import ConfigError, Registry
from utils.visualization import EMBEDDING_VISUALIZATIONS

_logger = logging.getLogger(__name__)
DATASET_RESERVED = ("train",)


def _named(registry: Registry, name: str, key: str, path) -> Callable:
    try:
        return registry.get(name)
    except ConfigError as err:
        raise ConfigError(f"{path}: {key}: {err}") from None


def resolve_loss(config: Dict[str, Any], path) -> Optional[Callable]:
    """The config's ``loss`` with its ``loss_args`` checked; None for an embedding method
    with a loss of its own (``uses_config_loss`` False, e.g. ``MoCo``), which then needs
    no ``loss`` key. ``ConfigError`` when a needed ``loss`` is missing or unknown."""
    if "loss" not in config:
        method = config.get("method", {}).get("type", DEFAULT_METHOD)
        if "keypoint_regressor" in config or METHODS.get(method).uses_config_loss:
            raise ConfigError(f"{path}: missing required key 'loss'")
        return None
    loss_fn = _named(LOSSES, config["loss"], "loss", path)
    check_arguments(loss_fn, config.get("loss_args", {}), "loss_args", path,
                    reserved=("feats", "meta", "outputs"))
    return loss_fn


def resolve_metrics(config: Dict[str, Any], path) -> Dict[str, Callable]:
    """The config's ``metrics``: name as written (also a dotted plug-in name, under which
    it is logged and ``trainer.monitor`` names it) -> function."""
    return {name: _named(METRICS, name, "metrics", path) for name in config.get("metrics", [])}


def find_visualization(name: str, embedding: Registry = EMBEDDING_VISUALIZATIONS,
                       keypoint: Registry = KEYPOINT_VISUALIZATIONS) -> Tuple[Callable, bool]:
    """(function, whether it draws landmarks) of the visualization ``name``: an entry of
    ``keypoint`` (called with the regressor's outputs and ``keypoints=`` the ground truth)
    or of ``embedding`` (called with ``[descriptors]``); a module path
    ``package.module.name`` outside both is imported as an embedding visualization.

    Raises:
        ConfigError: one line naming ``name`` and the valid names of both registries.
    """
    if name in keypoint:
        return keypoint.get(name), True
    both = Registry(embedding.role, embedding.called_with,
                    {entry: registry.get(entry) for registry in (embedding, keypoint)
                     for entry in registry})
    return both.get(name), False


def _visualizations(config: Dict[str, Any], path, embedding: Registry,
                    keypoint: Registry) -> List[Tuple[Callable, bool]]:
    """``find_visualization`` of each name of ``visualizations``, in order; a landmark
    visualization needs a run with a ``keypoint_regressor``."""
    found = []
    for name in config.get("visualizations", []):
        try:
            function, draws_landmarks = find_visualization(name, embedding, keypoint)
        except ConfigError as err:
            raise ConfigError(f"{path}: visualizations: {err}") from None
        if draws_landmarks and "keypoint_regressor" not in config:
            raise ConfigError(
                f"{path}: visualizations: '{name}' draws a landmark regressor's predictions, "
                f"which an embedding run (no keypoint_regressor) has not; remove it or use "
                f"one of: {', '.join(embedding)}")
        found.append((function, draws_landmarks))
    return found


def resolve_visualizations(config: Dict[str, Any], path,
                           embedding: Registry = EMBEDDING_VISUALIZATIONS,
                           keypoint: Registry = KEYPOINT_VISUALIZATIONS) -> List[Callable]:
    """The embedding visualizations of ``visualizations`` (``(writer, images, outputs,
    tag, step)``), in order, after checking every name (:func:`find_visualization`)."""
    return [function for function, draws_landmarks
            in _visualizations(config, path, embedding, keypoint) if not draws_landmarks]


def resolve_keypoint_visualizations(config: Dict[str, Any], path,
                                    embedding: Registry = EMBEDDING_VISUALIZATIONS,
                                    keypoint: Registry = KEYPOINT_VISUALIZATIONS
                                    ) -> List[Callable]:
    """The landmark visualizations of ``visualizations`` (``(writer, images, (pred,
    intermediate), tag, step, keypoints=...)``), in order, for ``KeypointTrainer``."""
    return [function for function, draws_landmarks
            in _visualizations(config, path, embedding, keypoint) if draws_landmarks]


def resolve_dataset(config: Dict[str, Any], path) -> Callable:
    return resolve_block(DATASETS, config, "dataset", path, reserved=DATASET_RESERVED)


def build_dataset(config: Dict[str, Any], path, train: bool,
                  overrides: Optional[Dict[str, Any]] = None,
                  where_accepted: Optional[Dict[str, Any]] = None):
    """The config's dataset, ``train`` or evaluation split; with ``cache_images``, read
    from its image cache under ``cache_dir`` (``data_loader.image_cache``, built first
    when absent or stale).

    ``overrides`` replace config args (every dataset type takes them: a key the
    constructor lacks raises ``TypeError``, a programming error); ``where_accepted``
    replace args only for the types whose constructor takes them (e.g. ``val_split``,
    which only the CelebA types have)."""
    constructor = resolve_dataset(config, path)
    accepted = inspect.signature(constructor).parameters
    unknown = sorted(set(overrides or {}) - set(accepted))
    if unknown:
        raise TypeError(f"{constructor.__name__} takes no {', '.join(unknown)}")
    args = dict(config["dataset"].get("args", {}))
    args.update(overrides or {})
    args.update({k: v for k, v in (where_accepted or {}).items() if k in accepted})
    with as_config_error(path, f"dataset {config['dataset']['type']}"):
        dataset = constructor(train=train, **args)
    if not config.get("cache_images"):
        return dataset
    return cached(dataset, config["dataset"]["type"], args, train,
                  config.get("cache_dir", DEFAULT_CACHE_DIR), config["trainer"].get("num_workers"))


def dataset_geometry(config: Dict[str, Any], path) -> Dict[str, Optional[int]]:
    """``{"imwidth": ..., "crop": ...}`` of the config's dataset, pixels: the value in
    ``dataset.args``, else the constructor's default, else None (no default)."""
    parameters = inspect.signature(resolve_dataset(config, path)).parameters
    args = config["dataset"].get("args", {})
    sizes = {}
    for key in ("imwidth", "crop"):
        default = parameters[key].default if key in parameters else inspect.Parameter.empty
        sizes[key] = args.get(key, None if default is inspect.Parameter.empty else default)
    return sizes


def check_dataset_geometry(config: Dict[str, Any], path) -> None:
    """``imwidth`` must exceed twice ``crop`` (the constructor defaults fill in absent
    values), checked without reading data."""
    sizes = dataset_geometry(config, path)
    if None not in sizes.values() and sizes["imwidth"] <= 2 * sizes["crop"]:
        raise ConfigError(f"{path}: dataset.args.imwidth {sizes['imwidth']} must exceed twice "
                          f"dataset.args.crop {sizes['crop']}; lower the crop or raise imwidth")


def build_warper(config: Dict[str, Any], path):
    if "warper" not in config:
        raise ConfigError(f"{path}: embedding training needs a 'warper' block, e.g. "
                          f"{{\"type\": \"Warper\", \"args\": {{}}}}")
    return build_block(WARPERS, config, "warper", path)


def descriptor_dimension(network: nn.Module, config: Dict[str, Any], path) -> int:
    """Channels of the embedding ``network``'s descriptors: its ``num_output_channels``
    attribute (every registered network states it; ``ContrastResNet``: the hypercolumn's
    width). ``ConfigError`` naming ``arch`` for a network that does not."""
    channels = getattr(network, "num_output_channels", None)
    if channels is None:
        raise ConfigError(f"{path}: keypoint_regressor needs the descriptor channels of arch "
                          f"{config['arch']['type']}, which has no num_output_channels attribute")
    return int(channels)


def build_model(config: Dict[str, Any], path) -> nn.Module:
    """The embedding network; with a ``keypoint_regressor`` block, the regression model
    ``Sequential(FrozenEmbedding(network), [upsample], regressor)``."""
    network = build_block(NETWORKS, config, "arch", path)
    if "keypoint_regressor" in config:
        regressor = build_block(KEYPOINT_REGRESSORS, config, "keypoint_regressor", path,
                                descriptor_dimension=descriptor_dimension(network, config, path))
        return keypoint_regression_model(network, regressor,
                                         bool(config.get("keypoint_regressor_upsample", False)))
    return network


def embedding_part(built: nn.Module, config: Dict[str, Any]) -> nn.Module:
    """The embedding network of ``build_model``'s result ``built``: itself, or with a
    ``keypoint_regressor`` block the frozen embedding inside the regression model."""
    return built[0].wrapped_module if "keypoint_regressor" in config else built


def finetune_part(network: nn.Module, state: Dict[str, Any]) -> nn.Module:
    """The module that the ``finetune_from`` checkpoint ``state`` fills: the whole
    ``network`` when the checkpoint holds all of it (e.g. a ``ContrastProjector`` run),
    else, for a network that builds on a pretrained one, its ``finetune_target``
    (``ContrastProjector`` from a MoCo run: the frozen backbone)."""
    target = getattr(network, "finetune_target", None)
    if target is None:
        return network
    keys = network.state_dict().keys()
    _, view = select_state_dict(keys, state.get("state_dict") or {})
    return network if all(key in view for key in keys) else target


def load_finetune_weights(network: nn.Module, checkpoint_path, device,
                          state: Optional[Dict[str, Any]] = None) -> None:
    """Initialise ``network`` (its :func:`finetune_part`) from a checkpoint
    (``finetune_from``): ours or a released one, an embedding or a regressor's (its
    embedding part is taken); ``state``: the file as already read by
    ``utils.checkpoint.load_checkpoint``."""
    if state is None:
        state = load_checkpoint(checkpoint_path, map_location=device)
    load_weights_into(finetune_part(network, state), checkpoint_path, device,
                      source="finetune_from", state=state)
    _logger.info("initialised the embedding from %s", checkpoint_path)


def check_weights(config: Dict[str, Any], network: nn.Module, resume: Optional[str] = None,
                  resume_state: Optional[Dict[str, Any]] = None) -> Optional[Tuple[Path, Dict]]:
    """The weights a run starts from must fit ``network`` (``build_model``'s result, on
    the CPU): those of ``--resume`` (``resume_state``: the checkpoint ``resume`` as read)
    or else of ``finetune_from`` (its embedding part), when that checkpoint exists.

    Returns (the ``finetune_from`` file, its state as read), for the run to load from,
    or None. Raises ``utils.checkpoint.CheckpointError`` naming the parameters that do
    not fit and what the checkpoint looks like.
    """
    cpu = torch.device("cpu")
    if resume is not None:
        load_weights_into(network, resume, cpu, source="--resume", state=resume_state,
                          announce=False)
        return None
    checkpoint = find_checkpoint(config["finetune_from"]) if config.get("finetune_from") else None
    if checkpoint is None:  # none asked for, or absent: listed by missing_inputs
        return None
    state = load_checkpoint(checkpoint)
    embedding = embedding_part(network, config)
    load_weights_into(finetune_part(embedding, state), checkpoint, cpu,
                      source="finetune_from", state=state, announce=False)
    return checkpoint, state


def count_parameters(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


def missing_inputs(config: Dict[str, Any]) -> List[str]:
    """Data roots and checkpoints named by the config that are absent on this machine."""
    missing = []
    root = config["dataset"].get("args", {}).get("root")
    if root is not None and not Path(root).exists() and config["dataset"]["type"] != "SyntheticFaces":
        remedy = getattr(DATASETS.get(config["dataset"]["type"]), "missing_data_remedy", None)
        missing.append(f"dataset root {root} "
                       f"({remedy(root) if remedy else 'fetch it with misc/sync_datasets.py'})")
    finetune = config.get("finetune_from")
    if finetune and find_checkpoint(finetune) is None:
        missing.append(f"finetune_from checkpoint {finetune} ({checkpoint_remedy(finetune)})")
    return missing


def check_monitor(config: Dict[str, Any], path) -> None:
    """``trainer.monitor`` must name a key the run logs every epoch."""
    _, key = parse_monitor(config["trainer"].get("monitor", "off"), path)
    trainer_class = KeypointTrainer if "keypoint_regressor" in config else EmbeddingTrainer
    logged = trainer_class.logged_keys(config.get("metrics", []))
    if key is not None and key not in logged:
        raise ConfigError(f"{path}: trainer.monitor names '{key}', which this run does not log; "
                          f"use one of: {', '.join(sorted(logged))} (e.g. \"min val_loss\")")


def check_run_config(config: Dict[str, Any], path, resume: Optional[str] = None,
                     resume_state: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Every check of a config that reads no data, for ``--dry-run`` and every real run:
    values and ranges, names in the registries, arguments against the constructors;
    builds model, optimizer, scheduler and warper on the CPU and checks that the weights
    of ``--resume`` (``resume``, read as ``resume_state``) or ``finetune_from`` fit the
    model (:func:`check_weights`); logs the ignored keys.

    Returns a summary (``arch``, trainable ``parameters``, ``missing`` inputs, and
    ``finetune_checkpoint``: :func:`check_weights`' result). Raises :class:`ConfigError`
    naming the file and key of the first mistake, ``CheckpointError`` for weights that
    do not fit.
    """
    check_values(config, path)
    check_optimizer_settings(config, path)
    network = build_model(config, path)
    finetune_checkpoint = check_weights(config, network, resume, resume_state)
    resolve_loss(config, path)
    resolve_metrics(config, path)
    resolve_visualizations(config, path)
    check_dataset_geometry(config, path)
    optimizer = build_optimizer(config, network, path)
    build_scheduler(config, optimizer, path)
    if "method" in config:  # its constructor needs the data: checked by name and arguments
        resolve_block(METHODS, config, "method", path, reserved=("context",))
    warped_pairs = "keypoint_regressor" not in config and \
        config.get("method", {}).get("type", DEFAULT_METHOD) == DEFAULT_METHOD
    if "warper" in config or warped_pairs:  # warped pairs need one
        build_warper(config, path)
    check_monitor(config, path)
    if config.get("compile") and "keypoint_regressor" in config:
        raise ConfigError(f"{path}: compile applies to embedding runs (a regressor's frozen "
                          f"embedding and head run separately); remove it")
    log_ignored_keys(config, path)
    arch = config["arch"]["type"]
    if "keypoint_regressor" in config:
        arch = f"{config['keypoint_regressor']['type']} on a frozen {arch}"
    return {"arch": arch, "parameters": count_parameters(network),
            "missing": missing_inputs(config), "finetune_checkpoint": finetune_checkpoint}
