"""Preparing a training run: every part is built and its data read before the run folder
exists, so a start that fails (missing data, a setting a constructor refuses, a cache
that does not fit, a test split too small to match on) leaves nothing behind (SPEC
section 7 layout); a new run that stops before its first checkpoint removes the folders
it created (:func:`start_run`).

The global seed is set first, then the parts are built in a fixed order (network,
``finetune_from`` weights, datasets, warper, loaders, cache, optimizer), so a seed
gives the same initial weights and draws whatever the machine.
"""
import json
import logging
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import torch
from torch import nn

from data_loader.device_pipeline import build_pair_pipeline
from data_loader.keypoint_pipeline import build_keypoint_pipeline
from data_loader.loaders import make_loader
from data_loader.restricted_annos import RestrictedAnnotations
from trainer.builders import (build_dataset, build_model, build_warper, embedding_part,
                              load_finetune_weights, resolve_loss, resolve_metrics,
                              resolve_visualizations)
from trainer.descriptor_cache import CACHE_BATCH, cache_splits
from trainer.keypoint_trainer import index_loader
from trainer.matching_run import build_matching_dataset
from trainer.optim import build_optimizer, build_scheduler
from utils.checkpoint_search import require_checkpoint
from utils.config import as_config_error, run_directories
from utils.logging_setup import close_run_log, hold_run_log, setup_logging
from utils.provenance import record_start
from utils.registry import ConfigError

_logger = logging.getLogger(__name__)
MINI_TRAIN_BATCHES = 10
VALID_BATCH = 32


@dataclass
class PreparedRun:
    """What a trainer is made of, before the run folder exists.

    trainer_args: the trainer's keyword arguments, all but ``model_dir`` and ``writer``.
    network: the embedding (unwrapped), for the matching evaluation after training.
    train_set, valid_set: the datasets (``train_set`` possibly restricted).
    matching_set: the split the matching evaluation after training reads (an embedding
        run on a dataset with keypoints), already checked to hold a pair; else None.
    """
    trainer_args: Dict[str, Any]
    network: nn.Module
    train_set: Any
    valid_set: Any
    matching_set: Any = None


def parallelize(network: nn.Module, n_gpu: int, device: torch.device) -> nn.Module:
    """``n_gpu`` > 1 on CUDA: DataParallel over the first ``n_gpu`` devices (the loss then
    sees the whole gathered batch, so the DVE auxiliary is the next pair of the batch,
    not of the device shard as in the original)."""
    available = torch.cuda.device_count() if device.type == "cuda" else 0
    if n_gpu and n_gpu > 1 and available > 1:
        _logger.info("DataParallel over %d GPUs", min(n_gpu, available))
        return nn.DataParallel(network, device_ids=list(range(min(n_gpu, available))))
    return network


def data_workers(config, args) -> Optional[int]:
    """Loader workers: none with --disable_workers, else trainer.num_workers (None: default)."""
    return 0 if args.disable_workers else config["trainer"].get("num_workers")


def finetune(network: nn.Module, config, args, device,
             loaded: Optional[Tuple[Path, Dict[str, Any]]] = None) -> None:
    """Initialise ``network`` from ``finetune_from`` (a file, a folder of runs or a glob:
    ``utils.checkpoint_search``), unless resuming; ``loaded``: (the file, its state) as
    the config check read it (``trainer.builders.check_weights``), else it is read here."""
    if not config.get("finetune_from") or args.resume:
        return
    path, state = loaded if loaded is not None else (require_checkpoint(config["finetune_from"]),
                                                     None)
    load_finetune_weights(network, path, device, state=state)


def check_batch_size(config, config_path, train_set) -> None:
    """A training epoch drops the last partial batch: ``batch_size`` must not exceed the
    training images, or no batch would train."""
    if config["batch_size"] > len(train_set):
        raise ConfigError(f"{config_path}: batch_size {config['batch_size']} exceeds the "
                          f"{len(train_set)} training images of {config['dataset']['type']}, so "
                          f"no batch would train; lower batch_size")


