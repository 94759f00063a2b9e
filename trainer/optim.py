"""Optimizer and learning-rate scheduler registries and the parameter grouping of DVE."""
from typing import Any, Dict, List

import torch
from torch import nn

from utils.config import build_block
from utils.registry import Registry

OPTIMIZERS = Registry("optimizer", "(param_groups, **optimizer.args)")
for _cls in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):
    OPTIMIZERS.register(_cls)

SCHEDULERS = Registry("lr_scheduler", "(optimizer, **lr_scheduler.args)")
for _cls in (torch.optim.lr_scheduler.MultiStepLR, torch.optim.lr_scheduler.StepLR,
             torch.optim.lr_scheduler.ExponentialLR, torch.optim.lr_scheduler.CosineAnnealingLR):
    SCHEDULERS.register(_cls)


def parameter_groups(model: nn.Module, bias_lr=None) -> List[Dict[str, Any]]:
    """Trainable parameters; with ``bias_lr`` the conv biases form a group with that lr."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if bias_lr is None:
        return [{"params": trainable}]
    bias_ids = {id(m.bias) for m in model.modules()
                if isinstance(m, nn.Conv2d) and m.bias is not None}
    biases = [p for p in trainable if id(p) in bias_ids]
    others = [p for p in trainable if id(p) not in bias_ids]
    return [{"params": biases, "lr": bias_lr}, {"params": others}]


def build_optimizer(config: Dict[str, Any], model: nn.Module, path) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.get("bias_lr"))
    return build_block(OPTIMIZERS, config, "optimizer", path, params=groups)


def build_scheduler(config: Dict[str, Any], optimizer, path):
    if "lr_scheduler" not in config:
        return None
    return build_block(SCHEDULERS, config, "lr_scheduler", path, optimizer=optimizer)
