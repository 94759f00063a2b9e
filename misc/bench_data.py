"""Benchmark of the data path alone: pairs/s it delivers, with and without the image cache.

Usage: python -m misc.bench_data [--config configs/synthetic/smallnet-64d-dve.json]
           [--workers 0,1,2] [--batches 30] [--warmup 3] [--train_steps 4]
           [--cache_dir D] [--device cpu|cuda] [--set KEY.PATH=VALUE ...]
           [--out saved/bench_data.json]

For each cache setting (off: JPEG decode per item; on: ``data_loader.image_cache``, built
first if needed, outside the timing) and each worker count, the config's training
loader (``data_loader.loaders.make_loader``: shuffled, ``batch_size``, pinned memory on
CUDA) is timed over ``--batches`` batches after ``--warmup`` batches, in two ways:

  loader     batches drawn from the loader and nothing else;
  +pipeline  each batch also turned into warped pairs on ``--device`` by the training
             pair pipeline (``device_pipeline.build_pair_pipeline`` with the config's
             warper, crop and photometric augmentation), synchronised on CUDA.

One loader image makes one pair, so pairs/s = images/s. For comparison, ``--train_steps``
training steps (the network's forward, the loss, backward and the optimizer step, on one
batch of pairs already made, after one warm-up step) give the pairs/s that training
consumes (0 skips them). Prints a table (and the machine's load average, as other work
on a shared machine slows every figure) and writes it all as JSON to ``--out``.
"""
import argparse
import gc
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch

from base.optim import build_optimizer
from data_loader.device_pipeline import build_pair_pipeline
from data_loader.image_cache import DEFAULT_CACHE_DIR, cached
from data_loader.loaders import make_loader
from trainer.builders import build_dataset, build_model, build_warper, resolve_loss
from utils.config import apply_overrides, load_config
from utils.device import resolve_device
from utils.errors import USER_ERRORS, report_user_error
from utils.logging_setup import setup_logging

_logger = logging.getLogger(__name__)
DEFAULT_CONFIG = "configs/synthetic/smallnet-64d-dve.json"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config key")
    parser.add_argument("--workers", default="0,1,2", help="loader worker counts (default 0,1,2)")
    parser.add_argument("--batches", type=int, default=30, help="timed batches (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first (default 3)")
    parser.add_argument("--train_steps", type=int, default=4,
                        help="timed training steps, 0 for none (default 4)")
    parser.add_argument("--cache_dir", help="image cache folder (default: the config's "
                        f"cache_dir, else {DEFAULT_CACHE_DIR})")
    parser.add_argument("--device", default="cpu", help="where the pipeline and the training "
                        "step run (default cpu)")
    parser.add_argument("--out", type=Path, default=Path("saved/bench_data.json"),
                        help="JSON result (default saved/bench_data.json)")
    return parser.parse_args(argv)


def endless(loader):
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batches(batches, count: int, warmup: int, device: torch.device, work=None) -> float:
    """Pairs/s over ``count`` batches drawn from the iterator ``batches`` (each passed to
    ``work`` when given) after ``warmup`` untimed ones."""
    for _ in range(warmup):
        batch = next(batches)
        if work is not None:
            work(batch)
    synchronize(device)
    pairs, start = 0, time.perf_counter()
    for _ in range(count):
        batch = next(batches)
        if work is not None:
            work(batch)
        pairs += batch["data"].shape[0]
    synchronize(device)
    return pairs / (time.perf_counter() - start)


def time_training_step(config, path, pairs: dict, steps: int, device: torch.device) -> float:
    """Pairs/s of ``steps`` training steps of ``config``'s network on the ready ``pairs``
    (a pair pipeline's output: (2B, 3, h, w) images and ``meta``), after one warm-up."""
    network = build_model(config, path).to(device).train()
    loss_fn, loss_args = resolve_loss(config, path), config.get("loss_args", {})
    optimizer = build_optimizer(config, network, path)
    for step in range(steps + 1):
        if step == 1:
            synchronize(device)
            start = time.perf_counter()
        loss = loss_fn(network(pairs["data"]), pairs["meta"], **loss_args)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return steps * pairs["data"].shape[0] // 2 / (time.perf_counter() - start)


