"""Training a landmark regressor on a frozen embedding (SPEC sections 1, 3, 7).

The model is ``Sequential(FrozenEmbedding, [upsample], regressor)``. Uncached, every
batch goes through the whole model; with ``cache_descriptors`` the frozen embedding was
run once (``trainer.descriptor_cache``) and batches of cached features go through the
rest of the sequence. Either way a batch yields ``(pred, intermediate)`` and the
descriptors (for visualizations).
"""
import logging
import math
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Set

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from base.base_trainer import BaseTrainer
from data_loader.loaders import make_loader
from model.keypoint_metrics import inter_ocular_errors
from trainer.descriptor_cache import DescriptorCache
from utils.distributed import SINGLE_PROCESS, ProcessGroup, unwrapped, wrap_for_training
from utils.mixed_precision import float32_outputs

_logger = logging.getLogger(__name__)


def index_loader(num_items: int, batch_size: int, train: bool,
                 generator: Optional[torch.Generator] = None,
                 group: ProcessGroup = SINGLE_PROCESS, seed: int = 0) -> DataLoader:
    """Batches of indices into a cache, in the order a ``make_loader`` loader of the same
    length, batch size, generator and process group visits its dataset (same sampler,
    same draws)."""
    return make_loader(range(num_items), batch_size, train, torch.device("cpu"), 0, generator,
                       group, seed)


