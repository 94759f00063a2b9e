"""Stage 2 of the contrastive landmark method (SPEC-contrastive sections 1, 3): a 1x1
projector with a per-channel spatial softmax on a frozen hypercolumn, and its loss.
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.dense_correlation import dense_correlation
from model.frozen_embedding import FrozenEmbedding
from model.hypercolumn import ContrastResNet


class FeatureProjector(nn.Module):
    """1x1 conv C -> D with bias, then, per output channel, a softmax of
    ``softargmax_mul`` times its map over the H*W positions (the original ``FeatDistiller``
    in its "softmax" mode; SPEC-contrastive section 1). Parameters ``reg_conv.weight``
    (D, C, 1, 1) and ``reg_conv.bias`` (D), the released names without ``module.``.

    Args:
        in_channels: C, the hypercolumn's channels.
        out_channels: D (64, 128 or 256).
        softargmax_mul: inverse temperature of the spatial softmax (7; 6.5 for D = 64);
            0 returns the raw conv.
    """

    def __init__(self, in_channels: int, out_channels: int, softargmax_mul: float = 7.0):
        super().__init__()
        self.reg_conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.softargmax_mul = float(softargmax_mul)

    def forward(self, hypercolumn: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, D, H, W); with a non-zero ``softargmax_mul`` each (b, d)
        map sums to 1 over its H*W positions."""
        projected = self.reg_conv(hypercolumn)  # (B, D, H, W)
        if self.softargmax_mul == 0:
            return projected
        weights = torch.softmax(self.softargmax_mul * projected.flatten(2), dim=2)  # (B, D, HW)
        return weights.view_as(projected)


class ContrastProjector(nn.Module):
    """A frozen ContrastResNet hypercolumn under a trainable 1x1 projector with a spatial
    softmax (Cheng, Su and Maji 2020, stage 2).

    Source: SPEC-contrastive sections 1 and 3.

    The hypercolumn network runs in eval mode and without gradient, whatever mode this
    module is put in; its trainable parameters are the projector's only. The hypercolumn
    network is ``self.backbone.wrapped_module`` (keys ``backbone.wrapped_module.encoder.*``),
    the projector ``self.projector`` (keys ``projector.reg_conv.*``): a released MoCo
    checkpoint loads into the former, a released projector checkpoint into the latter
    (``utils.checkpoint.load_weights_into``).

    Args:
        depth, width, head_dim, image_size, hypercolumn_layers: as ``ContrastResNet``.
        hypercolumn_size: side S of the hypercolumn and of the output (24 in training,
            96 in matching; SPEC-contrastive sections 3, 5).
        projection_dim: D.
        softargmax_mul: the projector's spatial-softmax multiplier (0: raw conv).
        normalize_output: L2-normalise every D-vector (matching, SPEC-contrastive 5).
    """

    def __init__(self, depth: int = 50, width: float = 1.0, head_dim: int = 128,
                 image_size: int = 96, hypercolumn_size: int = 24, hypercolumn_layers: int = 4,
                 projection_dim: int = 128, softargmax_mul: float = 7.0,
                 normalize_output: bool = False):
        super().__init__()
        hypercolumn = ContrastResNet(depth, width, head_dim, image_size, hypercolumn_size,
                                     hypercolumn_layers, normalize_layers=False)
        self.backbone = FrozenEmbedding(hypercolumn)
        self.projector = FeatureProjector(hypercolumn.num_output_channels, projection_dim,
                                          softargmax_mul)
        self.normalize_output = normalize_output
        self.num_output_channels = projection_dim

    @property
    def finetune_target(self) -> nn.Module:
        """What ``finetune_from`` (a MoCo run or a released MoCo checkpoint) fills: the
        hypercolumn network (``trainer.builders.finetune_part``)."""
        return self.backbone.wrapped_module

    def forward(self, images: Tensor) -> List[Tensor]:
        """(B, 3, H, W) normalized images -> [(B, D, S, S) projected maps], unit D-vectors
        with ``normalize_output``."""
        projected = self.projector(self.backbone(images))  # (B, D, S, S)
        if self.normalize_output:
            projected = F.normalize(projected, p=2, dim=1)
        return [projected]


def cell_pixel_positions(batch: int, size: int, stride: int, like: Tensor) -> Tensor:
    """(B, S, S, 2) pixel (x, y) = (stride j, stride i) of cell (i, j): the cells' corners
    at ``stride`` input pixels, not their centres (SPEC-contrastive section 3)."""
    coords = torch.arange(size, device=like.device, dtype=like.dtype) * stride  # (S,)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")  # (S, S) each
    return torch.stack([xs, ys], dim=-1).expand(batch, size, size, 2)


def dense_correlation_loss_single(feats: List[Tensor], meta: dict, temperature: float = 7.0,
                                  pow: float = 0.5, image_size: int = 96) -> Tensor:
    """The projector loss of Cheng, Su and Maji (2020, stage 2): the distance-weighted
    self-correlation of one image, no warp.

    Source: SPEC-contrastive section 3.

    With f_u the L2-normalised D-vector of cell u,

        loss = sum_b sum_u sum_v ||p_u - p_v||^pow softmax_v(T cos(f_u, f_v)) / (S^2 B),

    p the pixel positions of the cells at stride image_size // S (0, 4, ..., 92 for 24
    cells of a 96-px image); no gradient through the distances. Runs batched through the
    chunked kernel of ``model.dense_correlation``.

    Args:
        feats: network outputs; feats[0] is (B, D, S, S).
        meta: batch metadata (unused: the loss needs no correspondence).
        temperature: T (7 for D = 128 or 256, 8 for D = 64).
        pow: exponent of the distance.
        image_size: side of the input image in pixels.

    Raises:
        ValueError: feats[0] is not (B, D, S, S) with S <= image_size.
    """
    del meta
    maps = feats[0]
    if maps.dim() != 4 or maps.shape[2] != maps.shape[3] or maps.shape[2] > image_size:
        raise ValueError(f"expected square (B, D, S, S) maps with S <= image_size "
                         f"{image_size}, got {tuple(maps.shape)}")
    batch, _, size, _ = maps.shape
    stride = image_size // size
    unit = F.normalize(maps.float(), p=2, dim=1)  # (B, D, S, S)
    grid_px = cell_pixel_positions(batch, size, stride, unit)  # (B, S, S, 2)
    return dense_correlation(temperature * unit, unit, grid_px, stride, pow=pow)
