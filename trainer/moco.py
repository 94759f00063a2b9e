"""MoCo pre-training as an embedding method: stage 1 of ContrastLandmark (Cheng, Su and
Maji; SPEC-contrastive section 2).

Each image gives two augmented views (``data_loader.contrastive_views``): the query view
goes through the trained network (the query encoder), the key view through an
exponential moving average of it (the key encoder), and InfoNCE asks every query to pick
its own key among the keys of earlier batches, kept in a queue. The network must return
its L2-normalized embedding for ``forward(x, output="embedding")`` ((B, D)); both
evaluations read its dense descriptors from ``forward(x)[0]`` as usual.

Batch normalization, as the original's 4-GPU ``nn.DataParallel`` computed it: each
encoder normalizes groups of B / ``bn_chunks`` samples with their own statistics, and the
running statistics follow the first group only (DataParallel keeps replica 0's buffer
updates). ShuffleBN: the key batch is permuted before the key encoder and restored after,
so a query and its key never share BN statistics. Under ``torchrun`` each process's batch
is one group (one GPU of the original) and ``bn_chunks`` is not used; keys are shuffled
across the processes as MoCo v1/v2 do (all-gather the key views, a permutation of the
global batch broadcast from rank 0, each process encodes its slice, all-gather the keys
and undo the permutation), and rank 0's key-encoder buffers are broadcast after every
step (replica 0's again).
"""
import copy
import inspect
import logging
import math
from contextlib import contextmanager
from typing import Any, Dict, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from data_loader.contrastive_views import ContrastiveViews
from trainer.method_interface import EmbeddingMethod, MethodContext
from utils.distributed import unwrapped
from utils.registry import ConfigError

_logger = logging.getLogger(__name__)


def info_nce_loss(query: Tensor, keys: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """InfoNCE of MoCo: cross-entropy of [q.k, q.queue^T] / T with target 0, batch mean.

    Args:
        query: (B, D) query embeddings.
        keys: (B, D) their keys (no gradient flows into them).
        queue: (K, D) negatives.
        temperature: T.
    Returns:
        scalar tensor.
    """
    positive = (query * keys.detach()).sum(dim=1, keepdim=True)  # (B, 1)
    negative = query @ queue.detach().t()  # (B, K)
    logits = torch.cat([positive, negative], dim=1) / temperature  # (B, 1 + K)
    target = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return F.cross_entropy(logits, target)


def enqueue(queue: Tensor, pointer: int, keys: Tensor) -> Tuple[Tensor, int]:
    """A new queue (K, D) with ``keys`` (N, D), N <= K, written at rows (pointer + i) mod K,
    and the pointer advanced to (pointer + N) mod K. Out of place: the old queue may still
    be needed for the backward pass of the loss that used it."""
    size = queue.shape[0]
    rows = (pointer + torch.arange(keys.shape[0], device=queue.device)) % size
    return queue.index_copy(0, rows, keys.to(queue)), (pointer + keys.shape[0]) % size


@contextmanager
def running_statistics_frozen(network: nn.Module):
    """Within the block, BatchNorm layers in training mode normalize with batch
    statistics and leave their running statistics (and batch count) untouched."""
    layers = [m for m in network.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    for layer in layers:
        layer.track_running_stats = False
    try:
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True


def forward_in_chunks(network: nn.Module, images: Tensor, chunks: int) -> Tensor:
    """``network(part, output="embedding")`` for each of ``images.chunk(chunks)``
    (DataParallel's split: ceil(B / chunks) per part), concatenated: (B, D). Every part
    gets its own BatchNorm statistics; running statistics are updated by the first only."""
    parts = images.chunk(chunks)
    outputs = [network(parts[0], output="embedding")]
    if len(parts) > 1:
        with running_statistics_frozen(unwrapped(network)):
            outputs += [network(part, output="embedding") for part in parts[1:]]
    return torch.cat(outputs)


def _world() -> Tuple[int, int]:
    """(rank, world size) of this process under ``torchrun``; (0, 1) otherwise."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather(tensor: Tensor) -> Tensor:
    """(N, ...) of every process -> (world N, ...), in rank order."""
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def _broadcast_buffers(module: nn.Module) -> None:
    """Every buffer of ``module`` set to rank 0's (one broadcast per dtype, in the order
    the dtypes first appear, the same in every process)."""
    buffers = list(module.buffers())
    for dtype in dict.fromkeys(buffer.dtype for buffer in buffers):
        same = [buffer for buffer in buffers if buffer.dtype == dtype]
        flat = torch.cat([buffer.reshape(-1) for buffer in same])
        dist.broadcast(flat, src=0)
        for buffer, value in zip(same, flat.split([b.numel() for b in same])):
            buffer.copy_(value.view_as(buffer))


def shuffled_keys(key_encoder: nn.Module, images: Tensor, permutation: Tensor,
                  chunks: int) -> Tensor:
    """Keys (N, D) of ``images`` (N, 3, h, w), encoded in the order ``permutation`` (N,)
    in ``chunks`` BatchNorm groups and returned in the images' order (ShuffleBN on one
    process)."""
    shuffled = forward_in_chunks(key_encoder, images[permutation], chunks)
    keys = torch.empty_like(shuffled)
    keys[permutation] = shuffled
    return keys


def shuffled_keys_across_processes(key_encoder: nn.Module, images: Tensor,
                                   permutation: Tensor) -> Tuple[Tensor, Tensor]:
    """ShuffleBN under ``torchrun``: every process calls it with its key views (B, 3, h, w)
    and a permutation (world B,), of which rank 0's is used. Returns this process's keys
    (B, D) and all processes' keys (world B, D) in rank order."""
    rank, world = _world()
    dist.broadcast(permutation, src=0)
    everyone = _all_gather(images)  # (world B, 3, h, w)
    batch = images.shape[0]
    encoded = key_encoder(everyone[permutation[rank * batch:(rank + 1) * batch]],
                          output="embedding")  # (B, D), one BN group
    _broadcast_buffers(key_encoder)
    gathered = _all_gather(encoded)  # row j: the key of everyone[permutation[j]]
    keys = torch.empty_like(gathered)
    keys[permutation] = gathered
    return keys[rank * batch:(rank + 1) * batch], keys


