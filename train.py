"""Train a dense embedding (or, with a keypoint_regressor block, a landmark regressor).

    python train.py --config configs/synthetic/smallnet-16d-dve.json
    python train.py --config configs/synthetic-keypoints/smallnet-16d-dve.json
    python train.py --config C --dry-run
    python train.py --resume saved/models/<name>/<run>/checkpoint-epoch5.pth
"""
import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from data_loader.device_pipeline import build_pair_pipeline
from data_loader.keypoint_pipeline import build_keypoint_pipeline
from data_loader.loaders import make_loader
from data_loader.restricted_annos import RestrictedAnnotations
from trainer.builders import (build_dataset, build_model, build_warper, dry_run,
                              load_finetune_weights, resolve_loss, resolve_metrics,
                              resolve_visualizations)
from trainer.descriptor_cache import CACHE_BATCH, cache_splits
from trainer.embedding_trainer import EmbeddingTrainer
from trainer.keypoint_trainer import KeypointTrainer, index_loader
from trainer.matching_run import run_matching
from trainer.optim import build_optimizer, build_scheduler
from utils.checkpoint import load_checkpoint
from utils.checkpoint_search import require_checkpoint
from utils.cli import USER_ERRORS, report_user_error, run_config
from utils.config import run_directories
from utils.device import resolve_device
from utils.error_curve import write_error_report
from utils.logging_setup import close_run_log, setup_logging
from utils.registry import ConfigError

_logger = logging.getLogger("train")
MINI_TRAIN_BATCHES = 10
VALID_BATCH = 32


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", help="JSON config file")
    parser.add_argument("-r", "--resume", help="checkpoint to resume from")
    parser.add_argument("-d", "--device", help="cpu, cuda, cuda:N or a GPU id (default: cuda if available)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, one run each, then "
                        "the mean and std of the final errors")
    parser.add_argument("--mini_train", action="store_true",
                        help=f"at most {MINI_TRAIN_BATCHES} batches per epoch (a smoke run)")
    parser.add_argument("--train_single_epoch", action="store_true", help="train one epoch")
    parser.add_argument("--disable_workers", action="store_true", help="load data in the main process")
    parser.add_argument("-b", "--batch_size", type=int, help="override batch_size")
    parser.add_argument("--vis", action="store_true", help="save the matching figure at the end")
    parser.add_argument("-f", "--folded_correlation", action="store_true",
                        help="the original's memory-saving loss variant (same values)")
    parser.add_argument("-p", "--profile", action="store_true", help="accepted for compatibility")
    parser.add_argument("-g", "--n_gpu", type=int, help="override n_gpu")
    parser.add_argument("--check_bn_working", action="store_true",
                        help="accepted for compatibility (no effect, as in the original)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override any config key, e.g. --set optimizer.args.lr=0.01")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="resolve and build everything without reading data, then exit")
    return parser.parse_args(argv)


def resolve_config(args):
    """The config (from --config, else from the --resume checkpoint) with CLI overrides."""
    state = load_checkpoint(args.resume) if (args.resume and not args.config) else None
    overrides = list(args.set)
    if args.batch_size:
        overrides.append(f"batch_size={args.batch_size}")
    if args.n_gpu is not None:
        overrides.append(f"n_gpu={args.n_gpu}")
    if args.folded_correlation:
        overrides.append("loss_args.fold_corr=true")
    return run_config(args.config, state, args.resume, overrides)


def parallelize(network, n_gpu: int, device: torch.device):
    """``n_gpu`` > 1 on CUDA: DataParallel over the first ``n_gpu`` devices (the loss then
    sees the whole gathered batch, so the DVE auxiliary is the next pair of the batch,
    not of the device shard as in the original)."""
    available = torch.cuda.device_count() if device.type == "cuda" else 0
    if n_gpu and n_gpu > 1 and available > 1:
        _logger.info("DataParallel over %d GPUs", min(n_gpu, available))
        return torch.nn.DataParallel(network, device_ids=list(range(min(n_gpu, available))))
    return network


def start_run(config, config_path, args, device, seed: int):
    """Seed, create the run folders, log to them, save the config; -> (model dir, writer)."""
    torch.manual_seed(seed)
    run_id = None
    if args.resume:
        run_id = Path(args.resume).parent.name
    model_dir, log_dir = run_directories(config, config_path, run_id)
    setup_logging(log_dir, config["trainer"].get("verbosity", 2))
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(config, indent=4))
    _logger.info("run folder %s, logs %s, device %s, seed %d", model_dir, log_dir, device, seed)
    writer = None
    if config["trainer"].get("tensorboardX", config["trainer"].get("tensorboard", True)):
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(log_dir))
    return model_dir, writer


def data_workers(config, args):
    """Loader workers: none with --disable_workers, else trainer.num_workers (None: default)."""
    return 0 if args.disable_workers else config["trainer"].get("num_workers")


def finetune(network, config, args, device) -> None:
    """Initialise ``network`` from ``finetune_from`` (a file, a folder of runs or a glob:
    ``utils.checkpoint_search``), unless resuming."""
    if config.get("finetune_from") and not args.resume:
        load_finetune_weights(network, require_checkpoint(config["finetune_from"]), device)


def fit(trainer, writer, resume) -> None:
    """Resume (if asked), train, then close the TensorBoard writer."""
    if resume:
        trainer.resume(resume)
    trainer.train()
    if writer is not None:
        writer.close()


