"""Compare landmark methods: matching and landmark regression of every checkpoint, one table.

    python compare.py --entry dve=RUN1/checkpoint-epoch100.pth,RUN2/checkpoint-epoch100.pth \
        --entry random=untrained:configs/celeba/smallnet-16d-dve.json@0,1 \
        --regressor_config configs/mafl-keypoints/smallnet-16d-dve.json --output_dir saved/compare

For every checkpoint of every ``--entry`` (any method: the checkpoint's stored config says
the network): the matching evaluation of ``test_matching.py`` (``--protocol``,
``--eval_data``) and a landmark regressor trained on its frozen embedding with
``--regressor_config`` (its ``arch`` and ``finetune_from`` set to the checkpoint's, ``--set``
applied), as ``train.py`` trains it. An ``untrained:CONFIG.json@SEED`` checkpoint is that
config's network initialised with the seed (the random-initialisation baseline).
Entries with several checkpoints report mean +/- sample standard deviation. Prints the
table and writes ``comparison.csv``, ``comparison.md`` and ``comparison.json`` (every
checkpoint's figures) into ``--output_dir``, with each checkpoint's ``matching.json`` and
regressor run under ``<output_dir>/<label>/<k>/`` (docs/comparing-methods.md).
"""
import argparse
import logging
import sys
from pathlib import Path

from trainer.comparison import (ComparisonSettings, parse_entries, run_comparison,
                                scoped_overrides)
from trainer.comparison_table import format_table, summarize, write_comparison
from trainer.matching import DVE_PROTOCOL, PROTOCOLS
from trainer.matching_run import DEFAULT_EVAL_DATA
from utils.device import resolve_device
from utils.errors import USER_ERRORS, report_user_error
from utils.logging_setup import close_run_log, setup_logging
from utils.provenance import run_provenance

_logger = logging.getLogger("compare")


def parse_args(argv) -> argparse.Namespace:
    """The parsed command line ``argv`` (the arguments after the script's name)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", action="append", default=[], metavar="LABEL=SPEC",
                        help="LABEL=CKPT[,CKPT...] (files, run folders, globs or released "
                        "model names; one per seed) or LABEL=untrained:CONFIG.json@SEED[,SEED...]")
    parser.add_argument("--regressor_config", required=True,
                        help="landmark regressor config trained on each frozen embedding")
    parser.add_argument("--output_dir", required=True, help="where everything is written")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default=DVE_PROTOCOL.name,
                        help="matching protocol: dve (SPEC section 6) or contrastive (seed 1, "
                        "pixels x 69/95); default dve")
    parser.add_argument("--eval_data", help=f"dataset type matched on, test split (default: "
                        f"{DEFAULT_EVAL_DATA}, with each checkpoint's dataset.args)")
    parser.add_argument("-d", "--device", help="cpu, cuda, cuda:N or a GPU id")
    parser.add_argument("--set", action="append", default=[], metavar="[LABEL:]KEY.PATH=VALUE",
                        help="override a key of the regressor config (for entry LABEL's "
                        "checkpoints), e.g. last:arch.args.hypercolumn_layers=1")
    parser.add_argument("--matching_set", action="append", default=[],
                        metavar="[LABEL:]KEY.PATH=VALUE", help="override a key of the "
                        "checkpoints' configs (of entry LABEL) for the matching evaluation, "
                        "e.g. contrastive:arch.args.hypercolumn_size=96")
    parser.add_argument("--disable_workers", action="store_true",
                        help="load the regressors' data in the main process")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)  # recorded in each provenance.json
    args = parse_args(argv)
    setup_logging()
    try:
        entries = parse_entries(args.entry)
        labels = [entry.label for entry in entries]
        device = resolve_device(args.device)
        settings = ComparisonSettings(
            regressor_config=Path(args.regressor_config), output_dir=Path(args.output_dir),
            device=device, protocol=PROTOCOLS[args.protocol], eval_data=args.eval_data,
            regressor_overrides=scoped_overrides(args.set, labels, "--set"),
            matching_overrides=scoped_overrides(args.matching_set, labels),
            disable_workers=args.disable_workers,
            provenance=run_provenance(device, "compare.py", argv))
        rows = summarize(run_comparison(entries, settings))
        path = write_comparison(rows, settings.output_dir, settings.protocol,
                                args.eval_data or DEFAULT_EVAL_DATA, settings.regressor_config)
    except USER_ERRORS as err:
        return report_user_error(_logger, err)
    finally:
        close_run_log()
    print(format_table(rows))
    _logger.info("wrote comparison.csv, comparison.md and %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
