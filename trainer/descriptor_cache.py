"""``cache_descriptors``: the frozen embedding of a whole split, computed once.

The embedding runs in eval mode in batches of ``CACHE_BATCH`` (the original's 100); a
configured warp is drawn once per (tiled) sample. Features are kept on the CPU and moved
to the device one training batch at a time.
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from utils.registry import ConfigError

_logger = logging.getLogger(__name__)
CACHE_BATCH = 100
GIB = 2 ** 30
HEADROOM = 0.8  # use at most this share of the memory available when the cache starts


@dataclass
class DescriptorCache:
    """One split, cached.

    feats: (N, C, H, W) float32 descriptors (CPU).
    keypts_normalized: (N, K, 2) ground truth, normalized coordinates of the cropped image.
    images: (n, 3, h, w) the first normalized images, kept for visualizations.
    eye_indices: (e0, e1) the pipeline's batches said (``meta``), for the inter-ocular
        error of cached batches.
    """
    feats: Tensor
    keypts_normalized: Tensor
    images: Tensor
    eye_indices: Tuple[int, int]

    def __len__(self) -> int:
        return self.feats.shape[0]


def available_memory_bytes() -> Optional[int]:
    """Host RAM available now (``/proc/meminfo``; the cache lives on the CPU whatever the
    training device), or None where it cannot be read."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def check_cache_fits(num_images: int, feature_shape, config_path) -> int:
    """Log the size of the cache of ``num_images`` features of ``feature_shape`` (C, H, W)
    and fail, naming the config key, if it would not fit; return the size in bytes."""
    channels, height, width = feature_shape
    needed = num_images * channels * height * width * 4
    available = available_memory_bytes()
    _logger.info("cache_descriptors: %d features of %dx%dx%d float32 need %.2f GiB "
                 "(available: %s)", num_images, channels, height, width, needed / GIB,
                 "unknown" if available is None else f"{available / GIB:.2f} GiB")
    if available is not None and needed > HEADROOM * available:
        raise ConfigError(
            f"{config_path}: cache_descriptors needs {needed / GIB:.2f} GiB for {num_images} "
            f"features of {channels}x{height}x{width} but only {available / GIB:.2f} GiB of "
            f"memory is available; set \"cache_descriptors\": false in the config (or --set "
            f"cache_descriptors=false)")
    return needed


@torch.no_grad()
def compute_descriptors(embedding: nn.Module, loader: DataLoader, pipeline, device: torch.device,
                        generator: Optional[torch.Generator], desc: str, max_images: int = 8,
                        check_fits: Optional[Callable[[Tuple[int, ...]], None]] = None
                        ) -> DescriptorCache:
    """Run ``embedding`` (images -> (B, C, H, W)) over ``loader`` in eval mode.

    The storage is allocated once, at the first batch, after ``check_fits`` (if given)
    has seen the feature shape (C, H, W).
    """
    was_training = embedding.training
    embedding.eval()
    feats = keypts = images = None
    filled = 0
    total = len(loader.dataset)
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        inputs = pipeline(batch, device, generator)
        batch_feats = embedding(inputs["data"]).float()  # (B, C, H, W)
        batch_keypts = inputs["meta"]["keypts_normalized"].float()  # (B, K, 2)
        if feats is None:
            if check_fits is not None:
                check_fits(tuple(batch_feats.shape[1:]))
            feats = torch.empty((total, *batch_feats.shape[1:]), dtype=torch.float32)
            keypts = torch.empty((total, *batch_keypts.shape[1:]), dtype=torch.float32)
            images = inputs["data"][:max_images].cpu()
            eye_indices = tuple(inputs["meta"]["eye_indices"])
        count = batch_feats.shape[0]
        feats[filled:filled + count] = batch_feats.cpu()
        keypts[filled:filled + count] = batch_keypts.cpu()
        filled += count
    embedding.train(was_training)
    if feats is None:
        raise ValueError(f"{desc}: the dataset is empty")
    return DescriptorCache(feats=feats[:filled], keypts_normalized=keypts[:filled], images=images,
                           eye_indices=eye_indices)


def cache_splits(embedding: nn.Module, train_loader: DataLoader, valid_loader: DataLoader,
                 train_pipeline, valid_pipeline, device: torch.device, seed: int, config_path):
    """Cache the training split (warps drawn from ``seed``; before its storage is
    allocated, the size of both caches is checked) and the validation split (warps, with
    ``warp_val``, seeded at 0 as every validation pass)."""
    num_images = len(train_loader.dataset) + len(valid_loader.dataset)
    train_cache = compute_descriptors(
        embedding, train_loader, train_pipeline, device,
        torch.Generator(device=device).manual_seed(seed), "caching training descriptors",
        check_fits=lambda shape: check_cache_fits(num_images, shape, config_path))
    valid_cache = compute_descriptors(embedding, valid_loader, valid_pipeline, device,
                                      torch.Generator(device=device).manual_seed(0),
                                      "caching validation descriptors")
    return train_cache, valid_cache
