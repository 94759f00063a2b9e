"""The plain values a trainer runs with, decided once from the resolved run configuration
(``trainer.run_config``) and the command line."""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from utils.distributed import SINGLE_PROCESS, ProcessGroup


@dataclass(frozen=True)
class TrainingSchedule:
    """How long a run trains and when it checkpoints (the config's ``trainer`` block).

    epochs: the last epoch (``trainer.epochs``).
    save_period: a checkpoint every this many epochs, and after the last.
    monitor: ``"off"`` or ``"min KEY"``/``"max KEY"`` of a logged key (``model_best.pth``).
    early_stop: stop after this many epochs without improvement of ``monitor`` (0: never).
    max_epochs: train at most this many epochs in this process (``--train_single_epoch``).
    max_batches: at most this many batches an epoch (``--mini_train``), or None.
    lr_step: when the scheduler steps: ``"after_epoch"`` (DVE's original: after every
        epoch from the second on, ``BaseTrainer.step_scheduler``) or ``"epoch_start"``
        (before every epoch, so epoch e trains at step e: the contrastive method's code,
        SPEC-contrastive sections 2 and 4).
    """
    epochs: int
    save_period: int = 1
    monitor: str = "off"
    early_stop: int = 0
    max_epochs: Optional[int] = None
    max_batches: Optional[int] = None
    lr_step: str = "after_epoch"


@dataclass
class RunContext:
    """Where a run happens and what its checkpoints record.

    device: where the model and batches live.
    seed: seeds the trainer's on-device augmentation generator.
    config: the resolved config, stored in every checkpoint (with ``config_path``).
    model_dir: the folder of ``checkpoint-epoch<N>.pth`` and ``model_best.pth`` (None in
        the processes other than rank 0, which write nothing).
    writer: a TensorBoard ``SummaryWriter``, or None.
    loader_generator: the training loader's shuffling generator, or None; its state goes
        into every checkpoint, so ``--resume`` continues the same order.
    group: this process among the ``torchrun`` processes (``utils.distributed``); only
        rank 0 writes checkpoints.
    amp: the config's ``amp`` (``utils.mixed_precision``): "bf16", "fp16" or False.
    channels_last: the convolutions' inputs in channels-last memory format.
    """
    device: torch.device
    seed: int
    config: Dict[str, Any]
    config_path: str
    model_dir: Optional[Path]
    writer: Any = None
    loader_generator: Optional[torch.Generator] = None
    group: ProcessGroup = SINGLE_PROCESS
    amp: Any = False
    channels_last: bool = False
