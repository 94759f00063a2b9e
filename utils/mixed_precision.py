"""Mixed-precision training: the config's ``"amp"`` (``"bf16"``, ``"fp16"`` or false).

The network's forward pass runs under ``torch.autocast`` in the chosen type; losses are
computed outside it on float32 copies of the outputs, so their softmax, correlation and
distance terms keep float32 (``compute_loss`` of ``base.base_trainer``). ``"fp16"`` adds
a gradient scaler (its state goes into checkpoints); ``"bf16"`` needs none.
"""
from typing import Any, Dict, Optional

import torch
from torch import Tensor

from utils.registry import ConfigError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: Any) -> Optional[torch.dtype]:
    """``"bf16"`` / ``"fp16"`` -> the autocast type; false or None -> None (float32)."""
    if amp in (False, None):
        return None
    if amp not in AMP_DTYPES:
        raise ConfigError(f"amp {amp!r}: expected \"bf16\", \"fp16\" or false")
    return AMP_DTYPES[amp]


class MixedPrecision:
    """Autocast and loss scaling of one run.

    Args:
        amp: the config's ``amp`` (see :func:`amp_dtype`).
        device: the training device (autocast's device type).
    """

    def __init__(self, amp: Any, device: torch.device):
        self.dtype = amp_dtype(amp)
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self):
        """The context of a forward pass: autocast to ``dtype``, or nothing."""
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    def full_precision(self):
        """The context of a loss: autocast off (float32 arithmetic)."""
        return torch.autocast(self.device_type, enabled=False)

    def backward(self, loss: Tensor) -> None:
        """Gradients of ``loss`` (scaled for ``"fp16"``)."""
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer's step on the gradients of :meth:`backward` (for ``"fp16"`` the
        scaler's: a step whose gradients overflow is skipped and the scale lowered)."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def step(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward pass and optimizer step on ``loss``."""
        self.backward(loss)
        self.optimizer_step(optimizer)

    def state_dict(self) -> Dict[str, Any]:
        return {} if self.scaler is None else {"grad_scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])


def float32_outputs(outputs: Any) -> Any:
    """``outputs`` (a tensor, or lists / tuples of them) with every floating tensor in
    float32 (float32 tensors are returned as they are: no copy)."""
    if isinstance(outputs, Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(float32_outputs(item) for item in outputs)
    return outputs
