"""Thin-plate-spline warps and the Warper / WarperSingle augmentations (SPEC section 2)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data_loader.registry import WARPERS
from data_loader.warper import Warper, WarperSingle, truncate_to_uint8_values
from utils.tps import follow_keypoints, tps_design_matrix, tps_grid

DOTS = [(22.0, 24.0), (40.0, 27.0), (30.0, 41.0)]  # (x, y), one per colour channel


def blob_images(batch, height, width, centers, sigma=1.5):
    """(B, 3, H, W) float: channel c holds a Gaussian dot of peak 255 at centers[c]."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [255 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))
                for cx, cy in centers]
    image = torch.from_numpy(np.stack(channels)).float()
    return image.expand(batch, -1, -1, -1).clone()


def centroids(images):
    """(B, C, H, W) -> (B, C, 2) intensity-weighted (x, y) of every channel (numpy)."""
    images = images.numpy().astype(np.float64)
    ys, xs = np.mgrid[0:images.shape[2], 0:images.shape[3]]
    total = images.sum(axis=(2, 3))
    return np.stack([(images * xs).sum(axis=(2, 3)) / total,
                     (images * ys).sum(axis=(2, 3)) / total], axis=-1)


def identity_grid(height, width):
    """(H, W, 2) normalized (x, y) of every pixel, numpy."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([2 * xs / (width - 1) - 1, 2 * ys / (height - 1) - 1], axis=-1)


def linspace_grid(batch, height, width):
    """(B, H, W, 2) float32 identity grid from ``torch.linspace``, as the original built it."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width),
                            indexing="ij")
    return torch.stack([xs, ys], dim=-1).expand(batch, -1, -1, -1)


