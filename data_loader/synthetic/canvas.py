"""The drawing canvas: its geometry and the primitives every face layer is drawn with.

Coordinates: landmarks are pixel-index coordinates of the 178 x 218 image (the centre of
pixel column ``i`` is ``x = i``). Faces are drawn in a "frame" (the same coordinates
before the pose) at ``SCALE`` times the resolution on a canvas with a margin, then
warped by the pose and reduced to the output size.
"""
from __future__ import annotations

import math
from typing import List, Tuple

import numpy as np
from PIL import Image

from data_loader.synthetic.identity import FaceIdentity

IMAGE_SIZE = (178, 218)                # (W, H) of CelebA's aligned images
DEBUG_COLOUR = (255, 0, 255)           # landmark markers drawn by ``render(debug=True)``

SCALE = 2                    # drawing supersampling factor
MARGIN = 48                  # canvas margin in output pixels: no rotation reveals an edge
CANVAS = ((IMAGE_SIZE[0] + 2 * MARGIN) * SCALE, (IMAGE_SIZE[1] + 2 * MARGIN) * SCALE)


def to_canvas(points) -> List[Tuple[int, int]]:
    """(N, 2) frame pixel coordinates -> canvas pixel indices as ImageDraw wants them
    (rounded here: ImageDraw would truncate floats, shifting every shape by half a pixel)."""
    q = np.asarray(points, np.float64).reshape(-1, 2) * SCALE + (SCALE * MARGIN
                                                                 + (SCALE - 1) / 2)
    return list(map(tuple, np.rint(q).astype(int).tolist()))


def canvas_pixels(width: float) -> int:
    """A line width in frame pixels -> canvas pixels (at least 1)."""
    return max(1, int(round(width * SCALE)))


def rgb(colour, factor: float = 1.0) -> Tuple[int, int, int]:
    """``colour`` (3 floats, 0..255 scale) times ``factor``, rounded and clipped to 0..255."""
    return tuple(int(round(min(255.0, max(0.0, c * factor)))) for c in colour)


def ellipse_points(cx, cy, a, b, n=48, t0=0.0, t1=2 * math.pi) -> np.ndarray:
    """(n, 2) frame points of the ellipse centred at (cx, cy), semi-axes a, b, angles t0..t1."""
    t = np.linspace(t0, t1, n)
    return np.stack([cx + a * np.cos(t), cy + b * np.sin(t)], 1)


def bezier(p0, p1, p2, n=12) -> np.ndarray:
    """(n, 2) points of the quadratic Bezier curve p0 -> p2 with control point p1."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def face_outline(ident: FaceIdentity, grow: float = 0.0, n: int = 72) -> np.ndarray:
    """(n, 2) frame points of the identity's face outline (jaw narrowed), grown by ``grow`` px."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    lower = np.clip(np.sin(t), 0, None)
    x = ident.face_cx + (ident.face_a + grow) * np.cos(t) * (1 - ident.jaw * lower ** 1.5)
    y = ident.face_cy + (ident.face_b + grow) * np.sin(t)
    return np.stack([x, y], 1)


def frame_grid(box: Tuple[int, int, int, int], step: int = 1):
    """Frame coordinates of the canvas pixel centres in ``box`` (x0, y0, x1, y1), every
    ``step``-th pixel: two (H, W) float32 arrays x, y."""
    def axis(start, stop):
        indices = np.arange(start, stop, step, dtype=np.float32)
        return (indices + (step - SCALE) / 2) / SCALE - MARGIN

    return np.meshgrid(axis(box[0], box[2]), axis(box[1], box[3]))


def smooth_noise(rng: np.random.Generator, cells: Tuple[int, int],
                  size: Tuple[int, int]) -> np.ndarray:
    """Unit-variance-ish noise of ``cells`` (w, h) cells smoothly upsampled to ``size``."""
    coarse = rng.normal(0, 1, (cells[1], cells[0])).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, "F").resize(size, Image.BICUBIC))
