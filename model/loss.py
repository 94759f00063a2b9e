"""Training losses (SPEC section 3), registered in ``LOSSES``.

The dense correlation losses run through the chunked kernels of
``model.dense_correlation``; they give the original per-pair code's values and gradients
without its O(C (H W)^2) memory.
"""
from typing import List, Tuple

import torch
import torch.nn.functional as F

from model.dense_correlation import dense_correlation
from utils.tps import unnormalize_grid

DESCRIPTOR_SCALE = 20.0  # normalize_vectors: unit descriptors times this


def _pair_features(feats: List[torch.Tensor], meta: dict, normalize_vectors: bool
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Split interleaved pair features and bring the warp grid to feature-cell resolution.

    Returns:
        feats_src (B, C, H, W) first images, feats_dst (B, C, H, W) second images,
        grid_px (B, H, W, 2) the pixel (x, y) in the second image shown at pixel s*u of
        the first, and the stride s = Hin // H (as the original computed it).
    """
    feats = feats[0]  # (2B, C, H, W), pairs interleaved
    if feats.dim() != 4 or feats.shape[0] % 2:
        raise ValueError(f"expected interleaved pair features (2B, C, H, W), got "
                         f"{tuple(feats.shape)}")
    if normalize_vectors:
        feats = F.normalize(feats, p=2, dim=1) * DESCRIPTOR_SCALE
    feats_src, feats_dst = feats[0::2], feats[1::2]  # (B, C, H, W) each
    grid = meta["grid"].to(feats.device)  # (B, Hin, Win, 2), normalized
    height, width = feats_src.shape[2:]
    stride = grid.shape[1] // height
    if stride < 1:
        raise ValueError(f"grid {tuple(grid.shape)} is coarser than the features "
                         f"{tuple(feats.shape)}")
    grid_px = unnormalize_grid(grid, grid.shape[2], grid.shape[1])  # (B, Hin, Win, 2) pixels
    grid_px = grid_px[:, ::stride, ::stride, :]  # (B, H, W, 2)
    if grid_px.shape != (feats_src.shape[0], height, width, 2):
        raise ValueError(f"grid {tuple(grid.shape)} sampled at stride {stride} gives "
                         f"{tuple(grid_px.shape)}, which does not match first-image "
                         f"features {tuple(feats_src.shape)}")
    return feats_src, feats_dst, grid_px, stride


def dense_correlation_loss(feats: List[torch.Tensor], meta: dict, pow: float = 0.5,
                           fold_corr: bool = False, normalize_vectors: bool = True
                           ) -> torch.Tensor:
    """Equivariance loss: expected distance ||g2(s u) - s v||^pow under softmax_v(<f1_u, f2_v>).

    Args:
        feats: network outputs; feats[0] is (2B, C, H, W) with pairs interleaved.
        meta: batch metadata; meta["grid"] (B, Hin, Win, 2) is the warp g2, normalized.
        pow: exponent of the distance.
        fold_corr: the original's memory-saving switch; accepted and ignored (these
            kernels never hold the full correlation).
        normalize_vectors: L2-normalize every descriptor and scale it by 20.
    """
    del fold_corr
    feats_src, feats_dst, grid_px, stride = _pair_features(feats, meta, normalize_vectors)
    return dense_correlation(feats_src, feats_dst, grid_px, stride, pow=pow)


def dense_correlation_loss_dve(feats: List[torch.Tensor], meta: dict, pow: float = 0.5,
                               fold_corr: bool = False, normalize_vectors: bool = True
                               ) -> torch.Tensor:
    """DVE loss: as ``dense_correlation_loss`` with f1_u first replaced by its reconstruction
    sum_w softmax_w(<f1_u, fa_w>) fa_w from the auxiliary image a = first image of pair
    (b + 1) mod B (itself when B = 1). The reconstruction is not re-normalized and the
    auxiliary features receive gradient. Arguments as ``dense_correlation_loss``.
    """
    del fold_corr
    feats_src, feats_dst, grid_px, stride = _pair_features(feats, meta, normalize_vectors)
    feats_aux = torch.roll(feats_src, shifts=-1, dims=0)  # aux of pair b: feats_src[(b+1) % B]
    return dense_correlation(feats_src, feats_dst, grid_px, stride, pow=pow, feats_aux=feats_aux)
