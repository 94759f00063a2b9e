"""After drawing: the pose warp of the canvas into the image, and photometric degradation
(blur, lighting ramp, brightness, contrast, colour cast, noise)."""
from __future__ import annotations

import functools
import math
from typing import Tuple

import numpy as np
from PIL import Image, ImageFilter

from data_loader.synthetic.canvas import IMAGE_SIZE, MARGIN
from data_loader.synthetic.identity import FaceVariation

_POSE_CENTRE = np.array([89.0, 120.0])


def pose_affine(var: FaceVariation) -> Tuple[np.ndarray, np.ndarray]:
    """Frame -> image affine map p -> M p + o (rotation and scale about _POSE_CENTRE)."""
    theta = math.radians(var.rotation)
    matrix = var.scale * np.array([[math.cos(theta), -math.sin(theta)],
                                   [math.sin(theta), math.cos(theta)]])
    offset = _POSE_CENTRE + (var.shift_x, var.shift_y) - matrix @ _POSE_CENTRE
    return matrix, offset


def inverse_affine(matrix: np.ndarray, offset: np.ndarray) -> Tuple[float, ...]:
    """PIL's AFFINE data for the reduced canvas: output -> input, pixel edges at integers.

    Output edge coordinate q is image pixel p_out = q - 0.5; its frame point is
    p = M^-1 (p_out - o), at edge coordinate p + 0.5 + margin of the reduced canvas.
    """
    inv = np.linalg.inv(matrix)
    const = inv @ (-0.5 - offset) + 0.5 + MARGIN
    return (inv[0, 0], inv[0, 1], const[0], inv[1, 0], inv[1, 1], const[1])


@functools.lru_cache(maxsize=1)
def _image_grid() -> Tuple[np.ndarray, np.ndarray]:
    """Image pixel coordinates relative to the centre, in image widths: (H, W) x, y."""
    w, h = IMAGE_SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return (xx - w / 2) / w, (yy - h / 2) / w


@functools.lru_cache(maxsize=1)
def _noise_field() -> np.ndarray:
    """A fixed field of unit Gaussian noise, twice the image size: (2H, 2W, 3) float32.

    Each image adds a crop of it at its own offset and sign (much faster than drawing
    fresh noise per image and just as unpredictable from one image to the next).
    """
    w, h = IMAGE_SIZE
    return np.random.default_rng(20191027).standard_normal((2 * h, 2 * w, 3), np.float32)


def _blur_kernel(sigma: float) -> ImageFilter.Kernel:
    g = np.exp(-0.5 * (np.arange(-1, 2) / sigma) ** 2)
    return ImageFilter.Kernel((3, 3), np.outer(g, g).ravel().tolist(), scale=float(g.sum() ** 2))


def apply_photometric(image: Image.Image, var: FaceVariation) -> Image.Image:
    """The variation's blur, lighting ramp, contrast, colour cast and noise on a rendered
    (H, W) RGB image."""
    if var.blur > 0:
        image = image.filter(_blur_kernel(var.blur))
    pixels = np.asarray(image, np.float32)  # (H, W, 3)
    xx, yy = _image_grid()
    ramp = xx * math.cos(var.light_angle) + yy * math.sin(var.light_angle)
    gain = (var.brightness * (1.0 + var.light_strength * ramp))[..., None]  # (H, W, 1)
    offset = np.array(var.cast, np.float32) - 128.0 * var.contrast
    pixels = pixels * (var.contrast * gain) + offset * gain + 0.5
    if var.noise > 0:
        h, w = pixels.shape[:2]
        rng = np.random.default_rng(var.noise_seed)
        oy, ox = rng.integers(0, h), rng.integers(0, w)
        pixels += (var.noise * rng.choice([-1.0, 1.0])) * _noise_field()[oy:oy + h, ox:ox + w]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
