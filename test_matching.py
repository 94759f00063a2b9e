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

``--protocol contrastive`` is the contrastive method's variant (SPEC-contrastive section
5): the same pairs and matching, warps seeded with 1, pixels scaled by 69/95 instead of
70/96. Its 96-px hypercolumn with per-layer L2 normalisation is a network setting, e.g.
``--set arch.args.hypercolumn_size=96 --set arch.args.normalize_layers=true``.
"""
import argparse
import logging
import sys
from pathlib import Path

from trainer.matching import DVE_PROTOCOL, PROTOCOLS
from trainer.matching_run import DEFAULT_EVAL_DATA, evaluation_reason, match_evaluation_run
from trainer.run_config import resolve_evaluation
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
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default=DVE_PROTOCOL.name,
                        help="dve: SPEC section 6 (warps seeded 0, pixels x 70/96); contrastive: "
                        "the contrastive method's (seeded 1, pixels x 69/95); default dve")
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
        output_dir = args.output_dir or (
            None if run.checkpoint else untrained_output_dir(run.config, run.path))
        match_evaluation_run(run, device, args.eval_data or DEFAULT_EVAL_DATA, output_dir,
                             evaluation_reason(args.eval_data), PROTOCOLS[args.protocol],
                             seed=args.seed, vis=args.vis)
    except USER_ERRORS as err:
        return report_user_error(_logger, err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
