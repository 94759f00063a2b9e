"""List the released DVE models with their published figures, or download some by name.

Usage (from the repository root):
    python -m misc.sync_models --list
    python -m misc.sync_models celeba-smallnet-64d-dve [NAME ...] [--root_url URL]
                               [--cache_dir DIR]

A download puts the checkpoint and its run's ``config.json`` into
``<cache>/models/<experiment>/<run>/`` (``utils.model_zoo``: resumable, size checked, the
sha256 recorded, and checked on every later use). The scripts do the same on first use
of a name (``--resume NAME``, ``"finetune_from": "NAME"``), from ``$DVE_MODELS_URL`` into
``$DVE_CACHE``; ``--root_url`` and ``--cache_dir`` here default to those. Exit status 0,
or 2 with a one-line message.
"""
import argparse
import logging
import sys
from typing import List

if not __package__:  # run as a file, the repository's packages are not importable: say how
    sys.exit("run it as a module, from the repository root: python -m misc.sync_models "
             + " ".join(sys.argv[1:]))

from utils import model_zoo  # noqa: E402
from utils.errors import USER_ERRORS, report_user_error  # noqa: E402
from utils.logging_setup import setup_logging  # noqa: E402

_logger = logging.getLogger("sync_models")
UNKNOWN_RUN = "unknown"


def format_table() -> List[str]:
    """The model table as text lines: per group of the original README, its benchmark,
    then one row per model (name, published figures, run folder, repository config)."""
    groups = model_zoo.zoo_groups()
    entries = [entry for group in groups for entry in group["models"]]
    name_width = max(len(entry.name) for entry in entries)
    figure_width = max(len(model_zoo.format_figures(entry)) for entry in entries)
    run_width = max(len(entry.run or UNKNOWN_RUN) for entry in entries)
    lines = [f"{'name':<{name_width}}  {'published':<{figure_width}}  "
             f"{'run folder':<{run_width}}  repository config"]
    for group in groups:
        lines += ["", f"{group['title']} -- {group['benchmark']}:"]
        lines += [f"{entry.name:<{name_width}}  {model_zoo.format_figures(entry):<{figure_width}}  "
                  f"{entry.run or UNKNOWN_RUN:<{run_width}}  {entry.config}"
                  for entry in group["models"]]
    known = sum(entry.run is not None for entry in entries)
    lines += ["", f"{len(entries)} models, {known} with a known run folder (downloadable by "
                  f"name); the others: the original README links no file for them, see "
                  f"docs/released-models.md"]
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="released models to download")
    parser.add_argument("--list", action="store_true", help="print the table and exit")
    parser.add_argument("--root_url", help=f"mirror of the models folder (default: "
                        f"${model_zoo.MODELS_URL_VARIABLE}, else {model_zoo.DEFAULT_MODELS_URL})")
    parser.add_argument("--cache_dir", help=f"cache folder (default: ${model_zoo.CACHE_VARIABLE}, "
                        f"else ~/.cache/dve)")
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")
    parser.add_argument("--retries", type=int, default=5, help="retries of a dropped download")
    parser.add_argument("--retry_wait", type=float, default=5.0,
                        help="seconds before the first retry")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(format_table()))
        return 0
    if not args.names:
        parser.error("give model names to download, or --list")
    setup_logging()
    try:
        for name in args.names:
            model = model_zoo.fetch_model(name, cache=args.cache_dir, root_url=args.root_url,
                                          source="misc/sync_models.py", timeout=args.timeout,
                                          retries=args.retries, retry_wait=args.retry_wait)
            print(f"{name}: {model.checkpoint} (config {model.config}) ready")
    except USER_ERRORS as err:
        return report_user_error(_logger, err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
