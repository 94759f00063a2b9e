"""Landmark-regression error of a trained regressor: mean %IOD, error curve, AUC, failures.

    python test_keypoints.py --resume saved/models/<name>/<run>/checkpoint-epoch300.pth
    python test_keypoints.py --config configs/mafl-keypoints/smallnet-64d-dve.json --resume CKPT

``--resume`` takes this project's checkpoints (a file, a folder of runs or a glob), released
regressor checkpoints (with ``--config``, or the run's config.json beside them), a released
model's name (downloaded once, see ``utils.model_zoo``) and bare state dicts (with
``--config``). Writes ``keypoints.json``, ``ced.csv`` and
``ced.png`` beside the checkpoint (or into ``--output_dir``).
"""
import argparse
import logging
import sys
from pathlib import Path

from trainer.regression_task import evaluate_regressor_checkpoint
from trainer.run_config import resolve_evaluation
from trainer.run_setup import data_workers
from utils.errors import USER_ERRORS, report_user_error
from utils.device import resolve_device
from utils.logging_setup import setup_logging

_logger = logging.getLogger("test_keypoints")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-r", "--resume", required=True, help="regressor checkpoint to evaluate "
                        "(file, run folder, glob or released model name)")
    parser.add_argument("-c", "--config", help="JSON config (default: the checkpoint's own; "
                        "for a released one, its run's config.json beside it)")
    parser.add_argument("-d", "--device", help="cpu, cuda, cuda:N or a GPU id")
    parser.add_argument("--output_dir", help="where the results go (default: beside the checkpoint)")
    parser.add_argument("--disable_workers", action="store_true", help="load data in the main process")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override any config key, e.g. --set dataset.args.root=data/celeba")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        device = resolve_device(args.device)
        run = resolve_evaluation(args.config, args.resume, args.set, device)
        output_dir = Path(args.output_dir) if args.output_dir else run.checkpoint.parent
        evaluate_regressor_checkpoint(run.config, run.path, run.checkpoint, run.state, device,
                                      data_workers(run.config, args), output_dir)
    except USER_ERRORS as err:
        return report_user_error(_logger, err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
