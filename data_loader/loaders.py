"""Data loaders of decoded images (the loader does no random work: see device_pipeline)."""
import os
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset


def default_num_workers() -> int:
    return min(4, max((os.cpu_count() or 1) - 1, 0))


def make_loader(dataset: Dataset, batch_size: int, train: bool, device: torch.device,
                num_workers: Optional[int] = None,
                generator: Optional[torch.Generator] = None) -> DataLoader:
    """Training loaders shuffle (with ``generator``) and drop the last partial batch."""
    workers = default_num_workers() if num_workers is None else num_workers
    return DataLoader(dataset, batch_size=batch_size, shuffle=train, drop_last=train,
                      num_workers=workers, generator=generator if train else None,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0)
