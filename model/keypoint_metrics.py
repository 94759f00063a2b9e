"""Loss and metric of landmark regression (SPEC section 3), under the original names.

Both read the regressor outputs ``(pred (B, K, 2), intermediate (B, K, nI, 2))`` and a
``meta`` dict with ``keypts_normalized`` (B, K, 2), the ground truth in normalized
coordinates of the cropped image, and ``eye_indices`` (e0, e1) of the dataset.
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor



def regression_loss(outputs: Tuple[Tensor, Tensor], meta: dict, alpha: float = 10.0) -> Tensor:
    """Smooth L1 between ``alpha * pred`` and ``alpha * target`` (mean over all coordinates)."""
    pred = outputs[0]
    return F.smooth_l1_loss(alpha * pred, alpha * meta["keypts_normalized"].to(pred.dtype))


def inter_ocular_errors(pred: Tensor, target: Tensor, eye_indices: Sequence[int]) -> Tensor:
    """Per image, 100 * mean over points of ||pred - target|| / ||target[e0] - target[e1]||.

    Args:
        pred, target: (B, K, 2) keypoints in the same coordinates.
        eye_indices: (e0, e1), the points whose distance normalizes the error.

    Returns:
        (B,) errors in percent of the inter-ocular distance.
    """
    left, right = eye_indices
    inter_ocular = (target[:, left] - target[:, right]).norm(dim=-1)  # (B,)
    point_errors = (pred - target).norm(dim=-1)  # (B, K)
    return 100.0 * point_errors.mean(dim=1) / inter_ocular


def inter_ocular_error(outputs: Tuple[Tensor, Tensor], meta: dict) -> float:
    """Mean over the batch of ``inter_ocular_errors`` (percent of inter-ocular distance)."""
    target = meta["keypts_normalized"].to(outputs[0].dtype)
    with torch.no_grad():
        return inter_ocular_errors(outputs[0], target, meta["eye_indices"]).mean().item()
