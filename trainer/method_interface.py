"""The interface of a landmark-learning method (``trainer.method`` has the registry of
the built-in ones and ``docs/adding-a-method.md`` a walk-through): what the embedding
trainer calls per batch and what a method's constructor receives."""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

import torch
from torch import Tensor, nn


@dataclass
class MethodContext:
    """What the embedding task hands every method's constructor (plain values of the
    resolved config).

    train_set, valid_set: the datasets (loader items: ``data`` (3, H, W) uint8, ``index``,
        with ``use_keypoints`` also ``keypts`` (K, 2) pixels).
    crop: pixels to remove on every side of the loader images (``dataset.args.crop``).
    do_augmentations: whether training views get photometric noise
        (``dataset.args.do_augmentations``).
    warper: the config's ``warper`` (pairs with their dense correspondence), or None.
    loss_fn: the config's ``loss``, called ``loss_fn(outputs, meta, **loss_args)``.
    loss_args: the config's resolved ``loss_args``.
    """
    train_set: Any
    valid_set: Any
    crop: int
    do_augmentations: bool
    warper: Any
    loss_fn: Callable
    loss_args: Dict[str, Any]


class EmbeddingMethod:
    """The interface: override ``views`` and, where needed, the rest.

    Args:
        context: :class:`MethodContext`. Subclasses take their own keyword arguments (the
            config's ``method.args``) after it.
    """

    uses_config_loss = True  # False for a method whose loss is its own (no ``loss`` key)

    def __init__(self, context: MethodContext):
        self.context = context

    def views(self, batch: Dict[str, Any], device: torch.device,
              generator: Optional[torch.Generator], train: bool) -> Dict[str, Any]:
        """``{"data": (N, 3, H, W) normalized images, "meta": dict}`` on ``device`` for a
        loader ``batch``; ``generator`` draws every random choice (the trainer seeds it);
        ``train`` False for validation batches."""
        raise NotImplementedError

    def outputs(self, model: nn.Module, data: Tensor):
        """The network's outputs for the views' ``data`` (what :meth:`loss` receives and,
        for validation batches, the visualizations): ``model(data)`` by default, a list
        whose first entry is the (N, C, h, w) descriptors. ``model`` may be wrapped
        (``DistributedDataParallel``): call it, do not reach inside, so that gradients
        are averaged over the processes."""
        return model(data)

    def loss(self, outputs, meta: Dict[str, Any]) -> Tensor:
        """Scalar loss of the network's ``outputs`` (a list of (N, C, h, w) maps) for the
        batch described by ``meta``: the configured loss by default."""
        return self.context.loss_fn(outputs, meta, **self.context.loss_args)

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimizer step (e.g. an EMA update); nothing by default."""

    def state_dict(self) -> Dict[str, Any]:
        """The method's own training state (tensors and plain data), saved in every
        checkpoint under ``method``; empty by default."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (on ``--resume``)."""
