"""``torch.hub`` entry points: the DVE embedding networks, untrained or released.

    torch.hub.load("<clone of this repository>", "smallnet", dim=64,
                   pretrained="celeba-smallnet-64d-dve", source="local")
    torch.hub.load("<clone>", "hourglass", pretrained="celeba-hourglass-64d-dve", source="local")

``pretrained`` is a released model's name (``python -m misc.sync_models --list``;
downloaded once into ``$DVE_CACHE``, from ``$DVE_MODELS_URL``, see ``utils.model_zoo``)
or a checkpoint file, run folder or glob; its weights go through the safe loader
(``utils.checkpoint.load_weights_into``: the embedding part of a regressor checkpoint,
``module.`` prefixes). The network takes images (B, 3, H, W) and returns a list with one
tensor of dense descriptors (B, dim, H/2, W/2) (SPEC section 1).
"""
from typing import Any, Optional

from torch import nn

from model.registry import NETWORKS
from trainer.run_config import read_config
from utils.checkpoint import CheckpointError, load_checkpoint, load_weights_into
from utils.checkpoint_search import require_checkpoint

dependencies = ["torch", "numpy", "tqdm"]
UNTRAINED_DIM = 64


def _network(arch: str, dim: Optional[int], pretrained: Optional[str], kwargs: Any) -> nn.Module:
    """``arch`` built with ``dim`` output channels and ``kwargs``; with ``pretrained``, the
    arguments of its config (``arch.args``; ``dim`` and ``kwargs`` override them) and its
    weights, in eval mode. Raises ``CheckpointError`` for a checkpoint of another
    network or weights that do not fit."""
    if pretrained is None:
        return NETWORKS.get(arch)(num_output_channels=dim or UNTRAINED_DIM, **kwargs)
    checkpoint = require_checkpoint(pretrained, source="pretrained")
    state = load_checkpoint(checkpoint)
    args = dict(kwargs)
    if not state.get("bare"):  # a bare state dict has no config: dim and kwargs only
        config, _ = read_config(None, state, checkpoint, [])
        if config["arch"]["type"] != arch:
            raise CheckpointError(f"pretrained {pretrained}: a {config['arch']['type']} "
                                  f"checkpoint, not a {arch} one; load it with the other "
                                  f"entry point")
        args = {**config["arch"].get("args", {}), **kwargs}
    if dim is not None:
        args["num_output_channels"] = dim
    network = NETWORKS.get(arch)(**args)
    load_weights_into(network, checkpoint, "cpu", source="pretrained", state=state)
    return network.eval()


def smallnet(dim: Optional[int] = None, pretrained: Optional[str] = None,
             **kwargs: Any) -> nn.Module:
    """SmallNet (SPEC section 1): ``dim`` descriptor channels (default: the pretrained
    model's, else 64); ``pretrained``: a released model name or checkpoint, None for
    the untrained network (train mode); ``kwargs``: other ``SmallNet`` arguments."""
    return _network("SmallNet", dim, pretrained, kwargs)


def hourglass(dim: Optional[int] = None, pretrained: Optional[str] = None,
              **kwargs: Any) -> nn.Module:
    """HourglassNet (SPEC section 1): as :func:`smallnet`, e.g.
    ``pretrained="celeba-hourglass-64d-dve"``; ``kwargs``: other ``HourglassNet``
    arguments."""
    return _network("HourglassNet", dim, pretrained, kwargs)
