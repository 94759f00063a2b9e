"""Choosing the device from ``--device`` (original style GPU ids or torch device names)."""
from typing import Optional

import torch

from utils.registry import ConfigError


def resolve_device(text: Optional[str]) -> torch.device:
    """``None`` -> cuda if available else cpu; ``"0"``/``"0,1"`` -> ``cuda:0``; ``"cpu"`` etc."""
    if text is None or text == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    first = text.split(",")[0].strip()
    name = f"cuda:{first}" if first.isdigit() else first
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {text}: not a device; use cpu, cuda, cuda:N or a GPU id") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {text}: CUDA is not available on this machine; use --device cpu")
    return device
