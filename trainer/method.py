"""A landmark-learning method as a unit that plugs into the shared embedding trainer.

A method says how a loader batch becomes network inputs (its views), what the loss of
the network's outputs is, what it does after each optimizer step, and what training
state of its own it keeps (checkpointed with the run and restored by ``--resume``). The
trainer owns everything else: the network, the optimizer and schedule, the epoch loop,
logging, checkpoints, the matching evaluation at the end.

A config picks a method with ``"method": {"type": NAME, "args": {...}}``; without it the
method is :class:`WarpedPairs`, which is how the original's configs (DVE and the plain
equivariance loss, chosen by ``loss``) run. ``docs/adding-a-method.md`` shows a new one.
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

import torch
from torch import Tensor, nn

from data_loader.device_pipeline import build_pair_pipeline
from utils.registry import Registry, named


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


class WarpedPairs(EmbeddingMethod):
    """Pairs of one image related by a random warp: the views are the interleaved warped
    pairs with their correspondence grid in ``meta``, and the loss is the config's
    ``loss``, ``dense_correlation_loss_dve`` (DVE) or ``dense_correlation_loss`` (the plain
    equivariance loss of Thewlis et al. 2017). Training batches get the photometric
    augmentation of datasets with ``do_augmentations``.

    Source: SPEC sections 2-4 (warps, pairs, losses)."""

    def __init__(self, context: MethodContext):
        super().__init__(context)
        self.train_pipeline, self.valid_pipeline = (
            build_pair_pipeline(context.warper, context.crop, context.do_augmentations, train)
            for train in (True, False))

    def views(self, batch, device, generator, train):
        pipeline = self.train_pipeline if train else self.valid_pipeline
        return pipeline(batch, device, generator)


METHODS = Registry("method", "(context: MethodContext, **method.args); returns an "
                   "EmbeddingMethod", named(WarpedPairs))
DEFAULT_METHOD = "WarpedPairs"
