"""Build the preprocessed image cache of a config's dataset, both splits, ahead of training.

Usage: python -m misc.build_cache --config C [--set KEY.PATH=VALUE ...] [--cache_dir D]
           [--workers N]

Each split (training, evaluation) is decoded, cropped and resized once into
``<cache_dir>/<DatasetType>-<train|eval>-<key>/`` (``data_loader.image_cache``), which a
run with ``"cache_images": true`` then reads instead of the image files; a cache already
up to date is only checked. ``--cache_dir`` defaults to the config's ``cache_dir``, else
``saved/image_cache``. Prints, per split, the folder, the number of images, the GiB on
disk and the seconds taken. A user error (config, data, a cache folder that cannot be
written, a full disk) is one line and exit status 2.
"""
import argparse
import logging
import sys
import time

from data_loader.image_cache import DEFAULT_CACHE_DIR, GIB, CachedDataset, cached
from trainer.builders import build_dataset
from utils.config import apply_overrides, load_config
from utils.errors import USER_ERRORS, report_user_error
from utils.logging_setup import setup_logging

_logger = logging.getLogger(__name__)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the run's config file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config key, e.g. --set dataset.args.imwidth=100")
    parser.add_argument("--cache_dir", help="where the caches go (default: the config's "
                        f"cache_dir, else {DEFAULT_CACHE_DIR})")
    parser.add_argument("--workers", type=int, help="decoding workers (default: the CPU "
                        "count minus one, at most 4)")
    return parser.parse_args(argv)


def build_splits(config, path, cache_dir, workers=None):
    """Cache the training and the evaluation split of ``config``'s dataset under
    ``cache_dir``; -> one row per split: (split, folder or None for an empty split,
    images, bytes, seconds)."""
    uncached = {key: value for key, value in config.items() if key != "cache_images"}
    args = config["dataset"].get("args", {})
    rows = []
    for train in (True, False):
        start = time.perf_counter()
        dataset = build_dataset(uncached, path, train=train)
        view = cached(dataset, config["dataset"]["type"], args, train, cache_dir, workers)
        split = "train" if train else "eval"
        if isinstance(view, CachedDataset):
            rows.append((split, view.folder, len(view), view.manifest["bytes"],
                         time.perf_counter() - start))
        else:
            rows.append((split, None, 0, 0, time.perf_counter() - start))
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        config = apply_overrides(load_config(args.config), args.set, args.config)
        cache_dir = args.cache_dir or config.get("cache_dir", DEFAULT_CACHE_DIR)
        rows = build_splits(config, args.config, cache_dir, args.workers)
    except USER_ERRORS as err:
        return report_user_error(_logger, err)
    for split, folder, count, size, seconds in rows:
        where = folder if folder is not None else "(empty split: nothing to cache)"
        print(f"{split}: {where}: {count} images, {size / GIB:.3f} GiB, {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
