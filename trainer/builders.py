"""Everything a run needs, built from a config dict (the one place that reads configs).

Each ``resolve_*`` looks a name up and checks its arguments without building anything
heavy or reading data (used by ``--dry-run``); each ``build_*`` constructs.
"""
import inspect
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch
from torch import nn

import data_loader  # noqa: F401  (registers the datasets and warpers)
import model  # noqa: F401  (registers networks and losses)
from data_loader.registry import DATASETS, WARPERS
from model.frozen_embedding import keypoint_regression_model
from model.registry import KEYPOINT_REGRESSORS, LOSSES, METRICS, NETWORKS
from trainer.optim import build_optimizer, build_scheduler
from utils import keypoint_visualization  # noqa: F401  (registers keypoints_intermediate)
from utils.checkpoint import load_weights_into
from utils.checkpoint_search import find_checkpoint
from utils.config import build_block, check_arguments, resolve_block
from utils.registry import ConfigError, Registry
from utils.visualization import VISUALIZATIONS

_logger = logging.getLogger(__name__)
DATASET_RESERVED = ("train",)


def _named(registry: Registry, name: str, key: str, path) -> Callable:
    try:
        return registry.get(name)
    except ConfigError as err:
        raise ConfigError(f"{path}: {key}: {err}") from None


def resolve_loss(config: Dict[str, Any], path) -> Callable:
    loss_fn = _named(LOSSES, config["loss"], "loss", path)
    check_arguments(loss_fn, config.get("loss_args", {}), "loss", path,
                    reserved=("feats", "meta", "outputs"))
    return loss_fn


def resolve_metrics(config: Dict[str, Any], path) -> List[Callable]:
    return [_named(METRICS, name, "metrics", path) for name in config.get("metrics", [])]


def resolve_visualizations(config: Dict[str, Any], path) -> List[Callable]:
    return [_named(VISUALIZATIONS, name, "visualizations", path)
            for name in config.get("visualizations", [])]


def resolve_dataset(config: Dict[str, Any], path) -> Callable:
    return resolve_block(DATASETS, config, "dataset", path, reserved=DATASET_RESERVED)


def build_dataset(config: Dict[str, Any], path, train: bool, **overrides):
    """The config's dataset; ``overrides`` replace args the constructor accepts."""
    constructor = resolve_dataset(config, path)
    accepted = inspect.signature(constructor).parameters
    args = dict(config["dataset"].get("args", {}))
    args.update({k: v for k, v in overrides.items() if k in accepted})
    return constructor(train=train, **args)


def build_warper(config: Dict[str, Any], path):
    if "warper" not in config:
        raise ConfigError(f"{path}: embedding training needs a 'warper' block, e.g. "
                          f"{{\"type\": \"Warper\", \"args\": {{}}}}")
    return build_block(WARPERS, config, "warper", path)


def descriptor_dimension(config: Dict[str, Any], path) -> int:
    """Channels of the embedding: ``arch.args.num_output_channels`` or its default."""
    constructor = resolve_block(NETWORKS, config, "arch", path)
    parameter = inspect.signature(constructor).parameters.get("num_output_channels")
    default = None if parameter is None or parameter.default is inspect.Parameter.empty \
        else parameter.default
    channels = config["arch"].get("args", {}).get("num_output_channels", default)
    if channels is None:
        raise ConfigError(f"{path}: keypoint_regressor needs arch.args.num_output_channels")
    return int(channels)


def build_model(config: Dict[str, Any], path) -> nn.Module:
    """The embedding network; with a ``keypoint_regressor`` block, the regression model
    ``Sequential(FrozenEmbedding(network), [upsample], regressor)``."""
    network = build_block(NETWORKS, config, "arch", path)
    if "keypoint_regressor" in config:
        regressor = build_block(KEYPOINT_REGRESSORS, config, "keypoint_regressor", path,
                                descriptor_dimension=descriptor_dimension(config, path))
        return keypoint_regression_model(network, regressor,
                                         bool(config.get("keypoint_regressor_upsample", False)))
    return network


def load_finetune_weights(network: nn.Module, checkpoint_path, device) -> None:
    """Initialise ``network`` from a checkpoint (``finetune_from``): ours or a released
    one, an embedding or a regressor's (its embedding part is taken)."""
    load_weights_into(network, checkpoint_path, device, source="finetune_from")
    _logger.info("initialised the embedding from %s", checkpoint_path)


def count_parameters(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


def missing_inputs(config: Dict[str, Any]) -> List[str]:
    """Data roots and checkpoints named by the config that are absent on this machine."""
    missing = []
    root = config["dataset"].get("args", {}).get("root")
    if root is not None and not Path(root).exists() and config["dataset"]["type"] != "SyntheticFaces":
        remedy = getattr(DATASETS.get(config["dataset"]["type"]), "missing_data_remedy", None)
        missing.append(f"dataset root {root} "
                       f"({remedy() if remedy else 'fetch it with misc/sync_datasets.py'})")
    finetune = config.get("finetune_from")
    if finetune and find_checkpoint(finetune) is None:
        missing.append(f"finetune_from checkpoint {finetune}")
    return missing


def dry_run(config: Dict[str, Any], path, device: torch.device) -> Dict[str, Any]:
    """Resolve every name and build model, loss, optimizer, scheduler and warper, reading
    no data; return a summary."""
    network = build_model(config, path).to(device)
    resolve_loss(config, path)
    resolve_metrics(config, path)
    resolve_visualizations(config, path)
    resolve_dataset(config, path)
    optimizer = build_optimizer(config, network, path)
    build_scheduler(config, optimizer, path)
    if "warper" in config:
        build_warper(config, path)
    arch = config["arch"]["type"]
    if "keypoint_regressor" in config:
        arch = f"{config['keypoint_regressor']['type']} on a frozen {arch}"
    return {"arch": arch, "parameters": count_parameters(network),
            "missing": missing_inputs(config)}
