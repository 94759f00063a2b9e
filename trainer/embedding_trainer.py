"""Training a dense embedding from warped pairs (SPEC sections 2-4, 7)."""
import logging
import math
import time
from typing import Callable, Dict, List, Optional

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from base.base_trainer import BaseTrainer
from data_loader.device_pipeline import PairPipeline

_logger = logging.getLogger(__name__)


class EmbeddingTrainer(BaseTrainer):
    """Args (besides ``BaseTrainer``'s):
        loss_fn: ``(outputs, meta, **loss_args) -> scalar``.
        loss_args: keyword arguments of the loss from the config.
        train_loader, valid_loader: loaders of decoded images (valid may be None).
        train_pipeline, valid_pipeline: ``PairPipeline``s run on the device.
        visualizations: ``(writer, images, outputs, tag, step)`` callables.
        max_batches: limit batches per epoch (``--mini_train``), or None.
        (seed, loader_generator and the rest: ``BaseTrainer``.)
    """

    def __init__(self, *, loss_fn: Callable, loss_args: Dict, train_loader: DataLoader,
                 valid_loader: Optional[DataLoader], train_pipeline: PairPipeline,
                 valid_pipeline: PairPipeline, visualizations: List[Callable] = (),
                 max_batches: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.loss_fn = loss_fn
        self.loss_args = loss_args
        self.train_loader = train_loader
        self.valid_loader = valid_loader
        self.train_pipeline = train_pipeline
        self.valid_pipeline = valid_pipeline
        self.visualizations = list(visualizations)
        self.max_batches = max_batches
        self.global_step = 0

    def batches(self, loader: DataLoader):
        for index, batch in enumerate(loader):
            if self.max_batches is not None and index >= self.max_batches:
                return
            yield index, batch

    def num_batches(self, loader: DataLoader) -> int:
        return len(loader) if self.max_batches is None else min(len(loader), self.max_batches)

    def compute_loss(self, inputs: dict, batch_index: int) -> torch.Tensor:
        outputs = self.model(inputs["data"])
        loss = self.loss_fn(outputs, inputs["meta"], **self.loss_args)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at batch {batch_index} "
                                     f"({self.config['loss']}, args {self.loss_args})")
        return loss, outputs

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        self.model.train()
        total, count, pairs, start = 0.0, 0, 0, time.perf_counter()
        progress = tqdm(self.batches(self.train_loader), total=self.num_batches(self.train_loader),
                        desc=f"epoch {epoch}/{self.epochs}", leave=False, dynamic_ncols=True)
        for batch_index, batch in progress:
            inputs = self.train_pipeline(batch, self.device, self.augment_generator)
            loss, _ = self.compute_loss(inputs, batch_index)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            value = loss.item()
            total, count = total + value, count + 1
            pairs += inputs["meta"]["grid"].shape[0]
            rate = pairs / max(time.perf_counter() - start, 1e-9)
            progress.set_postfix(loss=f"{value:.4f}", pairs_per_s=f"{rate:.1f}")
            if self.writer is not None:
                self.writer.add_scalar("train/loss", value, self.global_step)
            self.global_step += 1
        elapsed = time.perf_counter() - start
        _logger.info("epoch %d: %d batches, %.1f pairs/s", epoch, count, pairs / max(elapsed, 1e-9))
        return {"loss": total / max(count, 1), "pairs_per_s": pairs / max(elapsed, 1e-9),
                "lr": self.optimizer.param_groups[-1]["lr"]}

    @torch.no_grad()
    def valid_epoch(self, epoch: int) -> Dict[str, float]:
        """Validation loss with warps seeded at 0 on every pass (the original's protocol);
        the training generators are untouched."""
        if self.valid_loader is None:
            return {}
        self.model.eval()
        generator = torch.Generator(device=self.device).manual_seed(0)
        total, count = 0.0, 0
        for batch_index, batch in self.batches(self.valid_loader):
            inputs = self.valid_pipeline(batch, self.device, generator)
            loss, outputs = self.compute_loss(inputs, batch_index)
            total, count = total + loss.item(), count + 1
            if batch_index == 0 and self.writer is not None:
                for visualize in self.visualizations:
                    visualize(self.writer, inputs["data"], outputs, "valid", epoch)
        return {"val_loss": total / max(count, 1)} if count else {"val_loss": math.nan}

