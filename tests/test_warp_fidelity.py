"""The warps follow the original's arithmetic bit for bit (SPEC section 2).

Each test rebuilds the original pipeline naively from SPEC's formulas: the design matrix
in float32 from ``torch.linspace``, I1 = sample(I, g1), I2 = sample(float I1, g2), the
crop, one ``.to(torch.uint8)``; keypoints by a k-d tree nearest search, placed at the
float32 pixel positions (linspace(-1, 1, W)[i] + 1) / 2 * (W - 1), minus crop.
"""
import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from data_loader.warper import Warper, WarperSingle
from trainer.matching import keypoint_cells
from utils.tps import random_tps_weights

ZERO_WARP = dict(warpsd_all=0, warpsd_subset=0, transsd=0, scalesd=0, rotsd=0)


def linspace_positions(size: int) -> torch.Tensor:
    """(size,) float32 pixel positions as the original computed them."""
    return (torch.linspace(-1, 1, size, dtype=torch.float32) + 1) / 2 * (size - 1)


def naive_grid(weights: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 103, 2) -> (B, H, W, 2): [U(pixel, control) | 1 | x | y] @ weights, float32."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width),
                            indexing="ij")
    pixels = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)  # (H*W, 2)
    cy, cx = torch.meshgrid(torch.linspace(-1, 1, 10), torch.linspace(-1, 1, 10), indexing="ij")
    control = torch.stack([cx.reshape(-1), cy.reshape(-1)], 1)  # (100, 2)
    d2 = ((pixels[:, None] - control[None]) ** 2).sum(2)
    design = torch.cat([d2 * torch.log(d2 + 1e-5), torch.ones(height * width, 1), pixels], 1)
    return torch.stack([(design @ w).reshape(height, width, 2) for w in weights])


