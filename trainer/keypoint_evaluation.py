"""Evaluating a trained landmark regressor on a split: per-image inter-ocular errors."""
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.keypoint_metrics import inter_ocular_errors


@torch.no_grad()
def evaluate_regressor(model: nn.Module, loader: DataLoader, pipeline,
                       device: torch.device) -> torch.Tensor:
    """(N,) errors in percent of the inter-ocular distance (the eye indices the pipeline's
    ``meta`` carries), model in eval mode; warps (with ``warp_val``) seeded at 0, as in the
    trainer's validation passes."""
    model.eval()
    generator = torch.Generator(device=device).manual_seed(0)
    errors = []
    for batch in tqdm(loader, desc="evaluating", leave=False, dynamic_ncols=True):
        inputs = pipeline(batch, device, generator)
        pred, _ = model(inputs["data"])  # (B, K, 2) normalized
        target = inputs["meta"]["keypts_normalized"].to(pred.dtype)
        errors.append(inter_ocular_errors(pred, target, inputs["meta"]["eye_indices"]).cpu())
    return torch.cat(errors)