def bench(config, path, workers, args, device: torch.device) -> dict:
    """The measurements (see the module doc) as a JSON-ready dict."""
    uncached = {key: value for key, value in config.items() if key != "cache_images"}
    source = build_dataset(uncached, path, train=True)
    cache_dir = args.cache_dir or config.get("cache_dir", DEFAULT_CACHE_DIR)
    datasets = {False: source, True: cached(source, config["dataset"]["type"],
                                            config["dataset"].get("args", {}), True, cache_dir)}
    dataset_args = config["dataset"].get("args", {})
    pipeline = build_pair_pipeline(build_warper(config, path), int(dataset_args.get("crop", 0)),
                                   bool(dataset_args.get("do_augmentations", False)), train=True)
    generator = torch.Generator(device=device).manual_seed(0)
    rows, pairs = [], None
    for use_cache, dataset in datasets.items():
        for count in workers:
            loader = make_loader(dataset, config["batch_size"], True, device, count,
                                 torch.Generator().manual_seed(0))
            batches = endless(loader)
            loader_rate = time_batches(batches, args.batches, args.warmup, device)
            pairs = pipeline(next(batches), device, generator)
            pipeline_rate = time_batches(batches, args.batches, args.warmup, device,
                                         lambda batch: pipeline(batch, device, generator))
            rows.append({"cache": use_cache, "workers": count, "loader_pairs_per_s": loader_rate,
                         "pipeline_pairs_per_s": pipeline_rate})
            _logger.info("cache %s, %d workers: %.0f pairs/s loader, %.0f with the pipeline",
                         "on" if use_cache else "off", count, loader_rate, pipeline_rate)
            del batches, loader
            gc.collect()  # ends the loader's worker processes before the next measurement
    step_rate = time_training_step(config, path, pairs, args.train_steps, device) \
        if args.train_steps > 0 else None
    return {"config": str(path), "device": str(device), "batch_size": config["batch_size"],
            "batches": args.batches, "warmup": args.warmup, "train_steps": args.train_steps,
            "images": len(source), "cpu_count": os.cpu_count(), "torch_threads":
            torch.get_num_threads(), "load_average": list(os.getloadavg()), "rows": rows,
            "train_step_pairs_per_s": step_rate}


def table(result: dict) -> str:
    """The result as a plain-text table, with the training step's rate beneath."""
    lines = [f"{'cache':<6}{'workers':>8}{'loader pairs/s':>16}{'+pipeline pairs/s':>19}"]
    for row in result["rows"]:
        lines.append(f"{'on' if row['cache'] else 'off':<6}{row['workers']:>8}"
                     f"{row['loader_pairs_per_s']:>16.0f}{row['pipeline_pairs_per_s']:>19.0f}")
    step = result["train_step_pairs_per_s"]
    if step is not None:
        best = max(r["pipeline_pairs_per_s"] for r in result["rows"] if r["cache"])
        lines.append(f"training step ({result['config']}, {result['device']}): {step:.1f} "
                     f"pairs/s; best cached loader+pipeline / step = {best / step:.1f}x")
    load = ", ".join(f"{value:.2f}" for value in result["load_average"])
    lines.append(f"{result['images']} training images, batch {result['batch_size']}, "
                 f"{result['batches']} timed batches; {result['cpu_count']} CPUs, load "
                 f"average {load}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        config = apply_overrides(load_config(args.config), args.set, args.config)
        device = resolve_device(args.device)
        workers = [int(text) for text in args.workers.split(",") if text.strip()]
        result = bench(config, args.config, workers, args, device)
    except USER_ERRORS as err:
        return report_user_error(_logger, err)
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    _logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
