"""The embedding-learning task: from a resolved config to a trained embedding and its
matching evaluation (SPEC sections 2-4, 6, 7).

``prepare_embedding`` builds everything before the run folder exists (network, datasets,
the method with its views and loss, loaders, optimizer); ``train_embedding`` creates the
run folder, trains (resuming if asked) and ends with the matching evaluation on the
config's dataset.
"""
import logging

import torch

from data_loader.loaders import make_loader
from trainer.builders import build_dataset, build_model, build_warper, resolve_loss
from trainer.embedding_trainer import EmbeddingTrainer
from trainer.matching_run import build_matching_dataset, run_matching
from trainer.method import METHODS, MethodContext
from trainer.run_setup import (VALID_BATCH, PreparedRun, check_batch_size, data_workers,
                               finetune, log_splits, pipeline_geometry, trainer_arguments,
                               train_prepared, training_network)
from utils.config import build_block
from utils.distributed import SINGLE_PROCESS, ProcessGroup
from utils.logging_setup import hold_run_log

_logger = logging.getLogger(__name__)


def prepare_embedding(config, config_path, args, device, seed: int,
                      finetune_checkpoint=None, group: ProcessGroup = SINGLE_PROCESS
                      ) -> PreparedRun:
    """Seed, then build the embedding run's network (``finetune_checkpoint``: see
    :func:`finetune`), datasets, loaders and pipelines, and the split the matching
    evaluation will read (``trainer.matching_run.build_matching_dataset``, which refuses
    one of fewer than two images) when the dataset has keypoints."""
    hold_run_log()
    torch.manual_seed(seed)
    network = build_model(config, config_path).to(device)
    finetune(network, config, args, device, finetune_checkpoint)
    trained_network = training_network(network, config, device, group)
    train_set = build_dataset(config, config_path, train=True)
    valid_set = build_dataset(config, config_path, train=False)
    check_batch_size(config, config_path, train_set)
    log_splits(config, train_set, valid_set)
    matching_data = build_matching_dataset(config, config_path) if train_set.has_keypoints \
        else None
    context = MethodContext(train_set=train_set, valid_set=valid_set,
                            **pipeline_geometry(config),
                            warper=build_warper(config, config_path) if "warper" in config
                            else None, loss_fn=resolve_loss(config, config_path),
                            loss_args=config["loss_args"])
    method = build_block(METHODS, config, "method", config_path, context=context)
    workers = data_workers(config, args)
    loader_generator = torch.Generator().manual_seed(seed)
    trainer_args, run_values = trainer_arguments(config, config_path, args, device,
                                                 trained_network, seed, loader_generator, group)
    trainer_args.update(
        method=method, train_loader=make_loader(train_set, config["batch_size"], True, device,
                                                workers, loader_generator, group, seed),
        valid_loader=make_loader(valid_set, VALID_BATCH, False, device, workers))
    return PreparedRun(trainer_args, run_values, network, train_set, valid_set, matching_data)


def train_embedding(config, config_path, args, device, seed: int, state,
                    finetune_checkpoint, provenance=None,
                    group: ProcessGroup = SINGLE_PROCESS) -> dict:
    """An embedding run of the resolved ``config``; ends with the matching evaluation on
    the config's dataset (its result, or {} for a dataset without keypoints, and in the
    ``torchrun`` processes other than rank 0, which evaluates once).
    ``provenance``: the ``utils.provenance`` entry for ``provenance.json``."""
    prepared = prepare_embedding(config, config_path, args, device, seed, finetune_checkpoint,
                                 group)
    trainer, _ = train_prepared(prepared, EmbeddingTrainer, config, config_path, args, device,
                                seed, state, provenance)
    if not group.is_main:
        return {}
    if prepared.matching_data is None:
        _logger.info("%s has no keypoint annotations: no matching evaluation; run "
                     "test_matching.py --resume %s --eval_data <an annotated dataset type>",
                     config["dataset"]["type"], trainer.last_checkpoint)
        return {}
    return run_matching(prepared.network, config, config_path, trainer.last_checkpoint, device,
                        num_workers=data_workers(config, args), vis=args.vis,
                        data=prepared.matching_data)