def log_splits(config, train_set, valid_set) -> None:
    _logger.info("%s: %d training and %d validation images", config["dataset"]["type"],
                 len(train_set), len(valid_set))


def trainer_arguments(config, config_path, args, device, model, model_dir, writer,
                      seed: int, loader_generator) -> dict:
    """The ``BaseTrainer`` arguments both trainers take: optimizer and scheduler of
    ``model``, loss, visualizations, run limits and generators."""
    optimizer = build_optimizer(config, model, config_path)
    return dict(
        model=model, optimizer=optimizer, lr_scheduler=build_scheduler(config, optimizer, config_path),
        config=config, config_path=str(config_path), device=device, model_dir=model_dir, writer=writer,
        max_epochs=1 if args.train_single_epoch else None,
        loss_fn=resolve_loss(config, config_path), loss_args=config.get("loss_args", {}),
        visualizations=resolve_visualizations(config, config_path),
        max_batches=MINI_TRAIN_BATCHES if args.mini_train else None,
        seed=seed, loader_generator=loader_generator)


def train_embedding(config, config_path, args, device, seed: int) -> dict:
    model_dir, writer = start_run(config, config_path, args, device, seed)
    network = build_model(config, config_path).to(device)
    finetune(network, config, args, device)
    trained_network = parallelize(network, config.get("n_gpu", 1), device)
    train_set = build_dataset(config, config_path, train=True)
    valid_set = build_dataset(config, config_path, train=False)
    log_splits(config, train_set, valid_set)
    warper = build_warper(config, config_path)
    workers = data_workers(config, args)
    loader_generator = torch.Generator().manual_seed(seed)
    trainer = EmbeddingTrainer(
        train_loader=make_loader(train_set, config["batch_size"], True, device, workers,
                                 loader_generator),
        valid_loader=make_loader(valid_set, VALID_BATCH, False, device, workers),
        train_pipeline=build_pair_pipeline(warper, train_set, train=True),
        valid_pipeline=build_pair_pipeline(warper, valid_set, train=False),
        **trainer_arguments(config, config_path, args, device, trained_network, model_dir, writer,
                            seed, loader_generator))
    fit(trainer, writer, args.resume)
    if not train_set.has_keypoints:
        _logger.info("%s has no keypoint annotations: no matching evaluation; run test_matching.py "
                     "--resume %s --eval_data <an annotated dataset type>", config["dataset"]["type"],
                     trainer.last_checkpoint)
        return {}
    return run_matching(network, config, config_path, trainer.last_checkpoint, device,
                        num_workers=workers, vis=args.vis)


def train_keypoint_regressor(config, config_path, args, device, seed: int) -> dict:
    """A landmark regressor on the frozen (``finetune_from``) embedding; ends by writing
    ``keypoints.json`` and the error curve of the last validation pass."""
    model_dir, writer = start_run(config, config_path, args, device, seed)
    model = build_model(config, config_path).to(device)
    finetune(model[0].wrapped_module, config, args, device)
    train_set = build_dataset(config, config_path, train=True)
    valid_set = build_dataset(config, config_path, train=False)
    if config.get("restrict_annos"):
        train_set = RestrictedAnnotations(train_set, int(config["restrict_annos"]), seed)
    log_splits(config, train_set, valid_set)
    warper = build_warper(config, config_path) if "warper" in config else None
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
    trainer = KeypointTrainer(
        metrics=resolve_metrics(config, config_path), train_loader=train_loader,
        valid_loader=valid_loader, train_pipeline=train_pipeline, valid_pipeline=valid_pipeline,
        eye_indices=valid_set.eye_indices, train_cache=caches[0], valid_cache=caches[1],
        **trainer_arguments(config, config_path, args, device, model, model_dir, writer, seed,
                            loader_generator))
    fit(trainer, writer, args.resume)
    if trainer.last_valid_errors is None:
        raise ConfigError(f"{config_path}: no validation pass ran (trainer.epochs already reached?); "
                          f"evaluate the checkpoint with test_keypoints.py --resume")
    return write_error_report(trainer.last_valid_errors.numpy(), model_dir,
                              title=model_dir.parent.name)


def log_seed_summary(seeds, results) -> None:
    """Mean and standard deviation over seeds of each final figure of the runs."""
    keys = ("inter_ocular_error",) if "inter_ocular_error" in results[0] else (
        "same_identity", "different_identity")
    for key in [k for k in keys if k in results[0]]:
        values = torch.tensor([r[key] for r in results], dtype=torch.float64)
        _logger.info("%s over seeds %s: %.4f +/- %.4f", key, seeds, values.mean().item(),
                     values.std().item())


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        config, config_path = resolve_config(args)
        device = resolve_device(args.device)
        if args.dry_run:
            summary = dry_run(config, config_path, device)
            print(f"{config_path}: {summary['arch']} with {summary['parameters']:,} trainable "
                  f"parameters; every name resolves")
            for item in summary["missing"]:
                print(f"  missing on this machine: {item}")
            return 0
        seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
        run = train_keypoint_regressor if "keypoint_regressor" in config else train_embedding
        results = [run(config, config_path, args, device, seed) for seed in seeds]
        if len(results) > 1:
            log_seed_summary(seeds, results)
    except USER_ERRORS as err:
        return report_user_error(_logger, err)
    finally:
        close_run_log()
    return 0


if __name__ == "__main__":
    sys.exit(main())