class MoCo(EmbeddingMethod):
    """MoCo with a queue of negatives, as stage 1 of Cheng, Su and Maji (2020).

    Source: SPEC-contrastive section 2.

    Views: ``{"data": query views (B, 3, h, w), "meta": {"key_images": key views
    (B, 3, h, w), "index", "train", and for training batches "key_permutation": the
    ShuffleBN permutation (world B,)}}``, h = w = loader width - 2 ``crop`` (96 for the
    original's 136 / 20). ``outputs`` is the network's embedding of the query views
    (B, D); ``loss`` encodes the keys, computes InfoNCE against the queue and (training
    batches only) enqueues the keys of all processes in rank order. Validation batches
    use the key encoder in eval mode (running statistics) and leave every state as it is.

    The key encoder is made from the network on the first ``outputs`` call: a copy with
    its parameters, while its buffers start as a fresh network's (BatchNorm running
    statistics reset), as the original built a second network and copied only the
    parameters. It runs in eval mode with its BatchNorm layers in training mode, without
    gradients. After each optimizer step its parameters (not buffers) move as
    p_key = m p_key + (1 - m) p_query. The queue (K, D) starts uniform in (-s, s),
    s = 1 / sqrt(D / 3), not normalized, drawn from the global generator (seeded with the
    run's seed like the network's initialization, hence equal in every process).

    State (``state_dict``): the key encoder's parameters and buffers, the queue and the
    queue pointer. Saving the pointer is a deliberate deviation (the original kept it in
    a plain int and restarted it at 0): ``--resume`` continues bit for bit.

    Args:
        context: ``MethodContext``; its ``crop`` is cut from the views after
            normalization (``do_augmentations`` is not read: the augmentations are the
            method).
        queue_size: K, number of negatives (at least the global batch).
        temperature: T of the logits.
        momentum: m of the key encoder's EMA.
        embedding_dim: D, the network's embedding size.
        bn_chunks: BatchNorm groups of a batch on one process (the original's GPUs).
    """

    uses_config_loss = False  # InfoNCE is the method's own: a config names no "loss"

    def __init__(self, context: MethodContext, queue_size: int = 4096,
                 temperature: float = 0.07, momentum: float = 0.999,
                 embedding_dim: int = 128, bn_chunks: int = 4):
        super().__init__(context)
        for name, value in (("queue_size", queue_size), ("embedding_dim", embedding_dim),
                            ("bn_chunks", bn_chunks)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not temperature > 0 or not 0 <= momentum <= 1:
            raise ValueError(f"temperature ({temperature!r}) must be > 0 and momentum "
                             f"({momentum!r}) in [0, 1]")
        self.temperature, self.momentum, self.bn_chunks = temperature, momentum, bn_chunks
        self.embedding_dim = embedding_dim
        self.pipeline = ContrastiveViews(context.crop)
        bound = 1 / math.sqrt(embedding_dim / 3)
        self.queue = torch.rand(queue_size, embedding_dim) * (2 * bound) - bound  # (K, D)
        self.queue_pointer = 0
        self.key_encoder: Optional[nn.Module] = None
        self._loaded_key_state: Optional[Dict[str, Tensor]] = None

    def views(self, batch, device, generator, train):
        """Two views of every loader image (``data`` (B, 3, H, W) uint8) and, for training
        batches, the ShuffleBN permutation; every draw from ``generator``."""
        queries, keys = self.pipeline(batch["data"].to(device, non_blocking=True), generator)
        meta = {"key_images": keys, "index": batch["index"], "train": train}
        if train:
            meta["key_permutation"] = torch.randperm(
                keys.shape[0] * _world()[1], generator=generator, device=device)
        return {"data": queries, "meta": meta}

    def outputs(self, model: nn.Module, data: Tensor) -> Tensor:
        """The query embeddings (B, D), in ``bn_chunks`` BatchNorm groups when training
        on one process."""
        if self.key_encoder is None:
            self._make_key_encoder(unwrapped(model))
        chunks = self.bn_chunks if model.training and _world()[1] == 1 else 1
        return forward_in_chunks(model, data, chunks)

    def loss(self, outputs: Tensor, meta: Dict[str, Any]) -> Tensor:
        """InfoNCE of the query embeddings ``outputs`` (B, D) against their keys and the
        queue; training batches then enqueue their keys."""
        self._check_sizes(outputs)
        queue = self.queue.to(outputs.device)
        with torch.no_grad():
            keys, everyone = self._keys(meta)  # (B, D), (world B, D) or None
        loss = info_nce_loss(outputs, keys, queue, self.temperature)
        if everyone is not None:
            self.queue, self.queue_pointer = enqueue(queue, self.queue_pointer, everyone)
        return loss

    def after_step(self, model: nn.Module) -> None:
        """EMA of the key encoder's parameters towards ``model``'s (buffers untouched)."""
        if self.key_encoder is None:
            self._make_key_encoder(model)
        with torch.no_grad():
            for key, query in zip(self.key_encoder.parameters(), model.parameters()):
                key.mul_(self.momentum).add_((1 - self.momentum) * query)

    def state_dict(self) -> Dict[str, Any]:
        state = {"queue": self.queue, "queue_pointer": self.queue_pointer}
        key_state = (self.key_encoder.state_dict() if self.key_encoder is not None
                     else self._loaded_key_state)
        if key_state is not None:
            state["key_encoder"] = key_state
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.queue = state["queue"].clone()
        self.queue_pointer = int(state["queue_pointer"])
        if "key_encoder" in state:
            if self.key_encoder is None:  # made from the network on the first outputs()
                self._loaded_key_state = state["key_encoder"]
            else:
                self.key_encoder.load_state_dict(state["key_encoder"])

    # -- helpers --------------------------------------------------------------------
    def _make_key_encoder(self, network: nn.Module) -> None:
        if "output" not in inspect.signature(network.forward).parameters:
            raise ConfigError(f"method MoCo needs a network whose forward(x, output="
                              f"\"embedding\") returns its embedding; {type(network).__name__} "
                              f"has none: use arch ContrastResNet")
        key_encoder = copy.deepcopy(network)
        for module in key_encoder.modules():
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()  # a fresh network's buffers
        for parameter in key_encoder.parameters():
            parameter.requires_grad_(False)
            parameter.grad = None
        if self._loaded_key_state is not None:
            key_encoder.load_state_dict(self._loaded_key_state)
            self._loaded_key_state = None
        self.key_encoder = key_encoder
        if _world()[1] > 1 and self.bn_chunks != 1:
            _logger.info("MoCo under torchrun: each process's batch is one BatchNorm group; "
                         "bn_chunks (%d) is not used", self.bn_chunks)

    def _set_key_mode(self, train: bool) -> None:
        """Eval mode; for training batches BatchNorm layers in training mode."""
        self.key_encoder.eval()
        if train:
            for module in self.key_encoder.modules():
                if isinstance(module, _BatchNorm):
                    module.train()

    def _keys(self, meta: Dict[str, Any]) -> Tuple[Tensor, Optional[Tensor]]:
        """(this batch's keys (B, D), the keys to enqueue (world B, D) or None)."""
        images = meta["key_images"]
        self._set_key_mode(meta["train"])
        if not meta["train"]:
            return self.key_encoder(images, output="embedding"), None
        if _world()[1] > 1:
            return shuffled_keys_across_processes(self.key_encoder, images,
                                                  meta["key_permutation"])
        keys = shuffled_keys(self.key_encoder, images, meta["key_permutation"], self.bn_chunks)
        return keys, keys

    def _check_sizes(self, query: Tensor) -> None:
        if query.dim() != 2 or query.shape[1] != self.embedding_dim:
            raise ConfigError(f"method MoCo: the network's embedding has shape "
                              f"{tuple(query.shape)}, expected (B, {self.embedding_dim}); set "
                              f"method.args.embedding_dim to the network's embedding size")
        global_batch = query.shape[0] * _world()[1]
        if global_batch > self.queue.shape[0]:
            raise ConfigError(f"method MoCo: queue_size {self.queue.shape[0]} is smaller than "
                              f"the global batch {global_batch}; raise method.args.queue_size")
