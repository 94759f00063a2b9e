"""The landmark regressor on a frozen dense embedding (SPEC section 1).

Learned correlation filters turn the descriptors into ``nA * nI`` heat maps; a spatial
soft-argmax reduces each map to one "virtual" keypoint; each annotated keypoint is then
a linear function of its own ``nI`` virtual keypoints.
"""
import math
from typing import Tuple

import torch
from torch import Tensor, nn


# Entries of the original's state dict that its forward never used; loading drops them.
UNUSED_ORIGINAL_ENTRIES = ("descriptors", "linear.")


def soft_argmax(maps: Tensor, multiplier: float) -> Tensor:
    """Expected position under a spatial softmax of ``multiplier * maps``.

    Args:
        maps: (B, K, H, W) score maps.
        multiplier: inverse temperature of the softmax.

    Returns:
        (B, K, 2) normalized (x, y) in [-1, 1]: pixel 0 is -1, pixel W-1 (or H-1) is 1.
    """
    batch, channels, height, width = maps.shape
    weights = torch.softmax(multiplier * maps.flatten(2), dim=2)  # (B, K, H*W)
    weights = weights.view(batch, channels, height, width)
    xs = torch.linspace(-1, 1, width, device=maps.device, dtype=maps.dtype)
    ys = torch.linspace(-1, 1, height, device=maps.device, dtype=maps.dtype)
    x = (weights.sum(dim=2) * xs).sum(dim=2)  # (B, K): marginal over rows, then columns
    y = (weights.sum(dim=3) * ys).sum(dim=2)  # (B, K)
    return torch.stack([x, y], dim=2)


class IntermediateKeypointPredictor(nn.Module):
    """Annotated keypoints regressed from ``nI`` virtual keypoints each.

    Args:
        descriptor_dimension: channels C of the embedding.
        num_annotated_points: nA, keypoints of the dataset.
        num_intermediate_points: nI, virtual keypoints per annotated point.
        softargmax_mul: inverse temperature of the spatial softmax (configs use 100).
    """

    def __init__(self, descriptor_dimension: int, num_annotated_points: int,
                 num_intermediate_points: int = 50, softargmax_mul: float = 50.0):
        super().__init__()
        self.num_annotated_points = num_annotated_points
        self.num_intermediate_points = num_intermediate_points
        self.softargmax_mul = float(softargmax_mul)
        num_maps = num_annotated_points * num_intermediate_points
        self.inner_conv = nn.Conv2d(descriptor_dimension, num_maps, kernel_size=1, bias=False)
        self.reg_conv = nn.Conv2d(2 * num_maps, 2 * num_annotated_points, kernel_size=1,
                                  groups=num_annotated_points, bias=False)
        nn.init.normal_(self.inner_conv.weight)
        bound = 1.0 / math.sqrt(2 * num_intermediate_points)  # nn.Linear(2 nI, 2)'s default
        nn.init.uniform_(self.reg_conv.weight, -bound, bound)
        self.register_load_state_dict_pre_hook(_drop_unused_original_entries)

    def forward(self, feats: Tensor) -> Tuple[Tensor, Tensor]:
        """(B, C, H, W) -> (pred (B, nA, 2), intermediate (B, nA, nI, 2)), normalized."""
        batch = feats.shape[0]
        maps = self.inner_conv(feats)  # (B, nA*nI, H, W)
        points = soft_argmax(maps, self.softargmax_mul)  # (B, nA*nI, 2)
        intermediate = points.view(batch, self.num_annotated_points,
                                   self.num_intermediate_points, 2)
        grouped = points.reshape(batch, -1, 1, 1)  # (B, nA*nI*2, 1, 1): x1, y1, x2, y2, ...
        pred = self.reg_conv(grouped).view(batch, self.num_annotated_points, 2)
        return pred, intermediate


def _drop_unused_original_entries(module, state_dict, prefix, *_args):
    """Released regressors also hold ``descriptors`` and ``linear.*``, which the original
    never used: accept and ignore them."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if key[len(prefix):].startswith(UNUSED_ORIGINAL_ENTRIES):
            del state_dict[key]
