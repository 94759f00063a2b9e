"""Thin-plate-spline warps, batched (SPEC section 2).

A warp is a (103, 2) weight matrix: 100 rows for the radial kernels of a 10x10 grid of
control points over [-1, 1]^2, then the affine rows for [1, x, y]. Multiplying the
design matrix of an H x W pixel grid by the weights gives a sampling grid: output pixel
p takes the input at grid(p), in normalized coordinates (x_n = 2x/(W-1) - 1, the
``align_corners=True`` convention of ``F.grid_sample``).
"""
import math
from functools import lru_cache
from typing import Optional

import torch

NUM_CONTROL_PER_SIDE = 10
NUM_CONTROL = NUM_CONTROL_PER_SIDE ** 2
NUM_WEIGHTS = NUM_CONTROL + 3  # kernels, then the affine part [1, x, y]
KERNEL_EPS = 1e-5


def _pixel_grid_normalized(height: int, width: int) -> torch.Tensor:
    """Normalized (x, y) of every pixel, row-major (index y * W + x): (H*W, 2) float32, CPU.

    ``torch.linspace(-1, 1, n)`` in float32, as the original computed it: some values
    differ by one ulp from the correctly rounded 2x/(n-1) - 1 (SPEC section 2).
    """
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height, dtype=torch.float32),
                            torch.linspace(-1, 1, width, dtype=torch.float32), indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)


def control_points() -> torch.Tensor:
    """The 10x10 control points over [-1, 1]^2, x varying fastest: (100, 2) float32."""
    return _pixel_grid_normalized(NUM_CONTROL_PER_SIDE, NUM_CONTROL_PER_SIDE)


@lru_cache(maxsize=16)
def _design_matrix_cached(height: int, width: int, device: torch.device,
                          dtype: torch.dtype) -> torch.Tensor:
    pixels = _pixel_grid_normalized(height, width)  # (H*W, 2)
    dist2 = (pixels[:, None, :] - control_points()[None, :, :]).pow(2).sum(-1)  # (H*W, 100)
    kernel = dist2 * torch.log(dist2 + KERNEL_EPS)
    ones = torch.ones(pixels.shape[0], 1, dtype=pixels.dtype)
    design = torch.cat([kernel, ones, pixels], dim=1)  # (H*W, 103)
    return design.to(device=device, dtype=dtype)


