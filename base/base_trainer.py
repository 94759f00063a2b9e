"""The epoch loop shared by every trainer: train, validate, log, checkpoint, stop.

Order within an epoch: ``train_epoch`` -> scheduler step -> ``valid_epoch`` -> log ->
periodic checkpoint -> best checkpoint -> early-stop check. Checkpoints hold only tensors
and plain data (``utils.checkpoint``) and are written atomically.
"""
import itertools
import logging
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from base.optim import apply_changed_settings, group_settings, resume_changes
from base.run_settings import RunContext, TrainingSchedule
from utils.checkpoint import load_weights_into, save_checkpoint
from utils.config_values import parse_monitor
from utils.distributed import process_seed, sum_over_processes, unwrapped
from utils.errors import UserError
from utils.mixed_precision import MixedPrecision, float32_outputs

_logger = logging.getLogger(__name__)


class NonFiniteLossError(UserError, FloatingPointError):
    """The loss of a batch is NaN or infinite: the run stops, naming the epoch, the batch,
    the value and what to try."""


class BaseTrainer:
    """Args:
        model: the network being trained.
        optimizer, lr_scheduler: built from the config (scheduler may be None).
        loss_fn: ``(outputs, meta) -> scalar`` tensor (loss arguments already bound).
        schedule: ``TrainingSchedule`` (epochs, checkpoints, monitor, run limits).
        train_loader: the training loader (its shuffling generator is ``run``'s).
        run: ``RunContext`` (device, seed, the config stored in checkpoints, run folder,
            TensorBoard writer, loader generator, process group, mixed precision). The
            augmentation generator is seeded with ``run.seed``; its state and the loader
            generator's go into every checkpoint, so ``--resume`` continues exactly. Under
            ``torchrun`` each process reseeds it every epoch (``utils.distributed.
            process_seed``) and the loaders' distributed samplers shuffle from the seed
            and the epoch, so a resumed run also continues exactly; only rank 0 writes
            checkpoints.
    """

    def __init__(self, model: nn.Module, optimizer, lr_scheduler, loss_fn: Callable,
                 schedule: TrainingSchedule, train_loader: DataLoader, run: RunContext):
        self.model = model
        self.train_loader = train_loader
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.loss_fn = loss_fn
        self.schedule = schedule
        self.config, self.config_path = run.config, run.config_path
        self.device, self.writer = run.device, run.writer
        self.model_dir = Path(run.model_dir) if run.model_dir is not None else None
        self.epochs, self.max_batches = schedule.epochs, schedule.max_batches
        self.monitor_mode, self.monitor_key = parse_monitor(schedule.monitor, run.config_path)
        self.monitor_best = math.inf if self.monitor_mode == "min" else -math.inf
        self.start_epoch = 1
        self.last_checkpoint: Optional[Path] = None
        self.seed, self.group = run.seed, run.group
        self.augment_generator = torch.Generator(device=run.device).manual_seed(run.seed)
        self.loader_generator = run.loader_generator
        self.precision = MixedPrecision(run.amp, run.device)
        self.memory_format = torch.channels_last if run.channels_last else torch.contiguous_format
        self.global_step = 0

    # -- hooks for subclasses -------------------------------------------------------
    def train_epoch(self, epoch: int) -> Dict[str, float]:
        raise NotImplementedError

    def valid_epoch(self, epoch: int) -> Dict[str, float]:
        return {}

    def extra_state(self) -> Dict[str, Any]:
        """Additional checkpoint entries: the random generators' states (and the fp16
        gradient scaler's)."""
        state = {"augment_rng": self.augment_generator.get_state(), **self.precision.state_dict()}
        if self.loader_generator is not None:
            state["loader_rng"] = self.loader_generator.get_state()
        return state

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        if "augment_rng" in state:
            self.augment_generator.set_state(state["augment_rng"].cpu())
        if self.loader_generator is not None and "loader_rng" in state:
            self.start_persistent_workers()
            self.loader_generator.set_state(state["loader_rng"].cpu())
        self.precision.load_state_dict(state)

    def start_persistent_workers(self) -> None:
        """Start the training loader's persistent workers now, as an uninterrupted run
        started them in its first epoch: creating them draws their base seed from the
        loader's generator, which a run draws once and a resumed run must not draw again
        after the generator's state is restored (its next epoch would shuffle
        differently)."""
        loader = self.train_loader
        if getattr(loader, "persistent_workers", False) and loader.num_workers > 0:
            iter(loader)

    # -- helpers of the subclasses' epochs ----------------------------------------------
    def num_batches(self, loader: DataLoader) -> int:
        return len(loader) if self.max_batches is None else min(len(loader), self.max_batches)

    def batches(self, loader: DataLoader):
        """(index, batch) pairs of ``loader``, at most ``max_batches`` of them."""
        return itertools.islice(enumerate(loader), self.num_batches(loader))

    def progress(self, loader: DataLoader, epoch: int) -> tqdm:
        """``batches`` of a training epoch under a progress bar (rank 0 only). Under
        ``torchrun`` the loader's distributed sampler and the augmentation stream are set
        to ``epoch`` first."""
        if self.group.distributed:
            if hasattr(loader.sampler, "set_epoch"):
                loader.sampler.set_epoch(epoch)
            self.augment_generator.manual_seed(process_seed(self.seed, self.group, epoch))
        return tqdm(self.batches(loader), total=self.num_batches(loader),
                    desc=f"epoch {epoch}/{self.epochs}", leave=False, dynamic_ncols=True,
                    disable=not self.group.is_main or None)

    def network_input(self, images: Tensor) -> Tensor:
        """A (B, 3, H, W) batch in the configured memory format (``channels_last``)."""
        return images.contiguous(memory_format=self.memory_format)

    def summed(self, values: Dict[str, float]) -> Dict[str, float]:
        """``values`` (an epoch's sums and counts) summed over the ``torchrun`` processes;
        one process: as they are."""
        return sum_over_processes(values, self.group)

    def compute_loss(self, outputs, meta: dict, epoch: int, batch_index: int,
                     split: str = "training") -> Tensor:
        """The configured loss of one batch (``batch_index`` within the ``split`` pass of
        ``epoch``), in float32 outside autocast; a NaN or infinite value raises
        :class:`NonFiniteLossError`."""
        with self.precision.full_precision():
            loss = self.loss_fn(float32_outputs(outputs), meta)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"epoch {epoch}, {split} batch index {batch_index}: the loss "
                f"{self.config.get('loss', self.config.get('method', {}).get('type'))} "
                f"is {loss.item()} (loss_args {self.config.get('loss_args', {})}); the run "
                f"stops: lower the learning rate (optimizer.args.lr in {self.config_path}) "
                f"or check the data "
                f"(broken images or annotations)")
        return loss

    def optimize(self, loss: Tensor) -> float:
        """One optimizer step on ``loss``, logged to TensorBoard; -> its value."""
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.step(loss, self.optimizer)
        value = loss.item()
        if self.writer is not None:
            self.writer.add_scalar("train/loss", value, self.global_step)
        self.global_step += 1
        return value

    # -- the loop -------------------------------------------------------------------
    def train(self) -> Dict[str, float]:
        log: Dict[str, float] = {}
        epochs_without_improvement = 0
        last_epoch = self.epochs
        if self.schedule.max_epochs is not None:
            last_epoch = min(last_epoch, self.start_epoch + self.schedule.max_epochs - 1)
        for epoch in range(self.start_epoch, last_epoch + 1):
            if self.schedule.lr_step == "epoch_start":
                self.step_scheduler(epoch)
            log = {"epoch": epoch, **self.train_epoch(epoch)}
            if self.schedule.lr_step == "after_epoch":
                self.step_scheduler(epoch)
            log.update(self.valid_epoch(epoch))
            self.log_epoch(log)
            improved = self.update_monitor(log)
            if epoch % self.schedule.save_period == 0 or epoch == last_epoch:
                self.save(epoch, f"checkpoint-epoch{epoch}.pth")
            if improved:
                self.save(epoch, "model_best.pth")
            epochs_without_improvement = 0 if improved else epochs_without_improvement + 1
            early_stop = self.schedule.early_stop
            if self.monitor_mode != "off" and 0 < early_stop <= epochs_without_improvement:
                _logger.info("validation %s did not improve for %d epochs: stopping",
                             self.monitor_key, early_stop)
                break
        return log

    def step_scheduler(self, epoch: int) -> None:
        """``after_epoch``: the original called ``scheduler.step(epoch - 1)`` after each
        1-based epoch, so a milestone m takes effect from epoch m + 2; stepping from epoch
        2 on reproduces it. ``epoch_start``: one step before every epoch (epoch e trains
        at step e; PyTorch's warning about a step before the first optimizer step is
        expected there and silenced)."""
        if self.lr_scheduler is None:
            return
        if self.schedule.lr_step == "epoch_start":
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*optimizer.step")
                self.lr_scheduler.step()
        elif epoch >= 2:
            self.lr_scheduler.step()

    def log_epoch(self, log: Dict[str, float]) -> None:
        for key, value in log.items():
            _logger.info("    %-20s: %s", key, f"{value:.6g}" if isinstance(value, float) else value)
        if self.writer is not None:
            for key, value in log.items():
                if key != "epoch":
                    self.writer.add_scalar(f"epoch/{key}", value, log["epoch"])
            self.writer.flush()

    def update_monitor(self, log: Dict[str, float]) -> bool:
        if self.monitor_mode == "off":
            return False
        value = log[self.monitor_key]
        better = value < self.monitor_best if self.monitor_mode == "min" else value > self.monitor_best
        if better:
            self.monitor_best = value
        return better

    # -- checkpoints ----------------------------------------------------------------
    def checkpoint_state(self, epoch: int) -> Dict[str, Any]:
        model = unwrapped(self.model)
        return {
            "arch": type(model).__name__,
            "epoch": epoch,
            "state_dict": model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler else None,
            "monitor_best": float(self.monitor_best),
            "config": self.config,
            "config_path": self.config_path,
            **self.extra_state(),
        }

    def save(self, epoch: int, filename: str) -> Optional[Path]:
        """Write ``model_dir / filename`` (rank 0 only; other processes return None)."""
        if not self.group.is_main:
            return None
        path = save_checkpoint(self.checkpoint_state(epoch), self.model_dir / filename)
        _logger.info("saved %s", path)
        if filename.startswith("checkpoint-"):
            self.last_checkpoint = path
        return path

    def resume(self, path, state: Optional[Dict[str, Any]] = None) -> None:
        """Restore model, optimizer, scheduler, epoch, monitor and random states from
        checkpoint ``path`` (``state``: it as already loaded); from a released DVE
        checkpoint, only the weights and the epoch.

        Optimizer and scheduler settings changed since the checkpoint's run
        (``base.optim.resume_changes``: e.g. ``optimizer.args.lr``,
        ``lr_scheduler.args.milestones``) are applied and logged: the learning rate is
        what the new schedule gives at this epoch.
        """
        state = load_weights_into(self.model, path, self.device, source="--resume", state=state)
        epoch = int(state["epoch"]) if state.get("epoch") is not None else 0
        if state.get("released"):
            _logger.warning("%s is a released DVE checkpoint: optimizer, scheduler and random "
                            "states start afresh", path)
        else:
            self.restore_optimizer(state, path)
            self.monitor_best = state.get("monitor_best", self.monitor_best)
            self.load_extra_state(state)
        self.start_epoch = epoch + 1
        _logger.info("resumed from %s (epoch %d)", path, epoch)

    def restore_optimizer(self, state: Dict[str, Any], path) -> None:
        """The checkpoint's optimizer and scheduler states, then the changed settings."""
        fresh = group_settings(self.optimizer)
        changes = resume_changes(state.get("config"), self.config, path)
        self.optimizer.load_state_dict(state["optimizer"])
        saved_scheduler = state.get("lr_scheduler")
        if self.lr_scheduler is not None and saved_scheduler is not None:
            self.lr_scheduler.load_state_dict(saved_scheduler)
        if changes:
            steps = saved_scheduler["last_epoch"] if saved_scheduler else 0
            rates = apply_changed_settings(self.optimizer, self.lr_scheduler, fresh, steps,
                                           self.config, self.config_path)
            _logger.info("--resume: applied the settings changed since the checkpoint: %s; "
                         "learning rates now %s", "; ".join(changes),
                         ", ".join(f"{rate:.6g}" for rate in rates))
