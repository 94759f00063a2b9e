"""A frozen embedding under a keypoint regressor, in the released checkpoints' layout.

The regression model is ``nn.Sequential(FrozenEmbedding(embedding), [upsample], regressor)``
so its state dict reads ``0.wrapped_module.<embedding keys>``, then ``1.<regressor keys>``
(or ``2.`` with ``keypoint_regressor_upsample``), as in the released regressors.
"""
import torch
from torch import Tensor, nn


class FrozenEmbedding(nn.Module):
    """Runs ``wrapped_module`` without gradient and always in eval mode (batch norm uses
    its running statistics, which never change), whatever mode the parent is put in.

    Args:
        wrapped_module: an embedding network returning a list whose first element is the
            (B, C, H, W) descriptor map.
    """

    def __init__(self, wrapped_module: nn.Module):
        super().__init__()
        self.wrapped_module = wrapped_module
        for parameter in self.wrapped_module.parameters():
            parameter.requires_grad_(False)
        self.wrapped_module.eval()

    def train(self, mode: bool = True) -> "FrozenEmbedding":
        super().train(mode)
        self.wrapped_module.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, h, w) normalized images -> (B, C, H, W) descriptors."""
        with torch.no_grad():
            outputs = self.wrapped_module(images)
        return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def keypoint_regression_model(embedding: nn.Module, regressor: nn.Module,
                              upsample: bool = False) -> nn.Sequential:
    """``Sequential(FrozenEmbedding(embedding), [x2 bilinear upsampling], regressor)``."""
    layers = [FrozenEmbedding(embedding)]
    if upsample:
        layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    layers.append(regressor)
    return nn.Sequential(*layers)

