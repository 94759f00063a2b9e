"""Training a dense embedding with a method (warped pairs for DVE; SPEC sections 2-4, 7)."""
import logging
import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Set

import torch
from torch.utils.data import DataLoader

from base.base_trainer import BaseTrainer
from trainer.method import EmbeddingMethod
from utils.distributed import unwrapped

_logger = logging.getLogger(__name__)


class EmbeddingTrainer(BaseTrainer):
    """Trains an embedding with a method (``trainer.method``): the method makes each
    batch's views and loss and keeps its own state; this class runs the epochs.

    Args (besides ``BaseTrainer``'s):
        method: an ``EmbeddingMethod``; its ``state_dict()`` goes into every checkpoint
            under ``method`` and is restored on ``--resume``.
        train_loader, valid_loader: loaders of decoded images (valid may be None).
        visualizations: ``(writer, images, outputs, tag, step)`` callables.
    """

    def __init__(self, *, method: EmbeddingMethod, train_loader: DataLoader,
                 valid_loader: Optional[DataLoader], visualizations: List[Callable] = (),
                 **kwargs):
        super().__init__(loss_fn=method.loss, train_loader=train_loader, **kwargs)
        self.method = method
        self.valid_loader = valid_loader
        self.visualizations = list(visualizations)

    @staticmethod
    def logged_keys(metric_names: Sequence[str] = ()) -> Set[str]:
        """The keys of an epoch's log, which ``trainer.monitor`` may name (no metrics)."""
        return {"epoch", "loss", "pairs_per_s", "lr", "val_loss"}

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        self.model.train()
        total, count, pairs, start = 0.0, 0, 0, time.perf_counter()
        progress = self.progress(self.train_loader, epoch)
        for batch_index, batch in progress:
            inputs = self.method.views(batch, self.device, self.augment_generator, train=True)
            with self.precision.autocast():
                outputs = self.method.outputs(self.model, self.network_input(inputs["data"]))
            value = self.optimize(self.compute_loss(outputs, inputs["meta"], epoch, batch_index))
            self.method.after_step(unwrapped(self.model))
            total, count = total + value, count + 1
            pairs += batch["data"].shape[0]  # loader images: one pair each for WarpedPairs
            rate = pairs / max(time.perf_counter() - start, 1e-9)
            progress.set_postfix(loss=f"{value:.4f}", pairs_per_s=f"{rate:.1f}")
        elapsed = time.perf_counter() - start
        sums = self.summed({"loss": total, "batches": count, "pairs": pairs})
        _logger.info("epoch %d: %d batches, %.1f pairs/s", epoch, count,
                     sums["pairs"] / max(elapsed, 1e-9))
        return {"loss": sums["loss"] / max(sums["batches"], 1),
                "pairs_per_s": sums["pairs"] / max(elapsed, 1e-9),
                "lr": self.optimizer.param_groups[-1]["lr"]}

    @torch.no_grad()
    def valid_epoch(self, epoch: int) -> Dict[str, float]:
        """Validation loss with warps seeded at 0 on every pass (the original's protocol);
        the training generators are untouched. Under ``torchrun`` every process runs the
        whole (small) validation split on its unwrapped copy of the same weights, so all
        take the same monitor and early-stop decisions without communicating."""
        if self.valid_loader is None:
            return {}
        self.model.eval()
        generator = torch.Generator(device=self.device).manual_seed(0)
        total, count = 0.0, 0
        for batch_index, batch in self.batches(self.valid_loader):
            inputs = self.method.views(batch, self.device, generator, train=False)
            with self.precision.autocast():
                outputs = self.method.outputs(unwrapped(self.model),
                                              self.network_input(inputs["data"]))
            loss = self.compute_loss(outputs, inputs["meta"], epoch, batch_index, "validation")
            total, count = total + loss.item(), count + 1
            if batch_index == 0 and self.writer is not None:
                for visualize in self.visualizations:
                    visualize(self.writer, inputs["data"], outputs, "valid", epoch)
        return {"val_loss": total / max(count, 1)} if count else {"val_loss": math.nan}

    def extra_state(self) -> Dict[str, Any]:
        return {**super().extra_state(), "method": self.method.state_dict()}

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        super().load_extra_state(state)
        if "method" in state:
            self.method.load_state_dict(state["method"])
