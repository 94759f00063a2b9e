"""SmallNet: the dense-embedding network of Thewlis et al., NeurIPS 2017 (SPEC section 1)."""
from typing import List

import torch
from torch import nn



def _conv_bn_lrelu(in_channels: int, out_channels: int, kernel_size: int, padding: int,
                   dilation: int = 1) -> nn.Sequential:
    """conv -> BatchNorm2d -> LeakyReLU(0.2); parameter names `<i>.0.*` (conv), `<i>.1.*` (BN)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.2),
    )


class SmallNet(nn.Module):
    """Five conv blocks and a 1x1 head; output at half the input resolution.

    Args:
        num_output_channels: embedding dimension C.
        do_maxpool: the 2x2 max pool after conv1 (halves the output resolution).
    """

    def __init__(self, num_output_channels: int = 3, do_maxpool: bool = True):
        super().__init__()
        if num_output_channels < 1:
            raise ValueError(f"num_output_channels must be >= 1, got {num_output_channels}")
        self.num_output_channels = num_output_channels
        self.do_maxpool = do_maxpool
        self.conv1 = _conv_bn_lrelu(3, 20, 5, padding=2)
        self.maxpool = nn.MaxPool2d(2, 2) if do_maxpool else nn.Identity()
        self.conv2 = _conv_bn_lrelu(20, 48, 5, padding=2)
        self.conv3 = _conv_bn_lrelu(48, 64, 5, padding=4, dilation=2)
        self.conv4 = _conv_bn_lrelu(64, 80, 3, padding=4, dilation=4)
        self.conv5 = _conv_bn_lrelu(80, 256, 3, padding=2, dilation=2)
        self.conv6 = nn.Conv2d(256, num_output_channels, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        x = self.maxpool(self.conv1(images))  # (B, 20, H/2, W/2)
        x = self.conv5(self.conv4(self.conv3(self.conv2(x))))  # (B, 256, H/2, W/2)
        return [self.conv6(x)]  # [(B, C, H/2, W/2)]