class KeypointTrainer(BaseTrainer):
    """Args (besides ``BaseTrainer``'s; ``model`` is the regression Sequential):
        metrics: name (as the config's ``metrics`` writes it) -> ``(outputs, meta) -> float``,
            logged per epoch under that name (mean per image; ``val_<name>`` for validation).
        train_loader, valid_loader: image loaders, or index loaders (``index_loader``) with
            ``train_cache``/``valid_cache``.
        train_pipeline, valid_pipeline: ``KeypointPipeline``s (unused for cached splits).
        train_cache, valid_cache: ``DescriptorCache``s, or None.
        visualizations: embedding visualizations (``trainer.builders.resolve_visualizations``),
            called ``(writer, images, [descriptors (N, C, H, W)], tag, step)``.
        keypoint_visualizations: landmark visualizations
            (``trainer.builders.resolve_keypoint_visualizations``), called ``(writer, images,
            (pred (N, K, 2), intermediate (N, K, nI, 2)), tag, step, keypoints=ground truth
            (N, K, 2))``, coordinates normalized to [-1, 1].
        (loss_fn, max_batches, seed, loader_generator and the rest: ``BaseTrainer``.)
    """

    def __init__(self, *, metrics: Mapping[str, Callable], train_loader: DataLoader,
                 valid_loader: Optional[DataLoader], train_pipeline, valid_pipeline,
                 train_cache: Optional[DescriptorCache] = None,
                 valid_cache: Optional[DescriptorCache] = None,
                 visualizations: Sequence[Callable] = (),
                 keypoint_visualizations: Sequence[Callable] = (), **kwargs):
        super().__init__(train_loader=train_loader, **kwargs)
        self.metrics = dict(metrics)
        self.valid_loader = valid_loader
        self.train_pipeline, self.valid_pipeline = train_pipeline, valid_pipeline
        self.train_cache, self.valid_cache = train_cache, valid_cache
        self.visualizations = list(visualizations)
        self.keypoint_visualizations = list(keypoint_visualizations)
        self.embedding = self.model[0]
        # under torchrun the trained head averages its gradients over the processes
        self.head = wrap_for_training(self.model[1:], self.group, self.device)
        self.last_valid_errors: Optional[Tensor] = None

    @staticmethod
    def logged_keys(metric_names: Sequence[str] = ()) -> Set[str]:
        """The keys of an epoch's log, which ``trainer.monitor`` may name."""
        return ({"epoch", "loss", "images_per_s", "lr", "val_loss"} | set(metric_names)
                | {f"val_{name}" for name in metric_names})

    def forward_batch(self, batch, cache: Optional[DescriptorCache], pipeline,
                      generator: Optional[torch.Generator], train: bool = True):
        """-> (outputs (pred, intermediate) in float32, meta, images or None, descriptors);
        ``train``: through the (distributed) training head, else its unwrapped copy."""
        if cache is not None:
            indices = batch  # (B,) indices into the cache
            feats = cache.feats[indices].to(self.device, non_blocking=True)  # (B, C, H, W)
            meta = {"keypts_normalized": cache.keypts_normalized[indices].to(self.device),
                    "eye_indices": cache.eye_indices, "index": indices}
            images = None
        else:
            inputs = pipeline(batch, self.device, generator)
            with self.precision.autocast():
                feats = self.embedding(self.network_input(inputs["data"]))  # (B, C, H, W)
            meta, images = inputs["meta"], inputs["data"]
        head = self.head if train else unwrapped(self.head)
        with self.precision.autocast():
            outputs = head(feats)
        return float32_outputs(outputs), meta, images, feats

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        self.model.train()  # the FrozenEmbedding keeps its batch norm in eval mode
        sums: Dict[str, float] = {}
        images_seen, batches_seen, start = 0, 0, time.perf_counter()
        progress = self.progress(self.train_loader, epoch)
        for batch_index, batch in progress:
            outputs, meta, _, _ = self.forward_batch(batch, self.train_cache, self.train_pipeline,
                                                     self.augment_generator)
            value = self.optimize(self.compute_loss(outputs, meta, epoch, batch_index))
            count = outputs[0].shape[0]
            self._accumulate(sums, "loss", value, 1)
            for name, metric in self.metrics.items():
                self._accumulate(sums, name, metric(outputs, meta), count)
            images_seen, batches_seen = images_seen + count, batches_seen + 1
            progress.set_postfix(loss=f"{value:.4f}")
        elapsed = max(time.perf_counter() - start, 1e-9)
        sums = self.summed({**sums, "images": images_seen, "batches": batches_seen})
        log = {"loss": sums.get("loss", math.nan) / max(sums["batches"], 1)}
        log.update({name: sums[name] / max(sums["images"], 1)
                    for name in self.metrics if name in sums})
        log.update({"images_per_s": sums["images"] / elapsed,
                    "lr": self.optimizer.param_groups[-1]["lr"]})
        return log

    @staticmethod
    def _accumulate(sums: Dict[str, float], key: str, value: float, weight: int) -> None:
        sums[key] = sums.get(key, 0.0) + value * weight

    @torch.no_grad()
    def valid_epoch(self, epoch: int) -> Dict[str, float]:
        """Loss and metrics over the validation split (warps, with ``warp_val``, seeded at 0
        on every pass); keeps the per-image inter-ocular errors of the last pass."""
        if self.valid_loader is None:
            return {}
        self.model.eval()
        generator = torch.Generator(device=self.device).manual_seed(0)
        sums: Dict[str, float] = {}
        errors: List[Tensor] = []
        batches_seen = 0
        for batch_index, batch in self.batches(self.valid_loader):
            outputs, meta, images, feats = self.forward_batch(
                batch, self.valid_cache, self.valid_pipeline, generator, train=False)
            loss = self.compute_loss(outputs, meta, epoch, batch_index, "validation")
            self._accumulate(sums, "val_loss", loss.item(), 1)
            for name, metric in self.metrics.items():
                self._accumulate(sums, f"val_{name}", metric(outputs, meta), outputs[0].shape[0])
            target = meta["keypts_normalized"].to(outputs[0].dtype)
            errors.append(inter_ocular_errors(outputs[0], target, meta["eye_indices"]).cpu())
            if batch_index == 0:
                self.visualize(images, outputs, feats, target, epoch)
            batches_seen += 1
        if not batches_seen:
            return {"val_loss": math.nan}
        self.last_valid_errors = torch.cat(errors)
        log = {"val_loss": sums["val_loss"] / batches_seen}
        log.update({k: v / self.last_valid_errors.numel() for k, v in sums.items() if k != "val_loss"})
        return log

    def visualize(self, images: Optional[Tensor], outputs, feats: Tensor, target: Tensor,
                  epoch: int) -> None:
        if self.writer is None or not (self.visualizations or self.keypoint_visualizations):
            return
        if images is None:  # cached: the first validation images were kept
            images = self.valid_cache.images.to(self.device)
        count = min(images.shape[0], outputs[0].shape[0])
        images = images[:count]
        for visualize in self.keypoint_visualizations:
            visualize(self.writer, images, (outputs[0][:count], outputs[1][:count]), "valid",
                      epoch, keypoints=target[:count])
        for visualize in self.visualizations:
            visualize(self.writer, images, [feats[:count]], "valid", epoch)

