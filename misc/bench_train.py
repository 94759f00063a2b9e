"""Benchmark of the embedding training step: pairs/s and where the time goes.

Usage: python -m misc.bench_train [--configs A.json,B.json] [--device cpu|cuda] [--data config]
       [--steps 10] [--amp bf16] [--channels_last] [--compile] [--cache_images]
       [--workers N] [--batch_size B] [--out saved/bench_train.json]

For each config (default: the paper's CelebA smallnet-64d-dve and hourglass-64d-dve,
batch 32 at 100 px and batch 16 at 136 px) the run is built exactly as ``train.py`` builds
it (``trainer.embedding_task.prepare_embedding``), on the embedded synthetic faces at the
config's image size unless ``--data config`` (CelebA's images have the same 178 x 218
layout, so the step does the same work), then measured three ways after ``--warmup``
steps:

  full      ``--steps`` training steps end to end (loader, device pipeline, forward, loss,
            backward, optimizer), nothing synchronised in between: the rate training sees.
  split     the same steps with the device synchronised after each part, timing: data
            wait (the next loader batch), pipeline (warps, crop, noise, normalization on
            the device), forward, loss, backward, optimizer.
  compute   forward + loss + backward + optimizer on one prepared batch, repeated: the
            rate without any data path; full / compute is the cost of the data path.
  flops     the floating-point operations of one such step per pair, counted by
            ``torch.utils.flop_counter`` (convolutions and matrix products: what bounds
            the step on an accelerator), and the hours of the CelebA schedule (100
            epochs of ``--epoch_pairs`` pairs) at the measured full rate.

Prints a table and writes the figures as JSON. Times are medians over the steps.
"""
import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List

import torch
from torch.utils.flop_counter import FlopCounterMode

from misc.bench_data import endless, synchronize
from trainer.embedding_task import prepare_embedding
from trainer.run_config import read_config, resolve_defaults
from utils.config_values import check_values
from utils.device import resolve_device
from utils.distributed import unwrapped
from utils.mixed_precision import MixedPrecision, float32_outputs

DEFAULT_CONFIGS = "configs/celeba/smallnet-64d-dve.json,configs/celeba/hourglass-64d-dve.json"
SYNTHETIC = ["dataset.type=SyntheticFaces", "dataset.args.root=data/synthetic_faces"]
PARTS = ("data", "pipeline", "forward", "loss", "backward", "optimizer")
SCHEDULE_EPOCHS = 100  # the paper's CelebA embedding schedule


def build_run(config_file: str, device: torch.device, options) -> SimpleNamespace:
    """The network, method, loss, optimizer and loader of ``config_file`` as train.py
    builds them, with the benchmark's overrides."""
    overrides = [f"amp={json.dumps(options.amp or False)}",
                 f"channels_last={json.dumps(options.channels_last)}",
                 f"compile={json.dumps(options.compile)}",
                 f"cache_images={json.dumps(options.cache_images)}"]
    if options.data == "synthetic":
        overrides += SYNTHETIC
    if options.batch_size:
        overrides.append(f"batch_size={options.batch_size}")
    if options.workers is not None:
        overrides.append(f"trainer.num_workers={options.workers}")
    config, path = read_config(config_file, None, None, overrides)
    check_values(config, path)
    config = resolve_defaults(config, path)
    args = SimpleNamespace(resume=None, disable_workers=False, train_single_epoch=False,
                           mini_train=False)
    prepared = prepare_embedding(config, path, args, device, seed=0)
    parts = prepared.trainer_args
    return SimpleNamespace(name=Path(config_file).stem, config=config, model=parts["model"],
                           method=parts["method"], optimizer=parts["optimizer"],
                           loader=parts["train_loader"],
                           precision=MixedPrecision(config["amp"], device),
                           memory_format=torch.channels_last if config["channels_last"]
                           else torch.contiguous_format)


def train_step(run, inputs, device) -> Dict[str, Callable]:
    """The parts of one step after the pipeline, as closures run in order."""
    state = {}

    def forward():
        with run.precision.autocast():
            state["outputs"] = run.method.outputs(
                run.model, inputs["data"].contiguous(memory_format=run.memory_format))

    def loss():
        with run.precision.full_precision():
            state["loss"] = run.method.loss(float32_outputs(state["outputs"]), inputs["meta"])

    def backward():
        run.optimizer.zero_grad(set_to_none=True)
        run.precision.backward(state["loss"])

    def optimizer():
        run.precision.optimizer_step(run.optimizer)
        run.method.after_step(unwrapped(run.model))
    return {"forward": forward, "loss": loss, "backward": backward, "optimizer": optimizer}


