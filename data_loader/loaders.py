"""Data loaders of decoded images (the loader does no random work: see device_pipeline).

Defaults: up to 4 worker processes (none for the image cache; ``trainer.num_workers``
overrides), pinned memory and non-blocking copies on CUDA, persistent workers, two
batches prefetched per worker. Under ``torchrun`` a training loader reads its process's
shard of every epoch."""
import os
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from utils.distributed import SINGLE_PROCESS, ProcessGroup, per_process_batch


def default_num_workers(dataset: Optional[Dataset] = None) -> int:
    """Up to 4 decoding workers (one core left to the main process); none for a dataset
    read from the image cache, whose items are memory-mapped copies (workers would only
    add inter-process copies: ``misc/bench_data.py``)."""
    if getattr(dataset, "from_image_cache", False):
        return 0
    return min(4, max((os.cpu_count() or 1) - 1, 0))


def make_loader(dataset: Dataset, batch_size: int, train: bool, device: torch.device,
                num_workers: Optional[int] = None,
                generator: Optional[torch.Generator] = None,
                group: ProcessGroup = SINGLE_PROCESS, seed: int = 0) -> DataLoader:
    """Training loaders shuffle (with ``generator``) and drop the last partial batch.

    With several processes (``group``) a training loader takes ``batch_size`` as the
    global batch (``utils.distributed.per_process_batch``) and reads a shard through a
    ``DistributedSampler`` shuffled from ``seed`` and the epoch (the trainer sets it);
    evaluation loaders read the whole split in every process."""
    workers = default_num_workers(dataset) if num_workers is None else num_workers
    sampler = None
    if train and group.distributed:
        batch_size = per_process_batch(batch_size, group)
        sampler = DistributedSampler(dataset, num_replicas=group.world_size, rank=group.rank,
                                     shuffle=True, seed=seed, drop_last=True)
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None,
                      sampler=sampler, drop_last=train, num_workers=workers,
                      generator=generator if train and sampler is None else None,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0)