def log_splits(config, train_set, valid_set) -> None:
    _logger.info("%s: %d training and %d validation images", config["dataset"]["type"],
                 len(train_set), len(valid_set))


def trainer_arguments(config, config_path, args, device, model, seed: int,
                      loader_generator) -> Dict[str, Any]:
    """The ``BaseTrainer`` arguments both trainers take (but ``model_dir`` and ``writer``):
    optimizer and scheduler of ``model``, loss, visualizations, run limits, generators."""
    optimizer = build_optimizer(config, model, config_path)
    return dict(
        model=model, optimizer=optimizer,
        lr_scheduler=build_scheduler(config, optimizer, config_path),
        config=config, config_path=str(config_path), device=device,
        max_epochs=1 if args.train_single_epoch else None,
        loss_fn=resolve_loss(config, config_path), loss_args=config.get("loss_args", {}),
        visualizations=resolve_visualizations(config, config_path),
        max_batches=MINI_TRAIN_BATCHES if args.mini_train else None,
        seed=seed, loader_generator=loader_generator)


def prepare_embedding(config, config_path, args, device, seed: int,
                      finetune_checkpoint=None) -> PreparedRun:
    """Seed, then build the embedding run's network (``finetune_checkpoint``: see
    :func:`finetune`), datasets, loaders and pipelines, and the split the matching
    evaluation will read (``trainer.matching_run.build_matching_dataset``, which refuses
    one of fewer than two images) when the dataset has keypoints."""
    hold_run_log()
    torch.manual_seed(seed)
    network = build_model(config, config_path).to(device)
    finetune(network, config, args, device, finetune_checkpoint)
    trained_network = parallelize(network, config.get("n_gpu", 1), device)
    train_set = build_dataset(config, config_path, train=True)
    valid_set = build_dataset(config, config_path, train=False)
    check_batch_size(config, config_path, train_set)
    log_splits(config, train_set, valid_set)
    matching_set = build_matching_dataset(config, config_path) if train_set.has_keypoints \
        else None
    warper = build_warper(config, config_path)
    workers = data_workers(config, args)
    loader_generator = torch.Generator().manual_seed(seed)
    trainer_args = dict(
        train_loader=make_loader(train_set, config["batch_size"], True, device, workers,
                                 loader_generator),
        valid_loader=make_loader(valid_set, VALID_BATCH, False, device, workers),
        train_pipeline=build_pair_pipeline(warper, train_set, train=True),
        valid_pipeline=build_pair_pipeline(warper, valid_set, train=False),
        **trainer_arguments(config, config_path, args, device, trained_network, seed,
                            loader_generator))
    return PreparedRun(trainer_args, network, train_set, valid_set, matching_set)