def one_step(run, stream, device: torch.device, generator, timed=None):
    """One training step on the next batch of ``stream``; with ``timed`` ({part: [s]}),
    the device is synchronised after each part and its seconds appended. -> its inputs."""
    clock = time.perf_counter()

    def lap(part):
        nonlocal clock
        if timed is not None:
            synchronize(device)
            now = time.perf_counter()
            timed[part].append(now - clock)
            clock = now
    batch = next(stream)
    lap("data")
    inputs = run.method.views(batch, device, generator, train=True)
    lap("pipeline")
    for part, action in train_step(run, inputs, device).items():
        action()
        lap(part)
    return inputs


def measure(run, device: torch.device, steps: int, warmup: int) -> Dict[str, float]:
    """Pairs/s of the full step and of compute alone, the median ms of each part and the
    GFLOP per pair of a step."""
    generator = torch.Generator(device=device).manual_seed(0)
    run.model.train()
    stream = endless(run.loader)
    pairs = run.config["batch_size"]
    for _ in range(max(warmup, 1)):  # at least one: its batch is the compute-only batch
        inputs = one_step(run, stream, device, generator)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        one_step(run, stream, device, generator)
    synchronize(device)
    full = steps * pairs / (time.perf_counter() - start)
    timed = {part: [] for part in PARTS}
    for _ in range(steps):
        one_step(run, stream, device, generator, timed)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        for action in train_step(run, inputs, device).values():
            action()
    synchronize(device)
    compute = steps * pairs / (time.perf_counter() - start)
    with FlopCounterMode(display=False) as counter:
        for action in train_step(run, inputs, device).values():
            action()
    result = {"pairs_per_s": full, "compute_pairs_per_s": compute, "batch_size": pairs,
              "full_over_compute": compute / full,
              "gflop_per_pair": counter.get_total_flops() / pairs / 1e9}
    result.update({f"{part}_ms": 1000 * statistics.median(values) for part, values in timed.items()})
    return result


def format_table(rows: List[Dict[str, float]]) -> str:
    header = (f"{'config':22s} {'batch':>5s} {'pairs/s':>9s} {'compute':>9s} {'full/comp':>9s} "
              + " ".join(f"{p + ' ms':>12s}" for p in PARTS)
              + f" {'GFLOP/pair':>10s} {'schedule h':>10s}")
    lines = [header]
    for row in rows:
        lines.append(f"{row['config']:22s} {row['batch_size']:5d} {row['pairs_per_s']:9.1f} "
                     f"{row['compute_pairs_per_s']:9.1f} {row['full_over_compute']:9.2f} "
                     + " ".join(f"{row[p + '_ms']:12.1f}" for p in PARTS)
                     + f" {row['gflop_per_pair']:10.2f} {row['schedule_hours']:10.1f}")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated configs")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--data", choices=("synthetic", "config"), default="synthetic",
                        help="the embedded synthetic faces at the config's size, or the "
                        "config's own dataset")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch_size", type=int, help="override batch_size")
    parser.add_argument("--workers", type=int, help="loader workers (default: the loader's)")
    parser.add_argument("--amp", choices=("bf16", "fp16"), help="mixed precision")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--cache_images", action="store_true")
    parser.add_argument("--epoch_pairs", type=int, default=160_000,
                        help="pairs of one CelebA epoch, for the schedule's hours")
    parser.add_argument("--out", default="saved/bench_train.json")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    device = resolve_device(options.device)
    rows = []
    for config_file in options.configs.split(","):
        run = build_run(config_file, device, options)
        row = {"config": run.name, **measure(run, device, options.steps, options.warmup)}
        row["schedule_hours"] = SCHEDULE_EPOCHS * options.epoch_pairs / row["pairs_per_s"] / 3600
        rows.append(row)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, amp {options.amp or 'off'}, channels_last "
          f"{options.channels_last}, compile {options.compile}, cache {options.cache_images}")
    print(format_table(rows))
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": str(device), "device_name": name,
                               "torch": torch.__version__, "options": vars(options),
                               "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
