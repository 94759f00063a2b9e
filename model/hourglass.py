"""HourglassNet: the one-stack hourglass embedding of the DVE paper (SPEC section 1).

Parameter names and shapes are those of the released checkpoints, so their state dicts
load as they are: ``conv1``/``bn1`` (stem), ``layer1..3`` (one residual unit each),
``hg.0.layer{n}_{1,2,3}`` and ``hg.0.layer1_4`` (the hourglass, 4 units per layer),
``output_layers.0`` (head).
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import nn


EXPANSION = 2
GROUP_NORM_GROUPS = 16
UNITS_PER_LAYER = 4


def _norm(channels: int, use_group_norm: bool) -> nn.Module:
    return nn.GroupNorm(GROUP_NORM_GROUPS, channels) if use_group_norm else nn.BatchNorm2d(channels)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: (norm-ReLU-1x1 in->p, norm-ReLU-3x3 p->p, norm-ReLU-1x1
    p->2p) plus the input, which goes through a 1x1 conv (``downsample``) when
    ``in_channels != 2p``. All convs have biases.
    """

    def __init__(self, in_channels: int, planes: int, use_group_norm: bool = False):
        super().__init__()
        out_channels = planes * EXPANSION
        self.bn1 = _norm(in_channels, use_group_norm)
        self.conv1 = nn.Conv2d(in_channels, planes, 1)
        self.bn2 = _norm(planes, use_group_norm)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.bn3 = _norm(planes, use_group_norm)
        self.conv3 = nn.Conv2d(planes, out_channels, 1)
        self.downsample = (nn.Conv2d(in_channels, out_channels, 1)
                           if in_channels != out_channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))  # (B, p, H, W)
        out = self.conv2(F.relu(self.bn2(out)))  # (B, p, H, W)
        out = self.conv3(F.relu(self.bn3(out)))  # (B, 2p, H, W)
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


def _units(count: int, in_channels: int, planes: int, use_group_norm: bool) -> nn.Sequential:
    """``count`` bottlenecks, the first taking ``in_channels``, the rest ``2 * planes``."""
    return nn.Sequential(*(PreActBottleneck(in_channels if index == 0 else planes * EXPANSION,
                                            planes, use_group_norm) for index in range(count)))


class Hourglass(nn.Module):
    """Recursive hourglass of ``depth`` levels at ``2 * planes`` channels.

    Level n: ``skip = layer{n}_1(x)``; max pool 2x2 of ``skip`` (the skip branch's
    output, as the released models were trained); ``layer{n}_2``; level n-1 (or
    ``layer1_4`` at n = 1); ``layer{n}_3``; nearest upsampling x2 back to the skip's
    size; plus ``skip``. Sizes not divisible by 2**depth (where the original fails) are
    pooled with ``ceil_mode`` and upsampled to the skip's size. Modules are registered in
    the released state dict's order: ``layer{n}_1``, ``layer{n}_2``, inner levels,
    ``layer{n}_3``.
    """

    def __init__(self, depth: int, planes: int, num_units: int = UNITS_PER_LAYER,
                 use_group_norm: bool = False):
        super().__init__()
        self.depth = depth
        channels = planes * EXPANSION
        self._register_level(depth, lambda: _units(num_units, channels, planes, use_group_norm))

    def _register_level(self, level: int, make_layer) -> None:
        setattr(self, f"layer{level}_1", make_layer())
        setattr(self, f"layer{level}_2", make_layer())
        if level > 1:
            self._register_level(level - 1, make_layer)
        else:
            self.layer1_4 = make_layer()
        setattr(self, f"layer{level}_3", make_layer())

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        skip = getattr(self, f"layer{level}_1")(x)  # (B, 2p, h, w)
        pooled = F.max_pool2d(skip, 2, 2, ceil_mode=True)  # (B, 2p, h/2, w/2) for even sizes
        low = getattr(self, f"layer{level}_2")(pooled)
        low = self._level(level - 1, low) if level > 1 else self.layer1_4(low)
        low = getattr(self, f"layer{level}_3")(low)
        return skip + F.interpolate(low, size=skip.shape[-2:], mode="nearest")  # (B, 2p, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class HourglassNet(nn.Module):
    """Stem, three residual units, one hourglass of depth 4 and a 1x1 head; output at
    half the input resolution (best with input sides divisible by 32).

    Args:
        num_output_channels: embedding dimension C.
        num_stacks: number of stacked hourglasses; the released models have 1, the only
            value supported.
        num_blocks: residual units per hourglass layer and in the head (4).
        planes_conv1: stem channels; ``layer1`` maps them to ``2 * planes_conv1``.
        planes_block: bottleneck width of ``layer2`` (output ``2 * planes_block``).
        planes_hg: bottleneck width of ``layer3``, the hourglass and the head, which
            work at ``2 * planes_hg`` channels.
        use_group_norm: GroupNorm with 16 groups in place of every BatchNorm.
        scaled_norm_output: L2-normalize each output descriptor and multiply it by a
            learned scalar ``normscale`` initialised at 20 (0-dim, the original's name and
            shape, so its checkpoints load).
    """

    def __init__(self, num_output_channels: int = 64, num_stacks: int = 1, num_blocks: int = 4,
                 planes_conv1: int = 64, planes_block: int = 128, planes_hg: int = 128,
                 use_group_norm: bool = False, scaled_norm_output: bool = False):
        super().__init__()
        if num_stacks != 1:
            raise ValueError(f"HourglassNet supports num_stacks=1 (the released models), "
                             f"got {num_stacks}")
        if num_output_channels < 1:
            raise ValueError(f"num_output_channels must be >= 1, got {num_output_channels}")
        self.num_output_channels = num_output_channels
        self.scaled_norm_output = scaled_norm_output
        hg_channels = planes_hg * EXPANSION
        self.conv1 = nn.Conv2d(3, planes_conv1, 7, stride=2, padding=3)
        self.bn1 = _norm(planes_conv1, use_group_norm)
        self.layer1 = _units(1, planes_conv1, planes_conv1, use_group_norm)
        self.layer2 = _units(1, planes_conv1 * EXPANSION, planes_block, use_group_norm)
        self.layer3 = _units(1, planes_block * EXPANSION, planes_hg, use_group_norm)
        self.hg = nn.ModuleList([Hourglass(4, planes_hg, num_blocks, use_group_norm)])
        self.output_layers = nn.ModuleList([nn.Sequential(
            _units(num_blocks, hg_channels, planes_hg, use_group_norm),
            nn.Conv2d(hg_channels, hg_channels, 1),
            _norm(hg_channels, use_group_norm),
            nn.ReLU(inplace=True),
            nn.Conv2d(hg_channels, num_output_channels, 1),
        )])
        if scaled_norm_output:
            self.normscale = nn.Parameter(torch.tensor(20.0))  # 0-dim (SPEC section 1)

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(images)))  # (B, 64, H/2, W/2)
        x = self.layer3(self.layer2(self.layer1(x)))  # (B, 256, H/2, W/2)
        out = self.output_layers[0](self.hg[0](x))  # (B, C, H/2, W/2)
        if self.scaled_norm_output:
            out = F.normalize(out, dim=1) * self.normscale
        return [out]
