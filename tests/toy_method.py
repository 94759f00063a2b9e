"""A toy landmark-learning method that lives outside the core, as a new method would.

``FlipEquivariance``: the views are each image and its mirror image; the loss asks the
descriptors of the mirror image, mirrored back, to equal the image's own (with a term
that keeps them from collapsing to a constant). It keeps state of its own, as MoCo-style
methods do: an exponential moving average of the network's parameters and a step
counter, checkpointed and restored on ``--resume``. Configs name it and its loss by
their dotted paths (``tests.toy_method.FlipEquivariance``,
``tests.toy_method.flip_consistency_loss``); nothing in the core knows of it.
"""
from typing import Any, Dict

import torch
from torch import Tensor, nn

from data_loader.device_pipeline import interleave
from utils.image_normalization import normalize_images
from data_loader.warper import crop_images
from trainer.method import EmbeddingMethod, MethodContext


class FlipEquivariance(EmbeddingMethod):
    """Args:
        context: the ``MethodContext`` (the dataset's ``crop`` is applied to both views).
        ema_decay: weight of the old average in the parameter EMA after each step.
    """

    def __init__(self, context: MethodContext, ema_decay: float = 0.9):
        super().__init__(context)
        self.crop = context.crop
        self.ema_decay = ema_decay
        self.steps = torch.zeros((), dtype=torch.int64)
        self.ema: Dict[str, Tensor] = {}

    def views(self, batch, device, generator, train):
        images = crop_images(batch["data"].to(device).float(), self.crop) / 255.0
        data = normalize_images(interleave(images, images.flip(-1)))  # (2B, 3, h, w)
        return {"data": data, "meta": {"index": batch["index"]}}

    def after_step(self, model: nn.Module) -> None:
        self.steps += 1
        with torch.no_grad():
            for name, value in model.state_dict().items():
                if value.is_floating_point():
                    old = self.ema.get(name, value)
                    self.ema[name] = self.ema_decay * old + (1 - self.ema_decay) * value

    def state_dict(self) -> Dict[str, Any]:
        return {"steps": self.steps.clone(), "ema": {k: v.clone() for k, v in self.ema.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.steps = state["steps"].clone()
        self.ema = {k: v.clone() for k, v in state["ema"].items()}


def flip_consistency_loss(feats, meta, spread: float = 1.0) -> Tensor:
    """Mean squared difference between the descriptors of each image (even rows of
    ``feats[0]``, (2B, C, h, w)) and those of its mirror image mirrored back (odd rows),
    plus ``spread`` times how far the per-channel spatial standard deviation is below 1."""
    own, mirrored = feats[0][0::2], feats[0][1::2].flip(-1)
    spatial_std = own.flatten(2).std(dim=2)  # (B, C)
    return (own - mirrored).pow(2).mean() + spread * (1 - spatial_std).clamp(min=0).mean()
