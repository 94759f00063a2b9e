"""An identity's fixed layers, built once per person: background, hair strands, hair shapes."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from data_loader.synthetic.canvas import (IMAGE_SIZE, CANVAS, MARGIN, SCALE, ellipse_points,
                                          frame_grid, canvas_pixels, rgb, smooth_noise, to_canvas)
from data_loader.synthetic.identity import FaceIdentity


def render_background(ident: FaceIdentity, rng: np.random.Generator) -> Image.Image:
    """The identity's background over the whole canvas (computed at half resolution)."""
    x, y = frame_grid((0, 0) + CANVAS, SCALE)
    size = (x.shape[1], x.shape[0])
    c1, c2 = np.array(ident.background, np.float32), np.array(ident.background2, np.float32)
    along = x * math.cos(ident.background_angle) + y * math.sin(ident.background_angle)
    pattern = ident.background_pattern
    if pattern == "flat":
        t = 0.15 * smooth_noise(rng, (4, 5), size)
    elif pattern == "gradient":
        t = (along - along.min()) / (along.max() - along.min())
    elif pattern == "stripes":
        t = 0.5 + 0.5 * np.sign(np.sin(along * ident.background_freq * 2))
    elif pattern == "tiles":
        across = -x * math.sin(ident.background_angle) + y * math.cos(ident.background_angle)
        f = ident.background_freq
        t = ((np.floor(along * f) + np.floor(across * f)) % 2).astype(np.float32)
    else:  # blobs
        t = np.clip(0.5 + 0.6 * smooth_noise(rng, (6, 7), size), 0, 1)
    pixels = np.clip(c1 + t[..., None] * (c2 - c1), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).resize(CANVAS, Image.BILINEAR)


def hair_texture(ident: FaceIdentity, rng: np.random.Generator,
                  width_scale: float = 1.0) -> Image.Image:
    """The identity's hair colour with strands flowing from the crown (canvas size), each
    U(0.5, 1.0) frame pixels wide times ``width_scale``."""
    layer = Image.new("RGB", CANVAS, rgb(ident.hair))
    draw = ImageDraw.Draw(layer)
    crown = np.array([ident.face_cx + ident.parting * 0.35 * ident.face_a,
                      ident.face_cy - ident.face_b - 0.5 * ident.hair_volume])
    count = int(rng.integers(90, 160))
    angle = rng.uniform(-0.15, 1.15, count) * math.pi  # fanning out and down from the crown
    length = rng.uniform(40, 130 if ident.hair_long else 80, count)
    start = crown + rng.normal(0, 4, (count, 2))
    direction = np.stack([np.cos(angle), np.abs(np.sin(angle)) + 0.2], 1)
    end = start + (length / np.linalg.norm(direction, axis=1))[:, None] * direction
    bend = (start + end) / 2 + rng.normal(0, 8, (count, 2)) + (0, -10)
    shade = rng.choice([0.62, 0.78, 1.22, 1.4], count)
    width = rng.uniform(0.5, 1.0, count) * width_scale
    t = np.linspace(0, 1, 14)[None, :, None]
    curves = (1 - t) ** 2 * start[:, None] + 2 * (1 - t) * t * bend[:, None] + t ** 2 * end[:, None]
    dark_hair = sum(ident.hair) <= 90  # shading black hair would not show: lighten instead
    for curve, s, w in zip(curves, shade, width):
        colour = rgb(np.array(ident.hair) + 28 * (s - 0.6)) if dark_hair else rgb(ident.hair, s)
        draw.line(to_canvas(curve), fill=colour, width=canvas_pixels(w), joint="curve")
    return layer


def hair_masks(ident: FaceIdentity) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Polygons of the hair behind the head (long hair) and of the cap in front."""
    a, b, v, cx, cy = ident.face_a, ident.face_b, ident.hair_volume, ident.face_cx, ident.face_cy
    if ident.hair_front == "bald":
        return None, None
    y_side = ident.eye_y - 4.0
    t_side = math.asin(min(0.95, (cy - y_side) / (b + v)))
    outer = ellipse_points(cx, cy, a + v, b + v, 40, math.pi + t_side, 2 * math.pi - t_side)
    width_at = lambda yy: a * math.sqrt(max(0.0, 1 - ((yy - cy) / b) ** 2))  # noqa: E731
    top = ident.eye_y - ident.hairline
    if ident.hair_front == "short":
        u = np.linspace(1, -1, 15)
        line = np.stack([cx + 0.82 * width_at(top) * u, top + 7 * u ** 2], 1)
    elif ident.hair_front == "fringe":
        u = np.linspace(1, -1, 17)
        teeth = np.where(np.arange(17) % 2 == 0, 0.0, -3.5)
        line = np.stack([cx + 0.92 * width_at(top) * u, top + 2.5 * u ** 2 + teeth], 1)
    else:  # side parting: the hairline rises towards the parting side
        u = np.linspace(1, -1, 15)
        rise = 12.0 * (1 + ident.parting * u) / 2
        line = np.stack([cx + 0.9 * width_at(top) * u, top - rise + 4 * (1 - u ** 2)], 1)
    # temples: down the inside of the face outline from the hairline's ends to y_side
    right = [(cx + 0.95 * width_at(yy), yy) for yy in np.linspace(y_side, line[0, 1], 8)]
    left = [(cx - 0.95 * width_at(yy), yy) for yy in np.linspace(line[-1, 1], y_side, 8)]
    cap = np.concatenate([outer, right, line, left])
    back = None
    if ident.hair_long:
        bottom = IMAGE_SIZE[1] + MARGIN
        arc = ellipse_points(cx, cy, a + v + 3, b + v + 2, 30, math.pi, 2 * math.pi)
        back = np.concatenate([[(cx - a - v - 6, bottom)], arc, [(cx + a + v + 6, bottom)]])
    return back, cap
