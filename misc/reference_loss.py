"""The original code's per-pair dense correlation loss, step by step (SPEC section 3), as
the independent reference of the tests and of ``misc/bench_loss.py``: slow and
memory-hungry by design (O(C N^2)); training uses ``model.dense_correlation``."""
from typing import List

import torch
import torch.nn.functional as F

from utils.tps import unnormalize_grid


def reference_dense_correlation_loss(feats: List[torch.Tensor], meta: dict, pow: float = 0.5,
                                     normalize_vectors: bool = True,
                                     dve: bool = False) -> torch.Tensor:
    """The original per-pair formulation, for tests and benchmarks only (O(C N^2) memory).

    Mirrors the original code step by step, including DVE's reconstruction through the
    (C, H, W, h, w) product ``smcorr[None] * fa.reshape(C, 1, 1, h, w)`` summed over (h, w).
    """
    feats = feats[0]
    grid = meta["grid"].to(feats.device)  # (B, Hin, Win, 2)
    height_in, width_in = grid.shape[1], grid.shape[2]
    feats1, feats2 = feats[0::2], feats[1::2]
    batch, channels, height, width = feats1.shape
    h, w = feats2.shape[2:]
    stride = height_in // height
    batch_grid_u = unnormalize_grid(grid, width_in, height_in)[:, ::stride, ::stride]  # (B,H,W,2)
    ys, xs = torch.meshgrid(torch.arange(height_in, dtype=grid.dtype, device=grid.device),
                            torch.arange(width_in, dtype=grid.dtype, device=grid.device),
                            indexing="ij")
    xxyy = torch.stack([xs, ys], dim=-1)  # (Hin, Win, 2) pixel (x, y)
    loss = 0.0
    for b in range(batch):
        f1 = feats1[b].reshape(channels, height * width)
        f2 = feats2[b].reshape(channels, h * w)
        fa = feats1[(b + 1) % batch].reshape(channels, h * w)
        if normalize_vectors:
            f1 = F.normalize(f1, p=2, dim=0) * 20
            f2 = F.normalize(f2, p=2, dim=0) * 20
            fa = F.normalize(fa, p=2, dim=0) * 20
        if dve:
            corr = torch.matmul(f1.t(), fa).reshape(height, width, h, w)
            smcorr = F.softmax(corr.reshape(height, width, -1), dim=2).reshape(corr.shape)
            smcorr_fa = smcorr[None, ...] * fa.reshape(-1, 1, 1, h, w)  # (C, H, W, h, w)
            f1 = smcorr_fa.sum((3, 4)).reshape(channels, height * width)
        corr2 = torch.matmul(f1.t(), f2).reshape(height, width, h, w)
        smcorr2 = F.softmax(corr2.reshape(height, width, -1), dim=2).reshape(corr2.shape)
        with torch.no_grad():
            diff = batch_grid_u[b, :, :, None, None, :] - xxyy[None, None, ::stride, ::stride, :]
            diff = (diff * diff).sum(4).sqrt().pow(pow)
        loss = loss + (diff * smcorr2).sum()
    return loss / (height * width * batch)