def sample(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def unnormalize(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return (grid + 1) / 2 * torch.tensor([width - 1.0, height - 1.0])


def naive_follow(grid: torch.Tensor, keypts: torch.Tensor) -> torch.Tensor:
    """Per image, the float32 position of the output pixel whose source point is nearest."""
    _, height, width, _ = grid.shape
    xs, ys = linspace_positions(width), linspace_positions(height)
    moved = []
    for image_grid, points in zip(unnormalize(grid, height, width), keypts):
        _, index = cKDTree(image_grid.reshape(-1, 2).numpy()).query(points.numpy())
        index = torch.from_numpy(index)
        moved.append(torch.stack([xs[index % width], ys[index // width]], -1))
    return torch.stack(moved)


def inputs(batch: int, height: int, width: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, height, width), generator=generator,
                           dtype=torch.uint8)
    keypts = 8 + (min(height, width) - 16) * torch.rand(batch, 5, 2, generator=generator)
    return images, keypts


def test_warper_equals_the_original_pipeline():
    batch, height, width, crop = 3, 60, 64, 5
    images, keypts = inputs(batch, height, width, seed=0)
    pair = Warper()(images, keypts, crop=crop, generator=torch.Generator().manual_seed(3))

    generator = torch.Generator().manual_seed(3)  # same draws: g1 (TPS sds halved), then g2
    weights1 = random_tps_weights(batch, 0.0005, 0.005, 0.1, 0.1, 5, generator=generator)
    weights2 = random_tps_weights(batch, 0.001, 0.01, 0.1, 0.1, 5, generator=generator)
    grid1, grid2 = naive_grid(weights1, height, width), naive_grid(weights2, height, width)
    im1 = sample(images.float(), grid1)
    im2 = sample(im1, grid2)  # from the float I1
    inner = (..., slice(crop, height - crop), slice(crop, width - crop))
    torch.testing.assert_close(pair.second, im1[inner].to(torch.uint8).float(), rtol=0, atol=0)
    torch.testing.assert_close(pair.first, im2[inner].to(torch.uint8).float(), rtol=0, atol=0)

    kp1 = naive_follow(grid1, keypts)
    kp2 = naive_follow(grid2, kp1)  # I1's float32 keypoints, before the crop
    assert pair.keypts_second.dtype == pair.keypts_first.dtype == torch.float32
    assert torch.equal(pair.keypts_second, kp1 - crop)
    assert torch.equal(pair.keypts_first, kp2 - crop)

    cropped = unnormalize(grid2, height, width)[:, crop:height - crop, crop:width - crop] - crop
    extent = torch.tensor([width - 2 * crop - 1.0, height - 2 * crop - 1.0])
    expected_grid = 2 * cropped / extent - 1
    assert torch.equal(pair.grid, expected_grid)


def test_truncating_I1_before_the_second_warp_would_be_visible():
    """The property the test above pins: sampling a truncated I1 darkens I2 by ~0.5."""
    images, _ = inputs(2, 60, 64, seed=1)
    generator = torch.Generator().manual_seed(4)
    grid1 = naive_grid(random_tps_weights(2, 0.0005, 0.005, 0.1, 0.1, 5, generator=generator),
                       60, 64)
    grid2 = naive_grid(random_tps_weights(2, 0.001, 0.01, 0.1, 0.1, 5, generator=generator),
                       60, 64)
    im1 = sample(images.float(), grid1)
    pair = Warper()(images, generator=torch.Generator().manual_seed(4))
    twice_truncated = sample(im1.to(torch.uint8).float(), grid2).to(torch.uint8).float()
    lower = (twice_truncated < pair.first).float().mean()
    assert 0.3 < lower < 0.6
    assert 0.3 < (pair.first - twice_truncated).mean() < 0.7


def test_warper_single_equals_the_original_pipeline():
    batch, height, width, crop = 3, 48, 40, 3
    images, keypts = inputs(batch, height, width, seed=2)
    single = WarperSingle()(images, keypts, crop=crop, generator=torch.Generator().manual_seed(5))
    weights = random_tps_weights(batch, 0.0005, 0.0, 0.02, 0.02, 2,
                                 generator=torch.Generator().manual_seed(5))
    grid = naive_grid(weights, height, width)
    warped = sample(images.float(), grid)[..., crop:height - crop, crop:width - crop]
    expected = warped.to(torch.uint8).float()
    assert torch.equal(single.images, expected)
    # without a tolerance: some levels lie just below an integer and lose it
    assert ((warped - expected) > 0.99).any()
    assert torch.equal(single.keypts, naive_follow(grid, keypts) - crop)


def test_followed_keypoints_are_the_float32_linspace_positions():
    size, crop = 100, 15
    images = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    diagonal = torch.arange(size, dtype=torch.float32)
    keypts = torch.stack([diagonal, diagonal], -1)[None]  # (1, 100, 2): pixel (i, i)
    pair = Warper(**ZERO_WARP)(images, keypts, crop=crop)
    positions = linspace_positions(size)
    expected = torch.stack([positions, positions], -1)[None] - crop
    assert torch.equal(pair.keypts_first, expected)
    assert torch.equal(pair.keypts_second, expected)
    off = (positions - diagonal).abs()
    assert 0 < off.max() < 1e-5 and (off > 0).sum() > 10  # not the exact integers
    single = WarperSingle(**ZERO_WARP)(images, keypts, crop=crop)
    assert torch.equal(single.keypts, expected)


def test_matching_cells_break_ties_on_the_float32_positions():
    """imwidth 100, crop 15, stride 2: where (x - 15) / 2 is a tie for the exact integer x,
    the float32 position decides the half-to-even rounding."""
    size, crop, stride, cells_per_side = 100, 15, 2.0, 35
    positions = linspace_positions(size).numpy()
    columns = np.arange(size)
    exact_cells = np.round((columns - crop) / stride)
    float32_cells = np.round((positions - np.float32(crop)) / np.float32(stride))
    differing = np.flatnonzero((exact_cells != float32_cells) & (columns >= crop)
                               & (columns < size - crop))
    assert len(differing) >= 3
    points = torch.tensor(columns[differing], dtype=torch.float32)
    keypts = torch.stack([points, points], -1)[None]  # (1, n, 2)
    pair = Warper(**ZERO_WARP)(torch.zeros(1, 3, size, size), keypts, crop=crop)
    cells = keypoint_cells(pair.keypts_first, stride, cells_per_side, cells_per_side)
    expected = float32_cells[differing] * cells_per_side + float32_cells[differing]
    assert cells[0].tolist() == expected.astype(int).tolist()
    old = exact_cells[differing] * cells_per_side + exact_cells[differing]
    assert not np.any(cells[0].numpy() == old)
