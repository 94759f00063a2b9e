"""Train a dense embedding (or, with a keypoint_regressor block, a landmark regressor).

    python train.py --config configs/synthetic/smallnet-16d-dve.json
    python train.py --config configs/synthetic-keypoints/smallnet-16d-dve.json
    python train.py --config C --dry-run
    python train.py --resume saved/models/<name>/<run>/checkpoint-epoch5.pth
    torchrun --nproc_per_node=2 train.py --config C     (one process per device)

A start checks the whole config (``--dry-run`` does only that), then builds every part and
reads the data (``trainer.run_setup``); only then is the run folder created, so a start
that fails leaves nothing behind.
"""
import argparse
import logging
import sys

from trainer.embedding_task import train_embedding
from trainer.regression_task import train_keypoint_regressor
from trainer.run_config import resolve_run
from trainer.run_setup import MINI_TRAIN_BATCHES, log_seed_summary
from utils.distributed import (process_group_from_environment, start_process_group,
                               stop_process_group)
from utils.errors import USER_ERRORS, report_user_error
from utils.logging_setup import close_run_log, hold_run_log, setup_logging
from utils.provenance import run_provenance

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


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(verbosity=2 if process_group_from_environment().is_main else 0)
    hold_run_log()  # what is logged before the run folder exists goes to its info.log
    try:
        run = resolve_run(args)
        if args.dry_run:
            print(f"{run.path}: {run.summary['arch']} with {run.summary['parameters']:,} "
                  f"trainable parameters; every name resolves")
            for item in run.summary["missing"]:
                print(f"  missing on this machine: {item}")
            return 0
        task = train_keypoint_regressor if "keypoint_regressor" in run.config else train_embedding
        start_process_group(run.group, run.device)
        results = [task(run.config_for(seed), run.path, args, run.device, seed, run.state,
                        run.summary["finetune_checkpoint"],
                        run_provenance(run.device, "train.py", args.argv, run.group), run.group)
                   for seed in run.seeds]
        if len(results) > 1 and run.group.is_main:
            log_seed_summary(run.seeds, results)
    except USER_ERRORS as err:
        return report_user_error(_logger, err)
    finally:
        close_run_log()
        stop_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