def prepare_regressor(config, config_path, args, device, seed: int,
                      finetune_checkpoint=None) -> PreparedRun:
    """Seed, then build the regression run's model (frozen ``finetune_from`` embedding;
    ``finetune_checkpoint``: see :func:`finetune`), datasets, pipelines and loaders, and
    the descriptor cache when configured."""
    hold_run_log()
    torch.manual_seed(seed)
    model = build_model(config, config_path).to(device)
    finetune(embedding_part(model, config), config, args, device, finetune_checkpoint)
    train_set = build_dataset(config, config_path, train=True)
    valid_set = build_dataset(config, config_path, train=False)
    if config.get("restrict_annos"):
        with as_config_error(config_path, "restrict_annos"):
            train_set = RestrictedAnnotations(train_set, int(config["restrict_annos"]), seed)
    check_batch_size(config, config_path, train_set)
    log_splits(config, train_set, valid_set)
    warper = build_warper(config, config_path) if "warper" in config else None
    with as_config_error(config_path, "dataset.args"):
        train_pipeline = build_keypoint_pipeline(warper, train_set, train=True)
        valid_pipeline = build_keypoint_pipeline(warper, valid_set, train=False,
                                                 warp_val=config.get("warp_val", True))
    workers = data_workers(config, args)
    loader_generator = torch.Generator().manual_seed(seed)
    caches = (None, None)
    if config.get("cache_descriptors"):
        caches = cache_splits(model[0], make_loader(train_set, CACHE_BATCH, False, device, workers),
                              make_loader(valid_set, CACHE_BATCH, False, device, workers),
                              train_pipeline, valid_pipeline, device, seed, config_path)
        train_loader = index_loader(len(train_set), config["batch_size"], True, loader_generator)
        valid_loader = index_loader(len(valid_set), VALID_BATCH, False)
    else:
        train_loader = make_loader(train_set, config["batch_size"], True, device, workers,
                                   loader_generator)
        valid_loader = make_loader(valid_set, VALID_BATCH, False, device, workers)
    trainer_args = dict(
        metrics=resolve_metrics(config, config_path), train_loader=train_loader,
        valid_loader=valid_loader, train_pipeline=train_pipeline, valid_pipeline=valid_pipeline,
        eye_indices=valid_set.eye_indices, train_cache=caches[0], valid_cache=caches[1],
        **trainer_arguments(config, config_path, args, device, model, seed, loader_generator))
    return PreparedRun(trainer_args, embedding_part(model, config), train_set, valid_set)


def topmost_missing(folder: Path) -> Path:
    """The highest folder of ``folder``'s chain of parents (itself included) that does not
    exist yet: what creating ``folder`` creates."""
    top = folder
    for parent in folder.parents:
        if parent.exists():
            break
        top = parent
    return top


def remove_created(folder: Path, top: Path) -> None:
    """Remove ``folder`` with its files, then its parents up to ``top`` that are empty."""
    shutil.rmtree(folder, ignore_errors=True)
    while folder != top and folder.parent != folder:
        folder = folder.parent
        try:
            folder.rmdir()
        except OSError:  # not empty: holds other runs
            break


@contextmanager
def start_run(config, config_path, resume: Optional[str], device, seed: int,
              provenance: Optional[Dict[str, Any]] = None) -> Iterator[Tuple[Path, Any]]:
    """Create the run folders (``resume``: the checkpoint's run), log to them, write the
    config that runs as ``config.json`` and append ``provenance`` (``utils.provenance``)
    to ``provenance.json``; yields (model dir, TensorBoard writer or None) and closes the
    writer when the run ends.

    A new run that stops with an exception before its first checkpoint (no ``*.pth`` in
    its folder) leaves nothing behind: the writer and ``info.log`` are closed, the run
    and log folders (and the parents this start created) removed, and one line says so.
    A resumed run, or one that wrote a checkpoint, keeps everything.
    """
    run_id = Path(resume).parent.name if resume else None
    model_dir, log_dir = run_directories(config, config_path, run_id)
    created = {} if resume else {model_dir: topmost_missing(model_dir),
                                 log_dir: topmost_missing(log_dir)}
    writer = None
    try:
        setup_logging(log_dir, config["trainer"].get("verbosity", 2))
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "config.json").write_text(json.dumps(config, indent=4))
        if provenance is not None:
            record_start(model_dir, provenance)
        _logger.info("run folder %s, logs %s, device %s, seed %d", model_dir, log_dir, device,
                     seed)
        if config["trainer"].get("tensorboardX", True):
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(log_dir))
        yield model_dir, writer
    except BaseException:
        if writer is not None:
            writer.close()
        if created and not any(model_dir.glob("*.pth")):
            close_run_log()
            for folder, top in created.items():
                remove_created(folder, top)
            _logger.warning("the run stopped before its first checkpoint: removed its run folder "
                            "%s and log folder %s", model_dir, log_dir)
        raise
    if writer is not None:
        writer.close()
