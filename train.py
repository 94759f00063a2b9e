"""Train a dense embedding (or, with a keypoint_regressor block, a landmark regressor).

    python train.py --config configs/synthetic/smallnet-16d-dve.json
    python train.py --config configs/synthetic-keypoints/smallnet-16d-dve.json
    python train.py --config C --dry-run
    python train.py --resume saved/models/<name>/<run>/checkpoint-epoch5.pth
    python train.py --config C --set finetune_from=celeba-smallnet-64d-dve

A start checks the whole config first (``trainer.builders.check_run_config``: all that
``--dry-run`` does, the fit of the ``--resume`` or ``finetune_from`` weights included),
then builds every part and reads the data (``trainer.run_setup``); only then is the run
folder created, so a start that fails leaves nothing behind, and a new run that stops
before its first checkpoint removes its folders again.
"""
import argparse
import logging
import sys

import torch

from base.base_trainer import BaseTrainer
from trainer.builders import check_run_config
from trainer.embedding_trainer import EmbeddingTrainer
from trainer.keypoint_trainer import KeypointTrainer
from trainer.matching_run import run_matching
from trainer.optim import refuse_network_changes, resume_changes
from trainer.run_config import resolve_defaults
from trainer.run_setup import (MINI_TRAIN_BATCHES, data_workers, prepare_embedding,
                               prepare_regressor, start_run)
from utils.checkpoint import load_checkpoint, require_resumable
from utils.checkpoint_search import require_checkpoint
from utils.cli import resolve_seeds, run_config
from utils.errors import USER_ERRORS, report_user_error
from utils.device import resolve_device
from utils.error_curve import write_error_report
from utils.logging_setup import close_run_log, hold_run_log, setup_logging
from utils.provenance import run_provenance
from utils.registry import ConfigError

_logger = logging.getLogger("train")


def parse_args(argv=None) -> argparse.Namespace:
    """The command line; ``argv`` (default ``sys.argv[1:]``) is kept as ``.argv``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", help="JSON config file")
    parser.add_argument("-r", "--resume", help="checkpoint to resume from (file, run folder, "
                        "glob or released model name)")
    parser.add_argument("-d", "--device", help="cpu, cuda, cuda:N or a GPU id (default: cuda if available)")
    parser.add_argument("--seeds", help="comma-separated seeds, one run each, then the mean "
                        "and std of the final errors (default: the config's seed, else 0)")
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
                        help="check the config and build everything without reading data, "
                        "then exit")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def resolve_config(args):
    """(config, its path, the --resume checkpoint or None): the config of --config, else
    of the checkpoint, with the command-line overrides. ``args.resume`` becomes the file
    it designates (``utils.checkpoint_search.require_checkpoint``)."""
    if args.resume:
        args.resume = str(require_checkpoint(args.resume, "--resume"))
    state = load_checkpoint(args.resume) if args.resume else None
    if state is not None:
        require_resumable(state, args.resume)
    overrides = list(args.set)
    if args.batch_size:
        overrides.append(f"batch_size={args.batch_size}")
    if args.n_gpu is not None:
        overrides.append(f"n_gpu={args.n_gpu}")
    if args.folded_correlation:
        overrides.append("loss_args.fold_corr=true")
    config, config_path = run_config(args.config, state if not args.config else None,
                                     args.resume, overrides)
    return config, config_path, state


def check_resume(state, config, config_path, args) -> None:
    """Before anything is written: a resumed run must have epochs left to train, keep the
    network of the checkpoint's run, and its changed optimizer settings must fit the
    saved optimizer state."""
    epoch = state.get("epoch") or 0
    if epoch >= config["trainer"]["epochs"]:
        raise ConfigError(f"--resume {args.resume}: the checkpoint is at epoch {epoch} and "
                          f"trainer.epochs is {config['trainer']['epochs']}: nothing to train; "
                          f"raise it, e.g. --set trainer.epochs={epoch + 1}")
    if not state.get("released"):
        saved = state.get("config")
        saved = resolve_defaults(saved, config_path) if isinstance(saved, dict) else None
        refuse_network_changes(saved, config, args.resume)
        resume_changes(saved, config, args.resume)


def fit(trainer: BaseTrainer, args, state) -> None:
    """Resume (if asked), then train."""
    if args.resume:
        trainer.resume(args.resume, state)
    trainer.train()


def train_embedding(config, config_path, args, device, seed: int, state,
                    finetune_checkpoint) -> dict:
    """An embedding run; ends with the matching evaluation on the config's dataset."""
    prepared = prepare_embedding(config, config_path, args, device, seed, finetune_checkpoint)
    with start_run(config, config_path, args.resume, device, seed,
                   run_provenance(device, "train.py", args.argv)) as (model_dir, writer):
        trainer = EmbeddingTrainer(model_dir=model_dir, writer=writer, **prepared.trainer_args)
        fit(trainer, args, state)
    if prepared.matching_set is None:
        _logger.info("%s has no keypoint annotations: no matching evaluation; run test_matching.py "
                     "--resume %s --eval_data <an annotated dataset type>", config["dataset"]["type"],
                     trainer.last_checkpoint)
        return {}
    return run_matching(prepared.network, config, config_path, trainer.last_checkpoint, device,
                        num_workers=data_workers(config, args), vis=args.vis,
                        dataset=prepared.matching_set)


def train_keypoint_regressor(config, config_path, args, device, seed: int, state,
                             finetune_checkpoint) -> dict:
    """A landmark regressor on the frozen (``finetune_from``) embedding; ends by writing
    ``keypoints.json`` and the error curve of the last validation pass."""
    prepared = prepare_regressor(config, config_path, args, device, seed, finetune_checkpoint)
    with start_run(config, config_path, args.resume, device, seed,
                   run_provenance(device, "train.py", args.argv)) as (model_dir, writer):
        trainer = KeypointTrainer(model_dir=model_dir, writer=writer, **prepared.trainer_args)
        fit(trainer, args, state)
    if trainer.last_valid_errors is None:
        raise ConfigError(f"{config_path}: the validation split of {config['dataset']['type']} "
                          f"gave no batch, so there is no error to report; check dataset.args")
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
    hold_run_log()  # what is logged before the run folder exists goes to its info.log
    try:
        config, config_path, state = resolve_config(args)
        device = resolve_device(args.device)
        summary = check_run_config(config, config_path, args.resume, state)
        config = resolve_defaults(config, config_path)
        seeds = resolve_seeds(args.seeds, config, config_path)
        if state is not None:
            if len(seeds) > 1:
                raise ConfigError(f"--resume continues one run; drop --seeds {args.seeds}")
            check_resume(state, config, config_path, args)
        if args.dry_run:
            print(f"{config_path}: {summary['arch']} with {summary['parameters']:,} trainable "
                  f"parameters; every name resolves")
            for item in summary["missing"]:
                print(f"  missing on this machine: {item}")
            return 0
        run = train_keypoint_regressor if "keypoint_regressor" in config else train_embedding
        results = [run({**config, "seed": seed}, config_path, args, device, seed, state,
                       summary["finetune_checkpoint"]) for seed in seeds]
        if len(results) > 1:
            log_seed_summary(seeds, results)
    except USER_ERRORS as err:
        return report_user_error(_logger, err)
    finally:
        close_run_log()
    return 0


if __name__ == "__main__":
    sys.exit(main())
