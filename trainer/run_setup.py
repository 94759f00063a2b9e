"""What both tasks (``trainer.embedding_task``, ``trainer.regression_task``) share to
prepare and start a run: every part is built and its data read before the run folder
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

from base.optim import build_optimizer, build_scheduler
from base.run_settings import RunContext, TrainingSchedule
from trainer.builders import load_finetune_weights, resolve_visualizations
from utils.checkpoint_search import require_checkpoint
from utils.config import run_directories
from utils.distributed import SINGLE_PROCESS, ProcessGroup, wrap_for_training
from utils.logging_setup import close_run_log, setup_logging
from utils.provenance import record_start
from utils.registry import ConfigError

_logger = logging.getLogger(__name__)
MINI_TRAIN_BATCHES = 10
VALID_BATCH = 32


@dataclass
class PreparedRun:
    """What a trainer is made of, before the run folder exists.

    trainer_args: the trainer's keyword arguments, all but ``run``.
    run_values: the ``RunContext`` values known before the run folder exists (all but
        ``model_dir`` and ``writer``).
    network: the embedding (unwrapped), for the matching evaluation after training.
    train_set, valid_set: the datasets (``train_set`` possibly restricted).
    matching_data: the split the matching evaluation after training reads and its crop (an embedding
        run on a dataset with keypoints), already checked to hold a pair; else None.
    """
    trainer_args: Dict[str, Any]
    run_values: Dict[str, Any]
    network: nn.Module
    train_set: Any
    valid_set: Any
    matching_data: Any = None

    def trainer(self, trainer_class, model_dir: Path, writer):
        """``trainer_class`` built for the run folder ``model_dir`` and ``writer``."""
        return trainer_class(run=RunContext(model_dir=model_dir, writer=writer,
                                            **self.run_values), **self.trainer_args)


def training_network(network: nn.Module, config, device: torch.device,
                     group: ProcessGroup) -> nn.Module:
    """The module the trainer runs: ``network`` in channels-last memory format when the
    config says so, then under ``torchrun`` in ``DistributedDataParallel`` (with
    ``sync_batchnorm``), else ``DataParallel`` for an old config's ``n_gpu`` (one
    process); compiled with ``torch.compile`` when ``compile`` is true."""
    if config["channels_last"]:
        network = network.to(memory_format=torch.channels_last)
    if group.distributed:
        if config["n_gpu"] > 1:
            _logger.info("n_gpu %d is not used under torchrun: one device per process "
                         "(--nproc_per_node sets how many)", config["n_gpu"])
        network = wrap_for_training(network, group, device, config["sync_batchnorm"])
    else:
        network = parallelize(network, config["n_gpu"], device)
    return torch.compile(network) if config["compile"] else network


def parallelize(network: nn.Module, n_gpu: int, device: torch.device) -> nn.Module:
    """``n_gpu`` > 1 on CUDA, one process: DataParallel over the first ``n_gpu`` devices
    (the loss then sees the whole gathered batch, so the DVE auxiliary is the next pair of
    the batch, not of the device shard as in the original; ``torchrun`` keeps it per
    process). A note says how to launch with torchrun instead."""
    available = torch.cuda.device_count() if device.type == "cuda" else 0
    if n_gpu and n_gpu > 1 and available > 1:
        _logger.info("DataParallel over %d GPUs (n_gpu); torchrun --nproc_per_node=%d "
                     "train.py ... runs one process per GPU instead", min(n_gpu, available),
                     min(n_gpu, available))
        return nn.DataParallel(network, device_ids=list(range(min(n_gpu, available))))
    return network


def data_workers(config, args) -> Optional[int]:
    """Loader workers: none with --disable_workers, else trainer.num_workers (None: default)."""
    return 0 if args.disable_workers else config["trainer"].get("num_workers")


def pipeline_geometry(config) -> Dict[str, Any]:
    """``{"crop": int, "do_augmentations": bool}`` of the resolved config's
    ``dataset.args`` (a dataset type without these arguments: no crop, no noise), what
    the device pipelines apply to the loader images."""
    args = config["dataset"].get("args", {})
    return {"crop": int(args.get("crop", 0)),
            "do_augmentations": bool(args.get("do_augmentations", False))}


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


def log_seed_summary(seeds, results) -> None:
    """Mean and standard deviation over seeds of each final figure of the runs."""
    keys = ("inter_ocular_error",) if "inter_ocular_error" in results[0] else (
        "same_identity", "different_identity")
    for key in [k for k in keys if k in results[0]]:
        values = torch.tensor([r[key] for r in results], dtype=torch.float64)
        _logger.info("%s over seeds %s: %.4f +/- %.4f", key, seeds, values.mean().item(),
                     values.std().item())


def training_schedule(config, args) -> TrainingSchedule:
    """The resolved config's ``trainer`` block with ``--train_single_epoch`` and
    ``--mini_train``."""
    trainer = config["trainer"]
    return TrainingSchedule(
        epochs=int(trainer["epochs"]), save_period=int(trainer["save_period"]),
        monitor=trainer["monitor"], early_stop=int(trainer["early_stop"] or 0),
        max_epochs=1 if args.train_single_epoch else None,
        max_batches=MINI_TRAIN_BATCHES if args.mini_train else None,
        lr_step=trainer["lr_step"])


def trainer_arguments(config, config_path, args, device, model, seed: int,
                      loader_generator, group: ProcessGroup = SINGLE_PROCESS
                      ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(the ``BaseTrainer`` arguments both trainers take but ``loss_fn`` and ``run``:
    optimizer and scheduler of ``model``, schedule, visualizations; the ``RunContext``
    values but ``model_dir`` and ``writer``)."""
    optimizer = build_optimizer(config, model, config_path)
    trainer_args = dict(model=model, optimizer=optimizer,
                        lr_scheduler=build_scheduler(config, optimizer, config_path),
                        schedule=training_schedule(config, args),
                        visualizations=resolve_visualizations(config, config_path))
    run_values = dict(device=device, seed=seed, config=config, config_path=str(config_path),
                      loader_generator=loader_generator, group=group, amp=config["amp"],
                      channels_last=config["channels_last"])
    return trainer_args, run_values


