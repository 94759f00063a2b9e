"""The landmark-regression task: from a resolved config with a ``keypoint_regressor``
block to a regressor trained on the frozen embedding and its error report (SPEC sections
1, 3, 6, 7).

``prepare_regressor`` builds everything before the run folder exists (the regression
model around the ``finetune_from`` embedding, datasets, pipelines, loaders or the
descriptor cache, optimizer); ``train_keypoint_regressor`` creates the run folder, trains
and writes ``keypoints.json`` with the error curve of the last validation pass.
"""
import functools
import logging

import torch

from data_loader.keypoint_pipeline import build_keypoint_pipeline
from data_loader.loaders import make_loader
from data_loader.restricted_annos import RestrictedAnnotations
from trainer.builders import (build_dataset, build_model, build_warper, embedding_part,
                              resolve_keypoint_visualizations, resolve_loss, resolve_metrics)
from trainer.descriptor_cache import CACHE_BATCH, cache_splits
from trainer.keypoint_evaluation import evaluate_regressor
from trainer.keypoint_trainer import KeypointTrainer, index_loader
from trainer.run_setup import (VALID_BATCH, PreparedRun, check_batch_size, data_workers,
                               finetune, log_splits, pipeline_geometry,
                               trainer_arguments, train_prepared)
from utils.checkpoint import load_weights_into
from utils.config import as_config_error
from utils.distributed import SINGLE_PROCESS, ProcessGroup
from utils.error_curve import write_error_report
from utils.logging_setup import hold_run_log
from utils.registry import ConfigError

_logger = logging.getLogger(__name__)


def keypoint_pipeline(config, config_path, dataset, train: bool):
    """The ``KeypointPipeline`` of the resolved ``config`` (its ``warper`` if any, the
    ``dataset.args`` geometry, ``warp_val`` for evaluation) with ``dataset``'s eye indices;
    a dataset that cannot say them is a ``ConfigError`` naming ``dataset.args``."""
    warper = build_warper(config, config_path) if "warper" in config else None
    with as_config_error(config_path, "dataset.args"):
        return build_keypoint_pipeline(warper, **pipeline_geometry(config),
                                       eye_indices=dataset.eye_indices, train=train,
                                       warp_val=config["warp_val"])


def prepare_regressor(config, config_path, args, device, seed: int,
                      finetune_checkpoint=None, group: ProcessGroup = SINGLE_PROCESS
                      ) -> PreparedRun:
    """Seed, then build the regression run's model (frozen ``finetune_from`` embedding;
    ``finetune_checkpoint``: see :func:`finetune`), datasets, pipelines and loaders, and
    the descriptor cache when configured. Under ``torchrun`` (``group``) every process
    caches the whole split and trains on its shard."""
    hold_run_log()
    torch.manual_seed(seed)
    model = build_model(config, config_path).to(device)
    if config["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    finetune(embedding_part(model, config), config, args, device, finetune_checkpoint)
    train_set = build_dataset(config, config_path, train=True)
    valid_set = build_dataset(config, config_path, train=False)
    if config.get("restrict_annos"):
        with as_config_error(config_path, "restrict_annos"):
            train_set = RestrictedAnnotations(train_set, int(config["restrict_annos"]), seed)
    check_batch_size(config, config_path, train_set)
    log_splits(config, train_set, valid_set)
    train_pipeline = keypoint_pipeline(config, config_path, valid_set, train=True)
    valid_pipeline = keypoint_pipeline(config, config_path, valid_set, train=False)
    workers = data_workers(config, args)
    loader_generator = torch.Generator().manual_seed(seed)
    caches = (None, None)
    if config.get("cache_descriptors"):
        caches = cache_splits(model[0], make_loader(train_set, CACHE_BATCH, False, device, workers),
                              make_loader(valid_set, CACHE_BATCH, False, device, workers),
                              train_pipeline, valid_pipeline, device, seed, config_path)
        train_loader = index_loader(len(train_set), config["batch_size"], True, loader_generator,
                                    group, seed)
        valid_loader = index_loader(len(valid_set), VALID_BATCH, False)
    else:
        train_loader = make_loader(train_set, config["batch_size"], True, device, workers,
                                   loader_generator, group, seed)
        valid_loader = make_loader(valid_set, VALID_BATCH, False, device, workers)
    trainer_args, run_values = trainer_arguments(config, config_path, args, device, model,
                                                 seed, loader_generator, group)
    trainer_args.update(
        loss_fn=functools.partial(resolve_loss(config, config_path), **config["loss_args"]),
        metrics=resolve_metrics(config, config_path), train_loader=train_loader,
        valid_loader=valid_loader, train_pipeline=train_pipeline, valid_pipeline=valid_pipeline,
        train_cache=caches[0], valid_cache=caches[1],
        keypoint_visualizations=resolve_keypoint_visualizations(config, config_path))
    return PreparedRun(trainer_args, run_values, embedding_part(model, config), train_set,
                       valid_set)


def train_keypoint_regressor(config, config_path, args, device, seed: int, state,
                             finetune_checkpoint, provenance=None,
                             group: ProcessGroup = SINGLE_PROCESS) -> dict:
    """A landmark regressor on the frozen (``finetune_from``) embedding of the resolved
    ``config``; ends by writing ``keypoints.json`` and the error curve of the last
    validation pass (returns the report; {} in the ``torchrun`` processes other than
    rank 0). ``provenance``: see ``train_embedding``."""
    prepared = prepare_regressor(config, config_path, args, device, seed, finetune_checkpoint,
                                 group)
    trainer, model_dir = train_prepared(prepared, KeypointTrainer, config, config_path, args,
                                        device, seed, state, provenance)
    if not group.is_main:
        return {}
    if trainer.last_valid_errors is None:
        raise ConfigError(f"{config_path}: the validation split of {config['dataset']['type']} "
                          f"gave no batch, so there is no error to report; check dataset.args")
    return write_error_report(trainer.last_valid_errors.numpy(), model_dir,
                              title=model_dir.parent.name)


def evaluate_regressor_checkpoint(config, config_path, checkpoint, state, device,
                                  workers, output_dir) -> dict:
    """``test_keypoints.py``: the regressor of the resolved ``config`` with the weights of
    ``checkpoint`` (``state``: it as read) on the config's evaluation split (validation
    warps as ``warp_val`` says, seeded at 0), then ``keypoints.json`` and the error curve
    in ``output_dir`` (returns the report). Raises ``ConfigError`` for a config without a
    ``keypoint_regressor`` block."""
    if "keypoint_regressor" not in config:
        raise ConfigError(f"{config_path}: no 'keypoint_regressor' block; test_keypoints.py "
                          f"evaluates regressors (use test_matching.py for embeddings)")
    model = build_model(config, config_path).to(device)
    load_weights_into(model, checkpoint, device, source="--resume", state=state)
    dataset = build_dataset(config, config_path, train=False)
    pipeline = keypoint_pipeline(config, config_path, dataset, train=False)
    loader = make_loader(dataset, VALID_BATCH, False, device, workers)
    errors = evaluate_regressor(model, loader, pipeline, device)
    return write_error_report(errors.numpy(), output_dir, title=type(dataset).__name__)