def tps_design_matrix(height: int, width: int, device=None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Design matrix [U(pixel, control) | 1 | x | y] of an H x W pixel grid.

    Built in float32 on the CPU from ``torch.linspace`` coordinates, as the original did
    (an identity or affine warp then gives the original's grid exactly), then converted;
    cached per (size, device, dtype), so the returned tensor is shared: do not modify it
    in place.

    Args:
        height, width: image size in pixels.
        device: device of the result (default CPU).
        dtype: dtype of the result.

    Returns:
        (H*W, 103); row y * W + x is pixel (x, y); column i < 100 is control point
        (i % 10, i // 10) of the 10x10 grid.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    return _design_matrix_cached(int(height), int(width), device, dtype)


def random_tps_weights(batch: int, warpsd_all: float, warpsd_subset: float, transsd: float,
                       scalesd: float, rotsd: float,
                       generator: Optional[torch.Generator] = None,
                       device=None) -> torch.Tensor:
    """Draw one random warp per batch element.

    Args:
        batch: number of warps B.
        warpsd_all: sd of every kernel weight.
        warpsd_subset: sd of the redraw applied to each kernel weight with probability 0.5.
        transsd: sd of the translation (normalized units).
        scalesd: sd of the scale around 1.
        rotsd: sd of the rotation, in degrees.
        generator: torch.Generator on ``device`` for every draw, or None for the global one.
        device: device of the result (default: the generator's, else CPU).

    Returns:
        (B, 103, 2) float32 weights.
    """
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")

    def normal(*shape):
        return torch.randn(*shape, generator=generator, device=device)

    kernel = normal(batch, NUM_CONTROL, 2) * warpsd_all  # (B, 100, 2)
    redraw = torch.rand(batch, NUM_CONTROL, 2, generator=generator, device=device) < 0.5
    kernel = torch.where(redraw, normal(batch, NUM_CONTROL, 2) * warpsd_subset, kernel)
    angle = normal(batch) * math.radians(rotsd)  # (B,)
    scale = 1 + normal(batch) * scalesd  # (B,)
    trans = normal(batch, 2) * transsd  # (B, 2)
    cos, sin = scale * torch.cos(angle), scale * torch.sin(angle)
    affine = torch.stack([trans,
                          torch.stack([cos, -sin], dim=-1),
                          torch.stack([sin, cos], dim=-1)], dim=1)  # (B, 3, 2)
    return torch.cat([kernel, affine], dim=1)  # (B, 103, 2)


def tps_grid(weights: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sampling grid of warps: (B, 103, 2) weights -> (B, H, W, 2) normalized (x, y)."""
    design = tps_design_matrix(height, width, weights.device, weights.dtype)  # (H*W, 103)
    return torch.matmul(design, weights).reshape(weights.shape[0], height, width, 2)


def _extent(width: int, height: int, like: torch.Tensor) -> torch.Tensor:
    """(W - 1, H - 1) as a tensor matching ``like``: (2,)."""
    return torch.tensor([width - 1, height - 1], dtype=like.dtype, device=like.device)


def normalize_pixels(xy: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Pixel (x, y) (..., 2) -> normalized [-1, 1] (..., 2), align_corners=True convention."""
    return 2 * xy / _extent(width, height, xy) - 1


def unnormalize_grid(grid: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Normalized (x, y) (..., 2) -> pixel (x, y) (..., 2), align_corners=True convention."""
    return (grid + 1) / 2 * _extent(width, height, grid)


@lru_cache(maxsize=16)
def _pixel_positions_cached(height: int, width: int, device: torch.device) -> torch.Tensor:
    positions = unnormalize_grid(_pixel_grid_normalized(height, width), width, height)
    return positions.to(device)


def pixel_positions(height: int, width: int, device=None) -> torch.Tensor:
    """Pixel (x, y) of every pixel as the original computed it: (H*W, 2) float32.

    x = (linspace(-1, 1, W)[i] + 1) / 2 * (W - 1) in float32 on the CPU (y likewise with
    H): not always the exact integer (off by up to 7.6e-6 at W = 100), SPEC section 2.
    Row y * W + x is pixel (x, y). Cached per (size, device), so the returned tensor is
    shared: do not modify it in place.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    return _pixel_positions_cached(int(height), int(width), device)


def follow_keypoints(grid: torch.Tensor, keypts: torch.Tensor) -> torch.Tensor:
    """Move keypoints through a warp: each goes to the output pixel whose grid value is closest.

    Distances are measured in source pixels. The new position is that pixel's
    ``pixel_positions`` value (float32, as the original computed it, not the exact
    integer; SPEC section 2), which the matching evaluation rounds. Keypoints with a
    non-finite coordinate (missing annotations) stay NaN.

    Args:
        grid: (B, H, W, 2) normalized sampling grid (output pixel -> source point).
        keypts: (B, K, 2) pixel (x, y) in the source image, of the same size H x W.

    Returns:
        (B, K, 2) float32 pixel (x, y) in the output image, on the grid's device.
    """
    batch, height, width, _ = grid.shape
    sources = unnormalize_grid(grid, width, height).reshape(batch, -1, 2)  # (B, H*W, 2)
    keypts = keypts.to(grid.dtype)
    dist = torch.cdist(keypts.nan_to_num(), sources,
                       compute_mode="donot_use_mm_for_euclid_dist")  # (B, K, H*W)
    nearest = dist.argmin(dim=-1)  # (B, K)
    moved = pixel_positions(height, width, grid.device)[nearest]  # (B, K, 2) float32
    known = torch.isfinite(keypts).all(dim=-1, keepdim=True)  # (B, K, 1)
    return torch.where(known, moved, torch.full_like(moved, float("nan")))


def crop_grid(grid: torch.Tensor, crop: int, width_in: int, height_in: int) -> torch.Tensor:
    """Restrict a grid to its inner output pixels and re-express it in the cropped source frame.

    Args:
        grid: (B, H, W, 2) normalized, pointing into a source image of ``width_in`` x
            ``height_in`` pixels.
        crop: pixels removed on every side of both the output and the source image.
        width_in, height_in: size of the uncropped source image.

    Returns:
        (B, H - 2 crop, W - 2 crop, 2), normalized in the (W_in - 2 crop) x
        (H_in - 2 crop) source frame.
    """
    height, width = grid.shape[1:3]
    if crop < 0 or 2 * crop >= min(height, width, height_in, width_in) - 1:
        raise ValueError(f"crop={crop} must be >= 0 and leave at least 2 pixels of "
                         f"a {width}x{height} grid and a {width_in}x{height_in} source")
    if crop == 0:
        return grid
    inner = grid[:, crop:height - crop, crop:width - crop]  # (B, h, w, 2)
    pixels = unnormalize_grid(inner, width_in, height_in) - crop
    return normalize_pixels(pixels, width_in - 2 * crop, height_in - 2 * crop)