def train_prepared(prepared: PreparedRun, trainer_class, config, config_path, args, device,
                   seed: int, state, provenance=None):
    """Create the run folder (``start_run``, with ``provenance``), build ``trainer_class``
    from ``prepared``, resume from ``args.resume`` (its checkpoint ``state`` as read) if
    asked, and train; -> (the trainer, the run folder)."""
    main = prepared.run_values["group"].is_main
    with start_run(config, config_path, args.resume, device, seed, provenance,
                   main) as (model_dir, writer):
        trainer = prepared.trainer(trainer_class, model_dir, writer)
        if args.resume:
            trainer.resume(args.resume, state)
        trainer.train()
    return trainer, model_dir


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
              provenance: Optional[Dict[str, Any]] = None,
              main: bool = True) -> Iterator[Tuple[Optional[Path], Any]]:
    """Create the run folders (``resume``: the checkpoint's run), log to them, write the
    config that runs as ``config.json`` and append ``provenance`` (``utils.provenance``)
    to ``provenance.json``; yields (model dir, TensorBoard writer or None) and closes the
    writer when the run ends.

    A new run that stops with an exception before its first checkpoint (no ``*.pth`` in
    its folder) leaves nothing behind: the writer and ``info.log`` are closed, the run
    and log folders (and the parents this start created) removed, and one line says so.
    A resumed run, or one that wrote a checkpoint, keeps everything. A process other
    than rank 0 (``main`` False) creates nothing, logs warnings only and yields
    (None, None).
    """
    if not main:
        yield None, None
        return
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
