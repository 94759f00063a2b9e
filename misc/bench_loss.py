"""Benchmark of dense_correlation_loss_dve: chunked kernels vs the original formulation.

Usage: python -m misc.bench_loss [--device cpu|cuda] [--chunk-rows 53,213]

Methods, forward + backward of the DVE loss at B pairs, C channels, S x S features, a grid
for a 2S x 2S image:
  ours      the chunked autograd Function (model/dense_correlation.py) via the registered
            loss; ours:<rows> the same with an explicit chunk size.
  original  the original per-pair loop, which forms a (C, H, W, h, w) product per pair
            (``reference_dense_correlation_loss``).
  bmm-floor the nine batched products of (B, N, C) x (B, C, N) size that forward and
            backward need at the least: three (B,N,C)(B,C,N) -> (B,N,N), six
            (B,N,N)(B,N,C) -> (B,N,C); its two (B, N, N) operands exist before measuring.
Time: median (and min) of --repeats runs after one warm-up. Ours and the floor run in one
process, interleaved run by run, and their ratio is the median of per-round ratios (so a
busy shared machine disturbs both alike); the slow original runs in its own process.
Peak memory: a fresh subprocess per method, one run (the first: one-time allocations
count). On CPU it is the kernel's resident-set high-water mark (VmHWM, reset through
/proc/self/clear_refs once the inputs exist) minus the resident set at that moment, with
glibc told to mmap every block of 64 KiB or more (MALLOC_MMAP_THRESHOLD_) so that freed
tensors leave the resident set; timing runs keep the default allocator. On CUDA:
torch.cuda.max_memory_allocated minus memory_allocated before. The bmm floor's outputs are
allocated by its warm-up (counted in its memory) and written with out= afterwards (so its
time has no page faults).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from misc.reference_loss import reference_dense_correlation_loss
from model.dense_correlation import dense_correlation
from model.loss import _pair_features, dense_correlation_loss_dve


def make_inputs(batch, channels, size, device, dtype=torch.float32):
    """Interleaved pair features (2B, C, S, S) and a smooth warp grid (B, 2S, 2S, 2)."""
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2 * batch, channels, size, size, generator=gen, dtype=dtype)
    image = 2 * size
    lin = torch.linspace(-1, 1, image, dtype=dtype)
    ys, xs = torch.meshgrid(lin, lin, indexing="ij")
    grids = []
    for _ in range(batch):
        angle = 0.1 * torch.randn(1, generator=gen)
        scale = 1 + 0.05 * torch.randn(1, generator=gen)
        shift = 0.05 * torch.randn(2, generator=gen)
        gx = scale * (torch.cos(angle) * xs - torch.sin(angle) * ys) + shift[0]
        gy = scale * (torch.sin(angle) * xs + torch.cos(angle) * ys) + shift[1]
        gx = gx + 0.03 * torch.sin(3 * ys)
        grids.append(torch.stack([gx, gy], dim=-1))
    grid = torch.stack(grids)  # (B, 2S, 2S, 2)
    return feats.to(device).requires_grad_(), grid.to(device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def build_step(method, args, device, feats, meta):
    """A callable that runs one forward + backward of `method` (returns the loss or None).

    method: "ours", "ours:<chunk rows>", "original" or "bmm-floor".
    """
    if method.startswith("ours"):
        chunk = int(method.split(":")[1]) if ":" in method else None

        def step():
            if chunk is None:  # the registered loss, default chunk size
                loss = dense_correlation_loss_dve([feats], meta)
            else:  # the same computation with an explicit chunk size
                src, dst, grid_px, stride = _pair_features([feats], meta, True)
                loss = dense_correlation(src, dst, grid_px, stride, feats_aux=src.roll(-1, 0),
                                         chunk_rows=chunk)
            loss.backward()
            return loss
        return step
    if method == "original":
        def step():
            loss = reference_dense_correlation_loss([feats], meta, dve=True)
            loss.backward()
            return loss
        return step
    if method == "bmm-floor":
        n = args.size ** 2
        gen = torch.Generator().manual_seed(1)
        x, y, z = [torch.randn(args.batch, n, args.channels, generator=gen).to(device)
                   for _ in range(3)]  # (B, N, C)
        p, q = [torch.rand(args.batch, n, n, generator=gen).to(device) for _ in range(2)]
        pairs = [(x, y.transpose(1, 2)), (z, x.transpose(1, 2)), (y, z.transpose(1, 2)),
                 (p, y), (q, z), (q.transpose(1, 2), x), (p.transpose(1, 2), y), (q, x),
                 (p.transpose(1, 2), z)]
        outs = []

        def step():  # outputs allocated by the first (warm-up) call, written in place after
            if not outs:
                outs.extend(torch.bmm(a, b) for a, b in pairs)
            else:
                for (a, b), out in zip(pairs, outs):
                    torch.bmm(a, b, out=out)
            return None
        return step
    raise ValueError(f"unknown method {method}")


def _timed(step, feats, device):
    feats.grad = None
    _sync(device)
    start = time.perf_counter()
    out = step()
    _sync(device)
    return time.perf_counter() - start, (None if out is None else out.item())


def _child_setup(args):
    """The device, the input features and a step per method of args.methods."""
    device = torch.device(args.device)
    feats, grid = make_inputs(args.batch, args.channels, args.size, device)
    steps = {m: build_step(m, args, device, feats, {"grid": grid}) for m in args.methods}
    return device, feats, steps


def child_time(args):
    """Time the methods of args.methods interleaved (one run of each per round)."""
    device, feats, steps = _child_setup(args)
    times = {m: [] for m in steps}
    losses = {m: _timed(step, feats, device)[1] for m, step in steps.items()}  # warm-up
    for _ in range(args.repeats):
        for method, step in steps.items():
            times[method].append(_timed(step, feats, device)[0])
    return {m: {"seconds": statistics.median(t), "min_seconds": min(t), "loss": losses[m],
                "rounds": t} for m, t in times.items()}


def child_memory(args):
    """Peak memory of one run of the single method in args.methods."""
    device, feats, steps = _child_setup(args)
    (step,) = steps.values()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _rss_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    _timed(step, feats, device)
    if device.type == "cuda":
        return {"peak_mb": (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20}
    return {"peak_mb": (_rss_kib("VmHWM") - base) / 1024}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8, help="pairs")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=35, help="feature map side; image is 2x")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--original-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--chunk-rows", type=lambda s: [int(v) for v in s.split(",")],
                        default=[], help="also time ours with these rows per chunk (comma list)")
    parser.add_argument("--child", choices=["time", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--methods", type=lambda s: s.split(","), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_child(args, kind: str, methods, repeats: int = 0) -> dict:
    """Measure ``methods`` (``kind`` "time" or "memory") in a fresh process; its JSON."""
    cmd = [sys.executable, "-m", "misc.bench_loss", "--child", kind,
           "--methods", ",".join(methods), "--device", args.device,
           "--batch", str(args.batch), "--channels", str(args.channels),
           "--size", str(args.size), "--repeats", str(repeats),
           "--threads", str(args.threads)]
    env = dict(os.environ)
    if kind == "memory" and not args.device.startswith("cuda"):
        # glibc: serve every block >= 64 KiB by mmap, so a freed tensor leaves the
        # resident set and the high-water mark follows live memory, not heap retention
        env["MALLOC_MMAP_THRESHOLD_"] = str(64 * 1024)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_report(results: dict, ours) -> None:
    """The table of every method, then each of ours against the original and the floor."""
    print(f"{'method':<18}{'fwd+bwd s':>11}{'(min s)':>10}{'peak MB':>10}{'loss':>13}")
    for name, r in results.items():
        loss = "-" if r["loss"] is None else f"{r['loss']:.7f}"
        print(f"{name:<18}{r['seconds']:>11.4f}{r['min_seconds']:>10.4f}{r['peak_mb']:>10.1f}"
              f"{loss:>13}")
    orig, floor = results["original"], results["bmm-floor"]
    for name in ours:
        r = results[name]
        mem = orig["peak_mb"] / max(r["peak_mb"], 1e-9)
        over_floor = statistics.median(a / b for a, b in zip(r["rounds"], floor["rounds"]))
        rel = abs(r["loss"] - orig["loss"]) / abs(orig["loss"])
        print(f"{name}: {orig['seconds'] / r['seconds']:.1f}x faster than original "
              f"(target >= 10); {mem:.1f}x less peak memory (target >= 10); "
              f"{over_floor:.2f}x the bmm floor time, median of per-round ratios "
              f"(target <= 1.5); loss rel. diff {rel:.1e}")


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps((child_time if args.child == "time" else child_memory)(args)))
        return
    cuda = args.device.startswith("cuda")
    print(f"dense_correlation_loss_dve forward+backward: B={args.batch} pairs, "
          f"C={args.channels}, {args.size}x{args.size} features, device={args.device}, "
          f"threads={args.threads}, torch {torch.__version__}")
    print(f"time: median (and min) of {args.repeats} runs after a warm-up, ours and the floor "
          f"interleaved in one process; original: {args.original_repeats} runs, own process")
    print("peak memory: " + ("cuda max_memory_allocated - memory_allocated" if cuda else
                             "VmHWM - VmRSS, fresh process per method, one run, glibc mmap "
                             "threshold 64 KiB"))
    ours = ["ours"] + [f"ours:{rows}" for rows in args.chunk_rows]
    results = run_child(args, "time", ours + ["bmm-floor"], args.repeats)
    results.update(run_child(args, "time", ["original"], args.original_repeats))
    for method in results:
        results[method]["peak_mb"] = run_child(args, "memory", [method])["peak_mb"]
    print_report(results, ours)


if __name__ == "__main__":
    main()
