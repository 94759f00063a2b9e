"""A network that lives outside the core: a config names it by its module path,
``"arch": {"type": "tests.plugin_example.TinyNet", ...}``, and ``NETWORKS.get`` imports it
(``utils.registry``); nothing in the core lists it."""
from typing import List

from torch import Tensor, nn


class TinyNet(nn.Module):
    """One 3x3 convolution: images (B, 3, H, W) -> ``[embedding (B, C, H, W)]``.

    Args:
        num_output_channels: C, the descriptor dimension.
    """

    def __init__(self, num_output_channels: int = 4):
        super().__init__()
        self.num_output_channels = num_output_channels
        self.conv = nn.Conv2d(3, num_output_channels, kernel_size=3, padding=1)

    def forward(self, images: Tensor) -> List[Tensor]:
        return [self.conv(images)]


def mean_prediction_norm(outputs, meta) -> float:
    """A metric outside the core: the mean L2 norm of a regressor's predictions
    (``outputs[0]``, (B, K, 2) normalized coordinates), one value per point."""
    return outputs[0].norm(dim=-1).mean().item()
