"""The hypercolumn network of the contrastive landmark method (SPEC-contrastive sections 1
and 5): a ResNet whose stage outputs, deepest first, are resized to one size and stacked.
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.resnet import ResNet

OUTPUTS = ("descriptors", "embedding")
MAX_HYPERCOLUMN_LAYERS = 5  # layer4, layer3, layer2, layer1, the max-pool output


class ContrastResNet(nn.Module):
    """ResNet-18/50 giving dense hypercolumn descriptors or the MoCo embedding (Cheng, Su
    and Maji 2020).

    Source: SPEC-contrastive sections 1 and 5.

    The state dict is the encoder's under ``encoder.`` (``encoder.conv1.weight``, ...,
    ``encoder.fc.bias``): a released MoCo checkpoint's ``encoder.module.`` keys fit once
    the DataParallel ``module`` segment is dropped (``utils.checkpoint.select_state_dict``).

    Args:
        depth: 18 or 50.
        width: stage-width multiplier (1.0, or 0.5 for ResNet-50-half).
        head_dim: embedding size of the MoCo head.
        image_size: input side in pixels (96); sets the head's pool (image_size // 32).
        hypercolumn_size: side S of the hypercolumn (48 regression, 24 projector training,
            96 matching; SPEC-contrastive section 1).
        hypercolumn_layers: how many of layer4, layer3, layer2, layer1, max-pool output
            are stacked, deepest first (4: the method's; 1: layer4 alone).
        normalize_layers: L2-normalise each layer's block over its channels after resizing
            (the method's matching, SPEC-contrastive section 5).

    Raises:
        ValueError: a hypercolumn_layers outside 1..5 or hypercolumn_size < 1, and what
            ``ResNet`` refuses.
    """

    def __init__(self, depth: int = 50, width: float = 1.0, head_dim: int = 128,
                 image_size: int = 96, hypercolumn_size: int = 48, hypercolumn_layers: int = 4,
                 normalize_layers: bool = False):
        super().__init__()
        if not 1 <= hypercolumn_layers <= MAX_HYPERCOLUMN_LAYERS:
            raise ValueError(f"hypercolumn_layers must be 1..{MAX_HYPERCOLUMN_LAYERS}, got "
                             f"{hypercolumn_layers}")
        if hypercolumn_size < 1:
            raise ValueError(f"hypercolumn_size must be >= 1, got {hypercolumn_size}")
        self.encoder = ResNet(depth, width, head_dim, image_size)
        self.hypercolumn_size = hypercolumn_size
        self.hypercolumn_layers = hypercolumn_layers
        self.normalize_layers = normalize_layers
        stem = self.encoder.conv1.out_channels
        deepest_first = [*reversed(self.encoder.stage_channels), stem]
        self.layer_channels: List[int] = deepest_first[:hypercolumn_layers]
        self.num_output_channels = sum(self.layer_channels)

    def hypercolumn(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) normalized images -> (B, C, S, S) hypercolumn, C =
        ``num_output_channels``: the stage maps deepest first, each resized bilinearly with
        align_corners=False to S = ``hypercolumn_size`` and, with ``normalize_layers``,
        L2-normalised over its own channels (SPEC-contrastive sections 1, 5)."""
        stages = self.encoder.stages(images)[::-1][:self.hypercolumn_layers]
        size = (self.hypercolumn_size, self.hypercolumn_size)
        blocks = [F.interpolate(stage, size=size, mode="bilinear", align_corners=False)
                  for stage in stages]
        if self.normalize_layers:
            blocks = [F.normalize(block, p=2, dim=1) for block in blocks]
        return torch.cat(blocks, dim=1)

    def forward(self, images: Tensor, output: str = "descriptors"):
        """The network's output for (B, 3, H, W) normalized images.

        Args:
            images: (B, 3, image_size, image_size) for the embedding; any size for the
                descriptors.
            output: "descriptors": a list [(B, C, S, S) hypercolumn]; "embedding": the
                (B, head_dim) unit MoCo embedding, the hypercolumn not computed (an
                argument of forward so that DistributedDataParallel sees the call).

        Raises:
            ValueError: an unknown ``output``, or an embedding of an image of another size.
        """
        if output == "descriptors":
            return [self.hypercolumn(images)]
        if output == "embedding":
            return self.encoder(images)
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