def sample(images, grid):
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def smooth_images(batch, height, width, seed=0):
    """(B, 3, H, W) float 0..255, low-frequency texture."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
    images = np.zeros((batch, 3, height, width))
    for _ in range(4):
        fx, fy, phase = rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 2 * np.pi)
        images += rng.uniform(0.5, 1, (batch, 3, 1, 1)) * np.sin(2 * np.pi * (fx * xs + fy * ys)
                                                                 + phase)
    images = (images - images.min()) / (images.max() - images.min()) * 255
    return torch.from_numpy(images).float()


def test_registered():
    assert "Warper" in WARPERS and "WarperSingle" in WARPERS
    assert WARPERS.get("Warper") is Warper


def test_design_matrix_entries():
    height, width = 7, 9
    design = tps_design_matrix(height, width).double()
    assert design.shape == (height * width, 103)
    # top-left pixel (-1, -1) coincides with control point 0 (-1, -1): U(0) = 0
    assert design[0, 0].item() == 0.0
    # pixel (x=3, y=5); control point 23 = (column 3, row 2) of the 10x10 grid
    px, py = 2 * 3 / (width - 1) - 1, 2 * 5 / (height - 1) - 1
    cx, cy = -1 + 2 * 3 / 9, -1 + 2 * 2 / 9
    d2 = (px - cx) ** 2 + (py - cy) ** 2
    row = 5 * width + 3
    assert design[row, 23].item() == pytest.approx(d2 * math.log(d2 + 1e-5), rel=1e-6)
    assert design[row, 100:].tolist() == pytest.approx([1.0, px, py], rel=1e-6)


def test_zero_strength_is_identity():
    images = torch.randint(0, 256, (2, 3, 20, 24), dtype=torch.uint8)
    keypts = torch.tensor([[[3.0, 4.0], [10.0, 15.0]], [[20.0, 2.0], [7.0, 7.0]]])
    warper = Warper(warpsd_all=0, warpsd_subset=0, transsd=0, scalesd=0, rotsd=0)
    # The original's identity warp is not exact: grid_sample of float32 linspace positions
    # mixes in ~1e-6 of a neighbour, and plain truncation then loses a level next to a
    # darker one. Both images are sampled in float, truncated once after the crop.
    once = sample(images.float(), linspace_grid(2, 20, 24))
    twice = sample(once, linspace_grid(2, 20, 24))
    for crop in (0, 2):
        pair = warper(images, keypts=keypts, crop=crop)
        window = (..., slice(crop, 20 - crop), slice(crop, 24 - crop))
        inner = images[window].float()
        assert torch.equal(pair.first, twice[window].to(torch.uint8).float())
        assert torch.equal(pair.second, once[window].to(torch.uint8).float())
        for out in (pair.first, pair.second):
            assert ((inner - out) >= 0).all() and ((inner - out) <= 1).all()
        expected_grid = torch.from_numpy(identity_grid(20 - 2 * crop, 24 - 2 * crop)).float()
        torch.testing.assert_close(pair.grid, expected_grid.expand(2, -1, -1, -1),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(pair.keypts_first, keypts - crop)
        torch.testing.assert_close(pair.keypts_second, keypts - crop)
    single = WarperSingle(warpsd_all=0, transsd=0, scalesd=0, rotsd=0)(images, keypts, crop=2)
    assert torch.equal(single.images, once[..., 2:18, 2:22].to(torch.uint8).float())
    torch.testing.assert_close(single.keypts, keypts - 2)


def test_known_affine_warp():
    height, width = 48, 64
    angle, scale, trans = math.radians(10), 1.1, np.array([0.1, -0.05])
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    weights = torch.zeros(1, 103, 2)
    weights[0, 100:] = torch.tensor([[0.1, -0.05], [cos, -sin], [sin, cos]])
    grid = tps_grid(weights, height, width)  # (1, H, W, 2)

    # grid(p) = t + A p, with A the matrix acting on normalized (x, y) column vectors
    matrix = np.array([[cos, sin], [-sin, cos]])
    expected = identity_grid(height, width) @ matrix.T + trans
    np.testing.assert_allclose(grid[0].numpy(), expected, atol=1e-5)

    # a dot at source pixel q appears at output pixel p with t + A p_n = q_n
    source = np.array([40.0, 20.0])
    extent = np.array([width - 1, height - 1])
    target_n = np.linalg.solve(matrix, 2 * source / extent - 1 - trans)
    target = (target_n + 1) / 2 * extent
    image = blob_images(1, height, width, [tuple(source)] * 3)
    warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros",
                           align_corners=True)
    np.testing.assert_allclose(centroids(warped)[0, 0], target, atol=0.3)
    moved = follow_keypoints(grid, torch.from_numpy(source).float()[None, None])
    assert np.linalg.norm(moved[0, 0].numpy() - target) < 1.0


def test_follow_keypoints_keeps_missing_points_missing():
    grid = torch.from_numpy(identity_grid(10, 12)).float()[None]
    keypts = torch.tensor([[[2.2, 3.9], [float("nan"), float("nan")]]])
    moved = follow_keypoints(grid, keypts)
    assert moved[0, 0].tolist() == [2.0, 4.0]
    assert torch.isnan(moved[0, 1]).all()


def test_warper_pair_keypoints_follow_dots():
    crop = 4
    images = blob_images(4, 64, 64, DOTS)
    keypts = torch.tensor(DOTS).expand(4, -1, -1)
    # at the default warpsd_subset=0.01 about one warp in seven folds over somewhere (a dot
    # may then appear twice); 0.005 keeps every warp one-to-one and the check exact
    warper = Warper(warpsd_subset=0.005)
    pair = warper(images, keypts=keypts, crop=crop, generator=torch.Generator().manual_seed(0))
    assert pair.first.shape == pair.second.shape == (4, 3, 56, 56)
    assert pair.grid.shape == (4, 56, 56, 2)
    for warped, moved in ((pair.first, pair.keypts_first), (pair.second, pair.keypts_second)):
        error = np.linalg.norm(centroids(warped) - moved.numpy(), axis=-1)  # (B, 3)
        assert error.max() < 1.5, error
    # the warps are not trivial: the dots moved
    assert np.abs(pair.keypts_first.numpy() - (keypts.numpy() - crop)).max() > 2


def test_warper_grid_maps_first_to_second():
    crop = 6
    images = smooth_images(3, 60, 64)
    pair = Warper()(images, crop=crop, generator=torch.Generator().manual_seed(1))
    resampled = sample(pair.second, pair.grid)
    # where grid points inside the cropped second image, only the truncations differ:
    # first = trunc(g2 of the float I1), resampled = g2 of trunc(I1); each loses half a
    # level on average, so the mean difference is ~0 (it was ~0.5 when I2 was sampled
    # from the truncated I1)
    inside = (pair.grid.abs().amax(dim=-1) <= 1)[:, None].expand_as(resampled)
    assert inside.float().mean() > 0.6
    difference = (resampled - pair.first)[inside]
    assert difference.min() > -1.0 and difference.max() < 1.0
    assert abs(difference.mean()) < 0.1


def test_outputs_are_truncated_to_uint8_values():
    images = torch.rand(2, 3, 32, 32) * 300 - 20
    pair = Warper()(images, generator=torch.Generator().manual_seed(2))
    for out in (pair.first, pair.second):
        assert torch.equal(out, out.floor())
        assert out.min() >= 0 and out.max() <= 255
    # plain truncation toward zero, no tolerance (SPEC section 2): 254.995 -> 254
    values = torch.tensor([-3.0, -0.4, 0.4, 12.5, 253.9999, 254.995, 254.999, 255.7, 300.0])
    assert truncate_to_uint8_values(values).tolist() == [0, 0, 0, 12, 253, 254, 254, 255, 255]
    # what the original's .to(torch.uint8) gives wherever it is defined, (-1, 256)
    in_range = torch.rand(10000, generator=torch.Generator().manual_seed(0)) * 257 - 1
    assert torch.equal(truncate_to_uint8_values(in_range), in_range.to(torch.uint8).float())


def test_same_seed_same_output_and_each_image_its_own_warp():
    images = smooth_images(2, 24, 24)
    images[1] = images[0]
    keypts = torch.tensor([[[5.0, 6.0]], [[5.0, 6.0]]])
    pairs = [Warper()(images, keypts, crop=2, generator=torch.Generator().manual_seed(7))
             for _ in range(2)]
    for name in ("first", "second", "grid", "keypts_first", "keypts_second"):
        assert torch.equal(getattr(pairs[0], name), getattr(pairs[1], name)), name
    assert (pairs[0].grid[0] - pairs[0].grid[1]).abs().max() > 1e-2
    other = Warper()(images, keypts, crop=2, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(other.grid, pairs[0].grid)


def test_warper_single_keypoints_follow_dots():
    images = blob_images(3, 64, 64, DOTS)
    keypts = torch.tensor(DOTS).expand(3, -1, -1)
    single = WarperSingle()(images, keypts=keypts, crop=3,
                            generator=torch.Generator().manual_seed(0))
    assert single.images.shape == (3, 3, 58, 58)
    error = np.linalg.norm(centroids(single.images) - single.keypts.numpy(), axis=-1)
    assert error.max() < 1.5, error


@pytest.mark.parametrize("cls, name", [(Warper, "rotsd"), (Warper, "im1_multiplier"),
                                       (WarperSingle, "warpsd_all"), (WarperSingle, "transsd")])
def test_negative_sd_is_an_error_naming_the_argument(cls, name):
    with pytest.raises(ValueError, match=f"^{name} must be a non-negative number"):
        cls(**{name: -0.1})


def test_bad_crop_is_an_error():
    with pytest.raises(ValueError, match="crop=-1"):
        Warper()(torch.zeros(1, 3, 16, 16), crop=-1)
