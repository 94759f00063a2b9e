"""ResNet-18 / ResNet-50 (v1.5) with the MoCo head of the contrastive landmark method
(SPEC-contrastive section 1).

Parameter and buffer names are those of the torchvision design (``conv1``, ``bn1``,
``layer{1..4}.{b}.conv{1,2,3}``, ``layer{L}.0.downsample.{0,1}``, ``fc``), so a released
MoCo encoder (``encoder.module.<name>``) loads once its prefix is stripped. Nothing is
changed for small inputs: a 96-px image gives maps of 48, 24, 24, 12, 6 and 3 pixels after
conv1, the max pool and layer1..4.
"""
import math
from typing import List, Optional

from torch import Tensor, nn

STAGE_BLOCKS = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}
STEM_CHANNELS = 64  # the stem stays at 64 channels whatever the width (SPEC-contrastive 1)
HEAD_STRIDE = 32  # input pixels per cell of layer4's map


def _downsample(in_channels: int, out_channels: int, stride: int) -> Optional[nn.Sequential]:
    """The shortcut's 1x1 conv + BN where the stride or the channels change, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual shortcut (ResNet-18): (B, in, H, W) -> (B, planes,
    H/stride, W/stride)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1, 3x3 (carrying the stride: v1.5), 1x1 convs with a residual shortcut
    (ResNet-50): (B, in, H, W) -> (B, 4 planes, H/stride, W/stride)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


def l2_normalize_exact(vectors: Tensor) -> Tensor:
    """(B, D) -> (B, D) divided by their 2-norm, without an epsilon (as the MoCo head of
    SPEC-contrastive section 1; a zero vector gives NaN)."""
    return vectors / vectors.pow(2).sum(dim=1, keepdim=True).sqrt()


class ResNet(nn.Module):
    """ResNet encoder with the MoCo head (SPEC-contrastive section 1).

    Args:
        depth: 18 (BasicBlocks [2, 2, 2, 2]) or 50 (Bottlenecks [3, 4, 6, 3]).
        width: multiplier of the stage widths, int(64 width) x (1, 2, 4, 8) (times 4 for
            Bottlenecks); the stem stays at 64 channels.
        head_dim: size of the embedding (128).
        image_size: side of the (square) input in pixels; the head averages layer4's
            (image_size // 32)^2 map with a pool of that size.

    Raises:
        ValueError: a depth other than 18 or 50, a non-positive width, or an image_size
            under 32.
    """

    def __init__(self, depth: int = 50, width: float = 1.0, head_dim: int = 128,
                 image_size: int = 96):
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)}, got {depth}")
        if width <= 0 or int(64 * width) < 1:
            raise ValueError(f"width must make int(64 * width) >= 1, got {width}")
        if image_size < HEAD_STRIDE:
            raise ValueError(f"image_size must be at least {HEAD_STRIDE} pixels, got {image_size}")
        block = BasicBlock if depth == 18 else Bottleneck
        base = int(64 * width)
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = STEM_CHANNELS
        self.stage_channels: List[int] = []
        for index, blocks in enumerate(STAGE_BLOCKS[depth]):
            planes = base * 2 ** index
            stride = 1 if index == 0 else 2
            layers = []
            for position in range(blocks):
                layers.append(block(in_channels, planes, stride if position == 0 else 1))
                in_channels = planes * block.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*layers))
            self.stage_channels.append(in_channels)
        self.avgpool = nn.AvgPool2d(image_size // HEAD_STRIDE, stride=1)
        self.fc = nn.Linear(in_channels, head_dim)
        self._initialize()

    def _initialize(self) -> None:
        """Convs N(0, sqrt(2 / (k k out_channels))), BN weight 1 and bias 0, fc PyTorch's
        default (SPEC-contrastive section 1)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def stages(self, images: Tensor) -> List[Tensor]:
        """The feature maps of the stem and the four stages.

        Args:
            images: (B, 3, H, W) normalized images.

        Returns:
            [max-pool output (B, 64, H/4, W/4), layer1 (B, c1, H/4, W/4), layer2
            (B, c2, H/8, W/8), layer3 (B, c3, H/16, W/16), layer4 (B, c4, H/32, W/32)],
            sizes rounded up; c = ``stage_channels``.
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        outputs = [x]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outputs.append(x)
        return outputs

    def head(self, conv5: Tensor) -> Tensor:
        """The MoCo head: average pool, flatten, fc, L2 normalisation without epsilon.

        Args:
            conv5: (B, c4, h, w) layer4 output, h = w = the pool size.

        Returns:
            (B, head_dim) unit vectors.

        Raises:
            ValueError: the map is not reduced to one cell (an input of another size
                than ``image_size``).
        """
        pooled = self.avgpool(conv5)  # (B, c4, 1, 1)
        if pooled.shape[2:] != (1, 1):
            raise ValueError(f"the MoCo head pools layer4's {tuple(conv5.shape[2:])} map "
                             f"with a pool of {self.avgpool.kernel_size}: feed images of the "
                             f"image_size the network was built for")
        return l2_normalize_exact(self.fc(pooled.flatten(1)))

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) normalized images -> (B, head_dim) unit embeddings."""
        return self.head(self.stages(images)[-1])
