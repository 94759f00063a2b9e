"""Distributed data parallel training under ``torchrun``: one process per device.

``torchrun --nproc_per_node=N train.py --config C`` (and its multi-node form) starts N
processes with ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment; a plain
``python train.py`` is one process of a world of one, and nothing here changes it. Each
process trains on its own shard of every epoch (``torch.utils.data.DistributedSampler``,
shuffled from the run's seed and the epoch), with its own augmentation stream; the
gradients are averaged by ``DistributedDataParallel``. Only rank 0 logs, writes
TensorBoard and checkpoints, and runs the matching evaluation.
"""
import datetime
import logging
import os
from dataclasses import dataclass
from typing import Dict

import torch
import torch.distributed as dist
from torch import nn

from utils.registry import ConfigError

_logger = logging.getLogger(__name__)
TIMEOUT = datetime.timedelta(minutes=60)  # rank 0 may evaluate while the others wait


@dataclass(frozen=True)
class ProcessGroup:
    """Where this process stands among the training processes.

    rank: 0 .. world_size - 1 over all nodes; local_rank: the index on this node (its GPU).
    """
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, writes checkpoints and evaluates."""
        return self.rank == 0


SINGLE_PROCESS = ProcessGroup()


def _environment_integer(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer; launch "
                          f"with torchrun, which sets it") from None


def process_group_from_environment() -> ProcessGroup:
    """The ``ProcessGroup`` torchrun describes in ``RANK``, ``WORLD_SIZE`` and
    ``LOCAL_RANK``; ``SINGLE_PROCESS`` without them."""
    world_size = _environment_integer("WORLD_SIZE", 1)
    if world_size <= 1:
        return SINGLE_PROCESS
    return ProcessGroup(rank=_environment_integer("RANK", 0), world_size=world_size,
                        local_rank=_environment_integer("LOCAL_RANK", 0))


def process_device(device: torch.device, group: ProcessGroup) -> torch.device:
    """The device of this process: on CUDA, GPU ``local_rank`` of its node (one per
    process), else ``device`` unchanged."""
    if group.distributed and device.type == "cuda":
        if group.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {group.local_rank} but this node has "
                              f"{torch.cuda.device_count()} GPUs; lower --nproc_per_node")
        return torch.device("cuda", group.local_rank)
    return device


def start_process_group(group: ProcessGroup, device: torch.device) -> None:
    """Join the torchrun rendezvous (NCCL on CUDA, Gloo on the CPU); no-op for one process."""
    if not group.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    _logger.info("process %d of %d (local rank %d) on %s", group.rank, group.world_size,
                 group.local_rank, device)


def stop_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def per_process_batch(batch_size: int, group: ProcessGroup, key: str = "batch_size") -> int:
    """The batch of one process: the config's ``batch_size`` is the global batch of a step
    (as the original's DataParallel split it over its GPUs), divided over the processes.
    Raises ``ConfigError`` when it does not divide."""
    if batch_size % group.world_size:
        raise ConfigError(f"{key} {batch_size} is the global batch of a step and must divide "
                          f"over the {group.world_size} processes; use a multiple of "
                          f"{group.world_size}")
    return batch_size // group.world_size


def wrap_for_training(module: nn.Module, group: ProcessGroup, device: torch.device,
                      sync_batchnorm: bool = False) -> nn.Module:
    """``module`` in ``DistributedDataParallel`` when several processes train (with
    ``SyncBatchNorm`` when ``sync_batchnorm``, which PyTorch runs on CUDA only); else
    ``module`` itself. Rank 0's parameters and buffers are broadcast on construction."""
    if not group.distributed:
        return module
    if sync_batchnorm:
        if device.type != "cuda":
            raise ConfigError("sync_batchnorm needs CUDA devices (PyTorch's SyncBatchNorm); set "
                              "\"sync_batchnorm\": false for a CPU run")
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None)


def unwrapped(module: nn.Module) -> nn.Module:
    """The network inside ``DataParallel`` / ``DistributedDataParallel`` wrappers and
    ``torch.compile`` (whose module keeps the network as ``_orig_mod``)."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    while True:
        if isinstance(module, wrappers):
            module = module.module
        elif isinstance(getattr(module, "_orig_mod", None), nn.Module):
            module = module._orig_mod
        else:
            return module


def sum_over_processes(values: Dict[str, float], group: ProcessGroup) -> Dict[str, float]:
    """``values`` summed over all processes (float64 on the CPU; every process must
    call this at the same point); unchanged for one process."""
    if not group.distributed:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.cpu().tolist()))


def process_seed(seed: int, group: ProcessGroup, epoch: int) -> int:
    """The seed of a process's augmentation stream in epoch ``epoch`` of a distributed
    run: distinct per rank and epoch, so a resumed run draws what the uninterrupted one
    did. (One process keeps one stream over the whole run, seeded with ``seed``.)"""
    return ((seed * 1_000_003 + group.rank) * 100_003 + epoch) % 2 ** 63
