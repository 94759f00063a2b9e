"""Same- and different-identity landmark matching of a trained embedding (SPEC section 6).

    python test_matching.py --config configs/celeba/smallnet-16d-dve.json --resume CKPT
    python test_matching.py --resume saved/models/<name>/<run>/checkpoint-epoch20.pth --vis
    python test_matching.py --config configs/celeba/hourglass-64d-dve.json --resume model_best.pth

``--resume`` takes this project's checkpoints (a file, a folder of runs or a glob), the
released DVE ones (embedding or regressor checkpoints, whose embedding part is evaluated),
a released model's name (``celeba-smallnet-64d-dve``: downloaded once, with its run's
config.json, see ``utils.model_zoo``) and bare state dicts; a bare state dict needs
``--config``, and so does a released checkpoint without its run's config.json beside it
(a released checkpoint's own pickled config is never executed).

Without ``--eval_data`` the MAFL test set (``MAFLAligned``, test split) is evaluated,
whatever the config's dataset, as the original script did; its root, imwidth and crop
come from the config's ``dataset.args`` (SPEC section 6).
"""
import argparse
import logging
import sys
from pathlib import Path

import torch

from trainer.builders import build_model, embedding_part
from trainer.matching_run import DEFAULT_EVAL_DATA, run_matching
from trainer.run_config import DEFAULT_SEED, resolve_evaluation
from utils.checkpoint import load_weights_into
from utils.config import experiment_name
from utils.errors import USER_ERRORS, report_user_error
from utils.device import resolve_device
from utils.logging_setup import setup_logging

_logger = logging.getLogger("test_matching")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", help="JSON config (default: the checkpoint's own)")
    parser.add_argument("-r", "--resume", help="checkpoint (file, run folder, glob or released "
                        "model name) to evaluate; without it the untrained (seeded) network "
                        "is evaluated, as a reference")
    parser.add_argument("-d", "--device", help="cpu, cuda, cuda:N or a GPU id")
    parser.add_argument("--eval_data", help=f"dataset type to evaluate, test split (default: "
                        f"{DEFAULT_EVAL_DATA}, the MAFL test set, with the config's dataset.args)")
    parser.add_argument("--vis", action="store_true", help="save matching.png with the matches")
    parser.add_argument("--output_dir", help="where matching.json goes (default: beside the "
                        "checkpoint; without --resume <trainer.save_dir>/untrained/<experiment>)")
    parser.add_argument("--seed", type=int, help="initialisation seed without --resume "
                        "(default: the config's seed, else 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override any config key")
    return parser.parse_args(argv)


def untrained_output_dir(config, config_path) -> Path:
    """Where the evaluation of an untrained network goes without ``--output_dir``:
    ``<trainer.save_dir>/untrained/<experiment name>`` (one folder per config)."""
    return (Path(config["trainer"].get("save_dir", "saved/")) / "untrained"
            / experiment_name(config_path, config))


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        device = resolve_device(args.device)
        run = resolve_evaluation(args.config, args.resume, args.set, device)
        config, config_path, resume, state = run.config, run.path, run.checkpoint, run.state
        seed = args.seed if args.seed is not None else config.get("seed", DEFAULT_SEED)
        torch.manual_seed(seed)
        network = build_model(config, config_path).to(device)
        if state is not None:
            load_weights_into(network, resume, device, source="--resume", state=state)
        else:
            _logger.warning("no --resume: evaluating the untrained network (seed %d)", seed)
        output_dir = args.output_dir or (
            None if resume else untrained_output_dir(config, config_path))
        reason = ("--eval_data" if args.eval_data else
                  "the default of test_matching.py, as in the original; --eval_data picks another")
        run_matching(embedding_part(network, config), config, config_path, resume, device,
                     vis=args.vis, eval_data=args.eval_data or DEFAULT_EVAL_DATA,
                     output_dir=output_dir, reason=reason)
    except USER_ERRORS as err:
        return report_user_error(_logger, err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
