"""Random thin-plate-spline warps of image batches, with keypoints following (SPEC section 2).

Everything runs batched on the images' device; random draws go through the given
``torch.Generator`` (or the global one).
"""
import numbers
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.tps import crop_grid, follow_keypoints, random_tps_weights, tps_grid


@dataclass(frozen=True)
class WarpStrength:
    """Standard deviations of one random warp (see ``utils.tps.random_tps_weights``)."""
    warpsd_all: float
    warpsd_subset: float
    transsd: float
    scalesd: float
    rotsd: float

    def __post_init__(self):
        check_non_negative(**vars(self))

    def scaled(self, tps: float, affine: float) -> "WarpStrength":
        return WarpStrength(self.warpsd_all * tps, self.warpsd_subset * tps,
                            self.transsd * affine, self.scalesd * affine, self.rotsd * affine)


def check_non_negative(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def truncate_to_uint8_values(images: Tensor) -> Tensor:
    """Float levels -> the original's ``.to(torch.uint8)`` of them, as floats (SPEC section 2).

    Plain truncation toward zero, no tolerance: 254.995 -> 254, -0.3 -> 0. A warp of
    0..255 images only gives values in (-1, 256) (float32 rounding strays a few 1e-5
    beyond 0..255), where this equals ``.to(torch.uint8)`` exactly. Beyond that the C
    conversion is undefined (x86 wraps: -3 -> 253, 300 -> 44); such values are clamped
    to 0 and 255 instead.

    Args:
        images: any shape, float.
    Returns:
        same shape and dtype, integer values 0..255.
    """
    return images.clamp(0, 255).trunc_()


def crop_images(images: Tensor, crop: int) -> Tensor:
    """(B, C, H, W) -> (B, C, H - 2 crop, W - 2 crop)."""
    height, width = images.shape[-2:]
    return images[..., crop:height - crop, crop:width - crop]


def warp_batch(images: Tensor, keypts: Optional[Tensor], strength: WarpStrength,
               generator: Optional[torch.Generator]
               ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Draw one warp per image, sample (in float, not truncated) and move the keypoints.

    Args:
        images: (B, C, H, W) float 0..255.
        keypts: (B, K, 2) pixel (x, y) in ``images``, or None.
        strength: standard deviations of the warps.
        generator: torch.Generator on the images' device, or None for the global one.

    Returns:
        warped images (B, C, H, W) float (bilinear, zero padding); the grid (B, H, W, 2),
        normalized, of the warp (output pixel -> input point); keypoints (B, K, 2) float32
        pixels in the warped images (``utils.tps.follow_keypoints``), or None.
    """
    batch, _, height, width = images.shape
    weights = random_tps_weights(batch, **vars(strength), generator=generator,
                                 device=images.device)  # (B, 103, 2)
    grid = tps_grid(weights, height, width)  # (B, H, W, 2)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                           align_corners=True)  # (B, C, H, W)
    moved = None if keypts is None else follow_keypoints(grid, keypts)  # (B, K, 2)
    return warped, grid, moved


def _to_levels(images: Tensor, crop: int) -> Tensor:
    """Float warped images (B, C, H, W) -> cropped, truncated to integer levels."""
    return truncate_to_uint8_values(crop_images(images, crop))


def _prepare(images: Tensor, keypts: Optional[Tensor], crop: int
             ) -> Tuple[Tensor, Optional[Tensor]]:
    """Check the inputs; images to float32 (B, 3, H, W), keypoints to float32 (B, K, 2)."""
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if (not isinstance(crop, numbers.Integral) or crop < 0
            or 2 * crop >= min(images.shape[-2:]) - 1):
        raise ValueError(f"crop={crop!r} must be a non-negative int leaving at least 2 pixels "
                         f"of {tuple(images.shape[-2:])} images")
    if keypts is not None:
        if keypts.dim() != 3 or keypts.shape[0] != images.shape[0] or keypts.shape[2] != 2:
            raise ValueError(f"keypts must be (B, K, 2) with B={images.shape[0]}, "
                             f"got shape {tuple(keypts.shape)}")
        keypts = keypts.to(device=images.device, dtype=torch.float32)
    return images.float(), keypts


def _shift(keypts: Optional[Tensor], crop: int) -> Optional[Tensor]:
    """Keypoints into the cropped frame, in their own dtype (float32 from the warps)."""
    return None if keypts is None else keypts - crop


@dataclass
class WarpedPair:
    """A batch of warped pairs; all in the cropped frame.

    first: (B, 3, h, w) the twice-warped images I2, float, integer values 0..255.
    second: (B, 3, h, w) the once-warped images I1.
    grid: (B, h, w, 2) normalized: pixel p of ``first`` shows the point of ``second`` at
        grid(p).
    keypts_first, keypts_second: (B, K, 2) float32 pixel (x, y) (the original's float32
        pixel positions, see ``utils.tps.pixel_positions``, minus crop), or None without
        keypoints.
    """
    first: Tensor
    second: Tensor
    grid: Tensor
    keypts_first: Optional[Tensor] = None
    keypts_second: Optional[Tensor] = None


class Warper:
    """Pairs of warped images with their dense correspondence, for embedding learning.

    I1 is the input under a warp g1 of reduced strength, I2 is I1 under a full-strength
    warp g2; the pair is (first=I2, second=I1) with grid g2. As in the original, I2 is
    sampled from the float I1, and both are truncated to integer levels once, after the
    crop (SPEC section 2).

    Args:
        warpsd_all: sd of every TPS kernel weight.
        warpsd_subset: sd of the redraw of each kernel weight (probability 0.5).
        transsd: sd of the translation, normalized units.
        scalesd: sd of the scale around 1.
        rotsd: sd of the rotation, degrees.
        im1_multiplier: factor on the TPS sds (warpsd_*) for g1.
        im1_multiplier_aff: factor on the affine sds (transsd, scalesd, rotsd) for g1.
    """

    def __init__(self, warpsd_all: float = 0.001, warpsd_subset: float = 0.01,
                 transsd: float = 0.1, scalesd: float = 0.1, rotsd: float = 5,
                 im1_multiplier: float = 0.5, im1_multiplier_aff: float = 1.0):
        check_non_negative(im1_multiplier=im1_multiplier, im1_multiplier_aff=im1_multiplier_aff)
        self.strength = WarpStrength(warpsd_all, warpsd_subset, transsd, scalesd, rotsd)
        self.strength_im1 = self.strength.scaled(im1_multiplier, im1_multiplier_aff)

    def __call__(self, images: Tensor, keypts: Optional[Tensor] = None, crop: int = 0,
                 generator: Optional[torch.Generator] = None) -> WarpedPair:
        """Warp a batch into pairs.

        Args:
            images: (B, 3, H, W) uint8 or float 0..255, on any device.
            keypts: (B, K, 2) pixel (x, y) in ``images``, or None.
            crop: pixels removed on every side after warping.
            generator: torch.Generator on the images' device, or None for the global one.
        """
        images, keypts = _prepare(images, keypts, crop)
        height, width = images.shape[-2:]
        second, _, keypts_second = warp_batch(images, keypts, self.strength_im1, generator)
        first, grid, keypts_first = warp_batch(second, keypts_second, self.strength, generator)
        return WarpedPair(first=_to_levels(first, crop), second=_to_levels(second, crop),
                          grid=crop_grid(grid, crop, width, height),  # (B, h, w, 2)
                          keypts_first=_shift(keypts_first, crop),
                          keypts_second=_shift(keypts_second, crop))


@dataclass
class WarpedSingle:
    """A batch of warped images in the cropped frame.

    images: (B, 3, h, w) float, integer values 0..255 (truncated after the crop).
    keypts: (B, K, 2) float32 pixel (x, y) (as in ``WarpedPair``), or None without keypoints.
    """
    images: Tensor
    keypts: Optional[Tensor] = None


class WarperSingle:
    """One mild random warp per image: augmentation for landmark-regressor training.

    Args: as ``Warper`` (without the im1 multipliers).
    """

    def __init__(self, warpsd_all: float = 0.0005, warpsd_subset: float = 0.0,
                 transsd: float = 0.02, scalesd: float = 0.02, rotsd: float = 2):
        self.strength = WarpStrength(warpsd_all, warpsd_subset, transsd, scalesd, rotsd)

    def __call__(self, images: Tensor, keypts: Optional[Tensor] = None, crop: int = 0,
                 generator: Optional[torch.Generator] = None) -> WarpedSingle:
        """Warp a batch.

        Args:
            images: (B, 3, H, W) uint8 or float 0..255, on any device.
            keypts: (B, K, 2) pixel (x, y) in ``images``, or None.
            crop: pixels removed on every side after warping.
            generator: torch.Generator on the images' device, or None for the global one.
        """
        images, keypts = _prepare(images, keypts, crop)
        warped, _, moved = warp_batch(images, keypts, self.strength, generator)
        return WarpedSingle(images=_to_levels(warped, crop), keypts=_shift(moved, crop))
