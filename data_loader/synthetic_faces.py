"""Procedurally drawn faces in the CelebA on-disk layout: the out-of-the-box dataset.

Every face is drawn with Pillow and numpy, deterministically from a seed, and its five
CelebA landmarks (eye centres, nose tip, mouth corners) are known exactly because they
are the points the features are drawn at. Identities differ in geometry (face shape,
eye spacing, nose length, mouth width, ...) and in fine appearance (skin noise,
freckles and moles at fixed face-relative places, hair colour, style and strands,
glasses, background); each image of an identity adds a pose (rotation, translation,
scale, a little fake yaw), an expression, lighting and blur or noise.

``write_synthetic_celeba(root)`` writes the layout of SPEC section 5 (images, landmarks,
partition, MAFL lists and ``Anno/identity_CelebA.txt``); ``ensure_synthetic_celeba``
writes it only when ``root`` does not already hold a complete copy made with the same
parameters. Generation happens in a temporary sibling folder renamed into place at the
end, so an interrupted or concurrent run never leaves a half dataset at ``root``.

Determinism: the identity ``i`` comes from ``default_rng([seed, 0, i])`` and its image
``k`` from ``default_rng([seed, 1, i, k])`` (numpy's global RNG is never used), so an
image does not depend on the order or the process it is drawn in. Identity ids run over
train, then validation, then test identities, so changing a count changes later ids.
The default size (3,700 images) takes about 40 s on one CPU core.

Public pieces: ``sample_identity`` / ``sample_variation`` (plain-data ``FaceIdentity``
and ``FaceVariation``), ``FaceRenderer(identity).render(variation)``, ``synthetic_face``
(one image as written to disk), ``contact_sheet`` (tiles with landmarks, for a look).

Coordinates: landmarks are pixel-index coordinates of the 178 x 218 image (the centre of
pixel column ``i`` is ``x = i``). Faces are drawn in a "frame" (the same coordinates
before the pose) at ``_SCALE`` times the resolution on a canvas with a margin, then
warped by the pose and reduced to the output size.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

_logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MARKER_NAME = "synthetic_faces.json"   # written last: its presence means "complete"
OWNER_NAME = ".synthetic_faces_owner"  # written first: "this folder is ours"
TEMP_INFIX = ".synthetic-tmp-"         # temporary sibling: <root name><infix><pid>-<hex>
IMAGE_SIZE = (178, 218)                # (W, H) of CelebA's aligned images
LANDMARK_HEADER = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
                   "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")
DEBUG_COLOUR = (255, 0, 255)           # landmark markers drawn by ``render(debug=True)``

_SCALE = 2                    # drawing supersampling factor
_MARGIN = 48                  # canvas margin in output pixels: no rotation reveals an edge
_POSE_CENTRE = np.array([89.0, 120.0])
_CANVAS = ((IMAGE_SIZE[0] + 2 * _MARGIN) * _SCALE, (IMAGE_SIZE[1] + 2 * _MARGIN) * _SCALE)

_SKIN = np.array([(255, 226, 200), (242, 196, 164), (226, 172, 134), (200, 138, 100),
                  (164, 106, 74), (122, 78, 54), (88, 58, 42)], np.float64)
_HAIR = np.array([(22, 18, 16), (52, 36, 26), (92, 62, 40), (136, 92, 56), (150, 66, 34),
                  (206, 170, 104), (232, 208, 150), (148, 144, 140), (208, 206, 202)],
                 np.float64)
_HAIR_P = np.array([0.2, 0.2, 0.15, 0.1, 0.07, 0.1, 0.05, 0.08, 0.05])
_IRIS = np.array([(62, 40, 24), (100, 64, 34), (126, 104, 52), (74, 112, 64),
                  (64, 104, 168), (112, 124, 134)], np.float64)
_HAIR_FRONT = ("bald", "short", "fringe", "side")


# --------------------------------------------------------------------------- sampling

@dataclass(frozen=True)
class FaceIdentity:
    """What stays the same across the images of one person (frame pixels, RGB 0..255)."""
    skin: Tuple[float, float, float]
    face_cx: float
    face_cy: float
    face_a: float          # half width
    face_b: float          # half height
    jaw: float             # narrowing of the lower face, 0..0.35
    eye_y: float
    eye_half_spacing: float
    eye_w: float           # half width of an eye
    eye_h: float           # half height of an open eye (upper lid)
    eye_tilt: float        # degrees, outer corners up
    iris: Tuple[float, float, float]
    iris_ratio: float
    lash_w: float
    brow_raise: float
    brow_thick: float
    brow_angle: float      # degrees, outer end up
    brow_arch: float
    brow_len: float
    nose_len: float
    nose_w: float
    mouth_offset: float    # mouth corners below the eyes
    mouth_half_w: float
    lip_up: float
    lip_lo: float
    lip: Tuple[float, float, float]
    hair: Tuple[float, float, float]
    hair_front: str        # one of _HAIR_FRONT
    hair_long: bool
    hairline: float        # forehead hairline, pixels above the eyes
    hair_volume: float
    parting: int           # -1 or 1
    facial_hair: str       # "none", "stubble" or "moustache"
    glasses: str           # "none", "round" or "rect"
    glasses_colour: Tuple[float, float, float]
    glasses_size: float
    glasses_thick: float
    background: Tuple[float, float, float]
    background2: Tuple[float, float, float]
    background_pattern: str
    background_freq: float
    background_angle: float
    clothes: Tuple[float, float, float]
    ear_size: float
    skin_texture: float    # amplitude of the identity's skin noise
    freckles: int
    moles: int
    blush: float
    texture_seed: int      # seeds the identity's fixed textures (skin, strands, spots)


@dataclass(frozen=True)
class FaceVariation:
    """What changes from one image of a person to the next."""
    rotation: float        # degrees
    shift_x: float
    shift_y: float
    scale: float
    yaw: float             # -1..1: inner features shift sideways, far eye foreshortened
    smile: float           # -0.3..1: mouth corners up and apart
    smile_asym: float
    mouth_open: float      # pixels between the lips
    eye_open: float        # 0.4..1
    brow_lift: float
    light_angle: float     # radians
    light_strength: float
    brightness: float
    contrast: float
    cast: Tuple[float, float, float]
    blur: float            # Gaussian radius in output pixels, 0 for none
    noise: float           # Gaussian noise sigma in grey levels
    noise_seed: int


NEUTRAL = FaceVariation(rotation=0.0, shift_x=0.0, shift_y=0.0, scale=1.0, yaw=0.0, smile=0.0,
                        smile_asym=0.0, mouth_open=0.0, eye_open=1.0, brow_lift=0.0,
                        light_angle=0.0, light_strength=0.0, brightness=1.0, contrast=1.0,
                        cast=(128.0, 128.0, 128.0), blur=0.0, noise=0.0, noise_seed=0)


def _colour(values) -> Tuple[float, float, float]:
    return tuple(float(v) for v in np.clip(values, 0, 255))


def _palette(rng: np.random.Generator, palette: np.ndarray, jitter: float,
             p: Optional[np.ndarray] = None) -> Tuple[float, float, float]:
    if p is None:  # interpolate along the palette
        t = rng.uniform(0, len(palette) - 1)
        i = min(int(t), len(palette) - 2)
        base = palette[i] * (i + 1 - t) + palette[i + 1] * (t - i)
    else:
        base = palette[rng.choice(len(palette), p=p)]
    return _colour(base + rng.normal(0, jitter, 3))


def _random_colour(rng: np.random.Generator, lo: float = 30, hi: float = 235):
    return _colour(rng.uniform(lo, hi, 3))


def sample_identity(rng: np.random.Generator) -> FaceIdentity:
    """Draw one identity from ``rng`` (a ``numpy.random.Generator``)."""
    u = rng.uniform
    skin = _palette(rng, _SKIN, 5.0)
    hair = _palette(rng, _HAIR, 6.0, _HAIR_P)
    hair_front = str(rng.choice(_HAIR_FRONT, p=[0.12, 0.3, 0.3, 0.28]))
    eye_y = 111.0 + rng.normal(0, 1.5)
    brow_raise = u(8.0, 12.0)
    brow_thick = u(1.6, 3.8)
    lowest_hairline = brow_raise + brow_thick + 7.0
    hairline = {"bald": 60.0, "short": u(32, 42), "fringe": u(lowest_hairline, 24),
                "side": u(max(lowest_hairline, 22), 34)}[hair_front]
    nose_len = u(19.0, 28.0)
    glasses = str(rng.choice(["none", "round", "rect"], p=[0.72, 0.14, 0.14]))
    lipstick = np.array([(185, 30, 50), (150, 45, 85), (120, 50, 45)])
    lip_tint = lipstick[rng.integers(3)] if rng.uniform() < 0.2 else np.array((170, 70, 80))
    lip_mix = u(0.25, 0.6)
    lip = _colour(np.array(skin) * (1 - lip_mix) + lip_tint * lip_mix - 10)
    glasses_colour = rng.choice([u(10, 60), u(60, 200)]) + rng.normal(0, 25, 3)
    return FaceIdentity(
        skin=skin, face_cx=89.0 + rng.normal(0, 1.0), face_cy=u(117, 124),
        face_a=u(39.0, 47.0), face_b=u(57.0, 66.0), jaw=u(0.0, 0.32),
        eye_y=eye_y, eye_half_spacing=u(16.0, 23.0), eye_w=u(6.0, 8.6),
        eye_h=u(2.8, 4.4), eye_tilt=u(-6.0, 9.0),
        iris=_palette(rng, _IRIS, 8.0, np.full(len(_IRIS), 1 / len(_IRIS))),
        iris_ratio=u(0.95, 1.25), lash_w=u(0.7, 1.6),
        brow_raise=brow_raise, brow_thick=brow_thick, brow_angle=u(-10.0, 14.0),
        brow_arch=u(0.0, 3.0), brow_len=u(1.15, 1.6),
        nose_len=nose_len, nose_w=u(4.5, 8.0),
        mouth_offset=max(u(36.0, 47.0), nose_len + 13.0), mouth_half_w=u(12.5, 20.0),
        lip_up=u(1.6, 3.6), lip_lo=u(2.2, 5.0), lip=lip,
        hair=hair, hair_front=hair_front,
        hair_long=bool(hair_front != "bald" and rng.uniform() < 0.4), hairline=hairline,
        hair_volume=u(2.0, 9.0), parting=int(rng.choice([-1, 1])),
        facial_hair=str(rng.choice(["none", "stubble", "moustache"], p=[0.8, 0.1, 0.1])),
        glasses=glasses, glasses_colour=_colour(glasses_colour),
        glasses_size=u(1.4, 1.8), glasses_thick=u(0.8, 2.0),
        background=_random_colour(rng), background2=_random_colour(rng),
        background_pattern=str(rng.choice(["flat", "gradient", "stripes", "blobs", "tiles"])),
        background_freq=u(0.04, 0.15), background_angle=u(0, math.pi),
        clothes=_random_colour(rng, 10, 245), ear_size=u(0.8, 1.2),
        skin_texture=u(0.02, 0.08), freckles=int(rng.integers(10, 60)) if u() < 0.3 else 0,
        moles=int(rng.integers(0, 4)), blush=u(0.0, 0.12),
        texture_seed=int(rng.integers(2 ** 63)))


def sample_variation(rng: np.random.Generator) -> FaceVariation:
    """Draw the per-image pose, expression, lighting and degradation from ``rng``."""
    u = rng.uniform
    return FaceVariation(
        rotation=float(np.clip(rng.normal(0, 4.0), -10, 10)),
        shift_x=float(np.clip(rng.normal(0, 3.0), -8, 8)),
        shift_y=float(np.clip(rng.normal(0, 3.0), -8, 8)),
        scale=u(0.92, 1.08), yaw=u(-1.0, 1.0),
        smile=u(-0.3, 1.0), smile_asym=rng.normal(0, 0.15),
        mouth_open=u(1.0, 6.0) if u() < 0.35 else 0.0,
        eye_open=u(0.4, 0.85) if u() < 0.25 else 1.0, brow_lift=rng.normal(0, 1.0),
        light_angle=u(0, 2 * math.pi), light_strength=u(0.0, 0.35),
        brightness=u(0.85, 1.15), contrast=u(0.8, 1.15),
        cast=_colour(rng.normal(0, 5, 3) + 128),
        blur=u(0.3, 0.9) if u() < 0.4 else 0.0, noise=u(0.0, 6.0),
        noise_seed=int(rng.integers(2 ** 63)))


def identity_rng(seed: int, identity_id: int) -> np.random.Generator:
    return np.random.default_rng([seed, 0, identity_id])


def image_rng(seed: int, identity_id: int, image_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, 1, identity_id, image_index])


# --------------------------------------------------------------------------- drawing

def _to_canvas(points) -> List[Tuple[int, int]]:
    """(N, 2) frame pixel coordinates -> canvas pixel indices as ImageDraw wants them
    (rounded here: ImageDraw would truncate floats, shifting every shape by half a pixel)."""
    q = np.asarray(points, np.float64).reshape(-1, 2) * _SCALE + (_SCALE * _MARGIN
                                                                 + (_SCALE - 1) / 2)
    return list(map(tuple, np.rint(q).astype(int).tolist()))


def _px(width: float) -> int:
    return max(1, int(round(width * _SCALE)))


def _rgb(colour, factor: float = 1.0) -> Tuple[int, int, int]:
    return tuple(int(round(min(255.0, max(0.0, c * factor)))) for c in colour)


def _ellipse(cx, cy, a, b, n=48, t0=0.0, t1=2 * math.pi) -> np.ndarray:
    t = np.linspace(t0, t1, n)
    return np.stack([cx + a * np.cos(t), cy + b * np.sin(t)], 1)


def _bezier(p0, p1, p2, n=12) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def _face_outline(ident: FaceIdentity, grow: float = 0.0, n: int = 72) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    lower = np.clip(np.sin(t), 0, None)
    x = ident.face_cx + (ident.face_a + grow) * np.cos(t) * (1 - ident.jaw * lower ** 1.5)
    y = ident.face_cy + (ident.face_b + grow) * np.sin(t)
    return np.stack([x, y], 1)


def _frame_grid(box: Tuple[int, int, int, int], step: int = 1):
    """Frame coordinates of the canvas pixel centres in ``box`` (x0, y0, x1, y1), every
    ``step``-th pixel: two (H, W) float32 arrays x, y."""
    def axis(start, stop):
        indices = np.arange(start, stop, step, dtype=np.float32)
        return (indices + (step - _SCALE) / 2) / _SCALE - _MARGIN

    return np.meshgrid(axis(box[0], box[2]), axis(box[1], box[3]))


def _smooth_noise(rng: np.random.Generator, cells: Tuple[int, int],
                  size: Tuple[int, int]) -> np.ndarray:
    """Unit-variance-ish noise of ``cells`` (w, h) cells smoothly upsampled to ``size``."""
    coarse = rng.normal(0, 1, (cells[1], cells[0])).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, "F").resize(size, Image.BICUBIC))


def _background(ident: FaceIdentity, rng: np.random.Generator) -> Image.Image:
    """The identity's background over the whole canvas (computed at half resolution)."""
    x, y = _frame_grid((0, 0) + _CANVAS, _SCALE)
    size = (x.shape[1], x.shape[0])
    c1, c2 = np.array(ident.background, np.float32), np.array(ident.background2, np.float32)
    along = x * math.cos(ident.background_angle) + y * math.sin(ident.background_angle)
    pattern = ident.background_pattern
    if pattern == "flat":
        t = 0.15 * _smooth_noise(rng, (4, 5), size)
    elif pattern == "gradient":
        t = (along - along.min()) / (along.max() - along.min())
    elif pattern == "stripes":
        t = 0.5 + 0.5 * np.sign(np.sin(along * ident.background_freq * 2))
    elif pattern == "tiles":
        across = -x * math.sin(ident.background_angle) + y * math.cos(ident.background_angle)
        f = ident.background_freq
        t = ((np.floor(along * f) + np.floor(across * f)) % 2).astype(np.float32)
    else:  # blobs
        t = np.clip(0.5 + 0.6 * _smooth_noise(rng, (6, 7), size), 0, 1)
    pixels = np.clip(c1 + t[..., None] * (c2 - c1), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).resize(_CANVAS, Image.BILINEAR)


def _hair_texture(ident: FaceIdentity, rng: np.random.Generator) -> Image.Image:
    """The identity's hair colour with strands flowing from the crown (canvas size)."""
    layer = Image.new("RGB", _CANVAS, _rgb(ident.hair))
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
    width = rng.uniform(0.5, 1.0, count)
    t = np.linspace(0, 1, 14)[None, :, None]
    curves = (1 - t) ** 2 * start[:, None] + 2 * (1 - t) * t * bend[:, None] + t ** 2 * end[:, None]
    dark_hair = sum(ident.hair) <= 90  # shading black hair would not show: lighten instead
    for curve, s, w in zip(curves, shade, width):
        colour = _rgb(np.array(ident.hair) + 28 * (s - 0.6)) if dark_hair else _rgb(ident.hair, s)
        draw.line(_to_canvas(curve), fill=colour, width=_px(w), joint="curve")
    return layer


def _hair_masks(ident: FaceIdentity) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Polygons of the hair behind the head (long hair) and of the cap in front."""
    a, b, v, cx, cy = ident.face_a, ident.face_b, ident.hair_volume, ident.face_cx, ident.face_cy
    if ident.hair_front == "bald":
        return None, None
    y_side = ident.eye_y - 4.0
    t_side = math.asin(min(0.95, (cy - y_side) / (b + v)))
    outer = _ellipse(cx, cy, a + v, b + v, 40, math.pi + t_side, 2 * math.pi - t_side)
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
        bottom = IMAGE_SIZE[1] + _MARGIN
        arc = _ellipse(cx, cy, a + v + 3, b + v + 2, 30, math.pi, 2 * math.pi)
        back = np.concatenate([[(cx - a - v - 6, bottom)], arc, [(cx + a + v + 6, bottom)]])
    return back, cap


class FaceRenderer:
    """Draws the images of one identity; the identity's fixed layers are built once.

    Args:
        identity: the person, from ``sample_identity``.
    """

    def __init__(self, identity: FaceIdentity):
        self.identity = identity
        rng = np.random.default_rng(identity.texture_seed)
        self.hair_layer = _hair_texture(identity, rng)
        back, cap = _hair_masks(identity)
        self.base = self._base_layer(rng, back)
        self.cap = None  # (hair pixels, mask, top-left corner) of the hair in front
        if cap is not None:
            mask = Image.new("L", _CANVAS, 0)
            ImageDraw.Draw(mask).polygon(_to_canvas(cap), fill=255)
            box = mask.getbbox()
            self.cap = (self.hair_layer.crop(box), mask.crop(box), box[:2])

    # ---- identity layers
    def _base_layer(self, rng: np.random.Generator, back: Optional[np.ndarray]) -> Image.Image:
        """Background, long hair (polygon ``back``), neck, clothes, ears, textured skin."""
        ident = self.identity
        canvas = _background(ident, rng)
        draw = ImageDraw.Draw(canvas)
        if back is not None:
            mask = Image.new("L", _CANVAS, 0)
            ImageDraw.Draw(mask).polygon(_to_canvas(back), fill=255)
            canvas.paste(self.hair_layer, (0, 0), mask)
        cx, cy, a, b = ident.face_cx, ident.face_cy, ident.face_a, ident.face_b
        bottom = IMAGE_SIZE[1] + _MARGIN
        shoulders = [(cx - 0.55 * a, cy + b), (cx - 2.3 * a, cy + b + 40),
                     (cx - 2.6 * a, bottom), (cx + 2.6 * a, bottom),
                     (cx + 2.3 * a, cy + b + 40), (cx + 0.55 * a, cy + b)]
        draw.polygon(_to_canvas(shoulders), fill=_rgb(ident.clothes))
        neck_w = 0.5 * a
        draw.polygon(_to_canvas([(cx - neck_w, cy + 0.3 * b), (cx - neck_w * 1.05, cy + b + 30),
                                 (cx + neck_w * 1.05, cy + b + 30), (cx + neck_w, cy + 0.3 * b)]),
                     fill=_rgb(ident.skin, 0.8))
        ear_y, ear_a, ear_b = ident.eye_y + 9, 5.5 * ident.ear_size, 10 * ident.ear_size
        for side in (-1, 1):
            ex = cx + side * a * 0.97
            draw.polygon(_to_canvas(_ellipse(ex, ear_y, ear_a, ear_b, 24)),
                         fill=_rgb(ident.skin, 0.93))
            fold = _ellipse(ex + side, ear_y, ear_a * 0.5 * side, ear_b * 0.6, 12, -0.5 * math.pi,
                            0.5 * math.pi)
            draw.line(_to_canvas(fold), fill=_rgb(ident.skin, 0.75), width=_px(0.8))
        if ident.hair_front == "bald":  # a horseshoe of hair around the ears
            for side in (-1, 1):
                hx = cx + side * a
                strip = [(hx - side * 4, ident.eye_y - 14), (hx + side * 4, ident.eye_y - 12),
                         (hx + side * 3, ident.eye_y + 10), (hx - side * 3, ident.eye_y + 6)]
                draw.polygon(_to_canvas(strip), fill=_rgb(ident.hair))
        self._paste_skin(canvas, rng)
        draw = ImageDraw.Draw(canvas)
        for _ in range(ident.freckles):  # at fixed face-relative places: cheeks and nose
            fx = cx + rng.normal(0, 0.35 * a)
            fy = ident.eye_y + 12 + rng.normal(0, 6)
            r = rng.uniform(0.4, 0.9)
            draw.ellipse(_to_canvas([(fx - r, fy - r), (fx + r, fy + r)]),
                         fill=_rgb(ident.skin, rng.uniform(0.7, 0.85)))
        neutral = self.landmarks_in_frame(NEUTRAL)
        for _ in range(ident.moles):
            spot = np.array([cx + rng.uniform(-0.75, 0.75) * a, cy + rng.uniform(-0.6, 0.75) * b])
            r = rng.uniform(0.8, 1.6)
            if np.linalg.norm(neutral - spot, axis=1).min() > 9:  # not on a landmark
                draw.ellipse(_to_canvas([spot - r, spot + r]), fill=_rgb(ident.skin, 0.45))
        return canvas

    def _paste_skin(self, canvas: Image.Image, rng: np.random.Generator) -> None:
        """The face: skin colour x shading x the identity's noise, inside the outline."""
        ident = self.identity
        cx, cy, a, b = ident.face_cx, ident.face_cy, ident.face_a, ident.face_b
        outline = np.asarray(_to_canvas(_face_outline(ident)))
        x0, y0 = np.floor(outline.min(0)).astype(int) - 1
        x1, y1 = np.ceil(outline.max(0)).astype(int) + 2
        box = (int(x0), int(y0), int(x1), int(y1))
        x, y = _frame_grid(box)  # (H, W) frame coordinates of the box's pixels
        size = (x.shape[1], x.shape[0])
        rr2 = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2
        shade = 1.0 - 0.28 * np.clip(rr2, 0, 1) ** 2
        texture = 1.0 + ident.skin_texture * (_smooth_noise(rng, (5, 6), size)
                                              + 0.5 * _smooth_noise(rng, (22, 28), size))
        grain_shape = (-(-size[1] // _SCALE), -(-size[0] // _SCALE))  # one per image pixel
        grain = np.kron(rng.normal(0, 0.025, grain_shape).astype(np.float32),
                        np.ones((_SCALE, _SCALE), np.float32))[:size[1], :size[0]]
        texture += grain
        if ident.facial_hair == "stubble":
            jaw = np.clip((y - ident.eye_y - ident.nose_len - 6) / 8.0, 0, 1) \
                * np.clip(1.3 - np.abs(x - cx) / a, 0, 1)
            dots = np.kron(rng.uniform(0, 1, grain_shape) < 0.4,
                           np.ones((_SCALE, _SCALE), bool))[:size[1], :size[0]]
            texture *= 1 - jaw * (0.08 + 0.2 * dots)
        skin = np.array(ident.skin, np.float32) * (shade * texture)[..., None]
        if ident.blush > 0:
            for side in (-1, 1):  # cheeks
                d2 = ((x - cx - side * 0.55 * a) ** 2 + (y - ident.eye_y - 20) ** 2) / 120.0
                redden = np.array([40, -25, -20], np.float32)
                skin += (ident.blush * np.exp(-d2))[..., None] * redden
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).polygon([tuple(p) for p in outline - (x0, y0)], fill=255)
        canvas.paste(Image.fromarray(np.clip(skin, 0, 255).astype(np.uint8)), box[:2], mask)

    # ---- per-image features
    def landmarks_in_frame(self, var: FaceVariation) -> np.ndarray:
        """(5, 2) landmarks before the pose; also the points the features are drawn at."""
        ident, v = self.identity, var.yaw
        near, far = 3.5 * v, 2.0 * v
        shift_left, shift_right = (near, far) if v > 0 else (far, near)
        smile_lift = 3.0 * var.smile
        mouth_y = ident.eye_y + ident.mouth_offset + 0.3 * var.mouth_open
        mouth_w = ident.mouth_half_w * (1 + 0.1 * var.smile)
        return np.array([
            (ident.face_cx - ident.eye_half_spacing + shift_left, ident.eye_y),
            (ident.face_cx + ident.eye_half_spacing + shift_right, ident.eye_y),
            (ident.face_cx + 5.5 * v, ident.eye_y + ident.nose_len),
            (ident.face_cx - mouth_w + shift_left, mouth_y - smile_lift * (1 + var.smile_asym)),
            (ident.face_cx + mouth_w + shift_right, mouth_y - smile_lift * (1 - var.smile_asym)),
        ])

    def _draw_eye(self, canvas, draw, centre, half_w, side, var):
        ident = self.identity
        h_up, h_lo = ident.eye_h * var.eye_open, ident.eye_h * 0.75
        u = np.linspace(-1, 1, 15)
        upper = np.stack([u * half_w, -h_up * (1 - u ** 2) ** 0.7], 1)
        lower = np.stack([u[::-1] * half_w, h_lo * (1 - u[::-1] ** 2) ** 0.9], 1)
        phi = -math.radians(ident.eye_tilt) * side  # outer corner up
        rot = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
        place = lambda pts: np.asarray(pts) @ rot.T + centre  # noqa: E731
        almond = np.asarray(_to_canvas(place(np.concatenate([upper, lower]))))
        x0, y0 = np.floor(almond.min(0)).astype(int) - 2
        x1, y1 = np.ceil(almond.max(0)).astype(int) + 2
        patch = Image.new("RGB", (x1 - x0, y1 - y0), (236, 232, 226))
        mask = Image.new("L", patch.size, 0)
        ImageDraw.Draw(mask).polygon([tuple(p) for p in almond - (x0, y0)], fill=255)
        pd = ImageDraw.Draw(patch)
        (ccx, ccy), = np.asarray(_to_canvas([centre])) - (x0, y0)
        r = ident.eye_h * ident.iris_ratio * _SCALE

        def disc(left, top, right, bottom):  # box in iris radii around the eye centre
            return [int(round(v)) for v in (ccx + left * r, ccy + top * r,
                                            ccx + right * r, ccy + bottom * r)]

        pd.ellipse(disc(-1, -1, 1, 1), fill=_rgb(ident.iris), outline=_rgb(ident.iris, 0.6))
        pd.ellipse(disc(-0.45, -0.45, 0.45, 0.45), fill=(12, 10, 10))  # pupil
        pd.ellipse(disc(-0.55, -0.6, -0.2, -0.25), fill=(250, 250, 250))  # catch light
        canvas.paste(patch, (int(x0), int(y0)), mask)
        lash = _rgb(np.array(ident.hair) * 0.4 + 10)
        draw.line(_to_canvas(place(upper)), fill=lash, width=_px(ident.lash_w), joint="curve")
        draw.line(_to_canvas(place(lower)), fill=_rgb(ident.skin, 0.72), width=_px(0.5))
        crease_h = h_up + 2.2 + 0.3 * ident.eye_h
        crease = np.stack([u * half_w * 0.9, -crease_h * (1 - u ** 2) ** 0.6], 1)
        draw.line(_to_canvas(place(crease[2:-2])), fill=_rgb(ident.skin, 0.7), width=_px(0.6))

    def _draw_brow(self, draw, eye, half_w, side, var):
        ident = self.identity
        inner_x, outer_x = eye[0] - side * half_w * 0.9, eye[0] + side * half_w * ident.brow_len
        u = np.linspace(0, 1, 10)
        xs = inner_x + (outer_x - inner_x) * u
        base_y = eye[1] - ident.brow_raise - var.brow_lift
        ys = base_y - math.tan(math.radians(ident.brow_angle)) * abs(outer_x - inner_x) * u \
            - ident.brow_arch * np.sin(math.pi * u)
        thick = ident.brow_thick * (1.0 - 0.55 * u)
        top = np.stack([xs, ys - thick / 2], 1)
        bottom = np.stack([xs, ys + thick / 2], 1)[::-1]
        colour = ident.hair if ident.hair_front != "bald" else np.array(ident.hair) * 0.7
        draw.polygon(_to_canvas(np.concatenate([top, bottom])), fill=_rgb(colour, 0.8))

    def _draw_nose(self, draw, tip, var):
        ident = self.identity
        w, skin = ident.nose_w, ident.skin
        nx, ny = tip
        lean = 1.0 if var.yaw >= 0 else -1.0  # the bridge shadow on the side turned away
        bridge = _bezier((ident.face_cx + lean * 3.5 + 2.0 * var.yaw, ident.eye_y + 4),
                         (nx + lean * 4.0, ny - 10), (nx + lean * w * 0.7, ny - 2), 10)
        draw.line(_to_canvas(bridge), fill=_rgb(skin, 0.82), width=_px(1.1), joint="curve")
        for side in (-1, 1):
            wing = _bezier((nx + side * w * 0.55, ny - 3.5), (nx + side * (w + 1.5), ny + 0.5),
                           (nx + side * w * 0.45, ny + 3.2), 8)
            draw.line(_to_canvas(wing), fill=_rgb(skin, 0.68), width=_px(0.8))
            c = (nx + side * w * 0.42, ny + 2.6)
            draw.ellipse(_to_canvas([(c[0] - 1.5, c[1] - 0.8), (c[0] + 1.5, c[1] + 0.8)]),
                         fill=_rgb(skin, 0.4))
        under = _bezier((nx - w * 0.35, ny + 3.2), (nx, ny + 4.6), (nx + w * 0.35, ny + 3.2), 8)
        draw.line(_to_canvas(under), fill=_rgb(skin, 0.6), width=_px(0.7))
        draw.ellipse(_to_canvas([(nx - 1.6, ny - 1.8), (nx + 1.6, ny + 0.8)]),
                     fill=_rgb(skin, 1.12))  # highlight on the tip

    def _draw_mouth(self, draw, left, right, var):
        ident = self.identity
        mid = (left + right) / 2
        half = (right[0] - left[0]) / 2
        dip = 2.2 * var.smile + 0.5  # the lip line sags in the middle when smiling
        gap = var.mouth_open
        line_top = _bezier(left, (mid[0], mid[1] + 2 * dip - gap / 2), right, 13)
        line_bottom = _bezier(left, (mid[0], mid[1] + 2 * dip + gap * 1.5), right, 13)
        bow = np.array([left, (mid[0] - 0.45 * half, mid[1] - ident.lip_up - 0.5),
                        (mid[0], mid[1] - ident.lip_up + 0.6 + dip * 0.3),
                        (mid[0] + 0.45 * half, mid[1] - ident.lip_up - 0.5), right])
        upper_top = np.concatenate([
            _bezier(bow[0], (bow[0] + bow[1]) / 2 + (0, -0.6), bow[1], 7), bow[2:3],
            _bezier(bow[3], (bow[3] + bow[4]) / 2 + (0, -0.6), bow[4], 7)])
        if ident.facial_hair == "moustache":
            tache = np.concatenate([upper_top + (0, -0.5), (upper_top + (0, -4.0))[::-1]])
            draw.polygon(_to_canvas(tache), fill=_rgb(ident.hair, 0.85))
        chin_side = mid[1] + 2 * (dip + gap * 0.75 + ident.lip_lo + 0.7)
        lower_low = _bezier(left, (mid[0], chin_side), right, 13)
        if gap > 0:  # the open mouth, then the upper teeth
            draw.polygon(_to_canvas(np.concatenate([line_top, line_bottom[::-1]])),
                         fill=(60, 20, 24))
            teeth = _bezier(left + (half * 0.35, 0), (mid[0], mid[1] + 2 * dip + gap * 0.2),
                            right - (half * 0.35, 0), 9)
            draw.line(_to_canvas(teeth), fill=(232, 228, 216), width=_px(min(2.0, gap * 0.5)))
        draw.polygon(_to_canvas(np.concatenate([upper_top, line_top[::-1]])),
                     fill=_rgb(ident.lip))
        draw.polygon(_to_canvas(np.concatenate([line_bottom, lower_low[::-1]])),
                     fill=_rgb(ident.lip, 1.08))
        draw.line(_to_canvas(line_top), fill=_rgb(ident.lip, 0.5), width=_px(0.6))
        for corner, side in ((left, -1), (right, 1)):  # dimples at the corners
            draw.line(_to_canvas([corner + (side * 0.3, -0.8), corner + (side * 1.6, 0.9)]),
                      fill=_rgb(ident.skin, 0.7), width=_px(0.6))

    def _draw_glasses(self, draw, eyes, half_ws):
        ident = self.identity
        colour, width = _rgb(ident.glasses_colour), _px(ident.glasses_thick)
        boxes = []
        for (ex, ey), hw in zip(eyes, half_ws):
            rx, ry = hw * ident.glasses_size, ident.eye_w * ident.glasses_size * 0.78
            box = [(ex - rx, ey + 1 - ry), (ex + rx, ey + 1 + ry)]
            boxes.append(box)
            if ident.glasses == "round":
                draw.ellipse(_to_canvas(box), outline=colour, width=width)
            else:
                draw.rounded_rectangle(_to_canvas(box), radius=3 * _SCALE, outline=colour,
                                       width=width)
        y = eyes[0][1] - 1
        inner_left, inner_right = boxes[0][1][0], boxes[1][0][0]
        bridge = _bezier((inner_left, y), ((inner_left + inner_right) / 2, y - 2.5),
                         (inner_right, y), 6)
        draw.line(_to_canvas(bridge), fill=colour, width=width)
        for edge, side in ((boxes[0][0][0], -1), (boxes[1][1][0], 1)):  # the temples
            ear = (ident.face_cx + side * ident.face_a * 0.99, y - 2)
            draw.line(_to_canvas([(edge, y - 1), ear]), fill=colour, width=width)

    def render(self, var: FaceVariation, debug: bool = False) -> Tuple[Image.Image, np.ndarray]:
        """One image: (178 x 218 RGB PIL image, (5, 2) float landmarks in its pixels).

        With ``debug`` a small ``DEBUG_COLOUR`` disc marks each landmark where it is drawn.
        """
        ident = self.identity
        canvas = self.base.copy()
        draw = ImageDraw.Draw(canvas)
        points = self.landmarks_in_frame(var)
        far_left, far_right = (0.0, 0.18 * var.yaw) if var.yaw > 0 else (-0.18 * var.yaw, 0.0)
        half_ws = (ident.eye_w * (1 - far_left), ident.eye_w * (1 - far_right))
        for eye, half_w, side in zip(points[:2], half_ws, (-1, 1)):
            self._draw_brow(draw, eye, half_w, side, var)
            self._draw_eye(canvas, draw, eye, half_w, side, var)
        self._draw_nose(draw, points[2], var)
        self._draw_mouth(draw, points[3], points[4], var)
        if self.cap is not None:
            hair, mask, corner = self.cap
            canvas.paste(hair, corner, mask)
        if ident.glasses != "none":
            self._draw_glasses(draw, points[:2], half_ws)
        if debug:
            for p in points:
                draw.ellipse(_to_canvas([p - 1.5, p + 1.5]), fill=DEBUG_COLOUR)
        matrix, offset = _pose(var)
        image = canvas.reduce(_SCALE).transform(  # (W_c, H_c) / S -> IMAGE_SIZE
            IMAGE_SIZE, Image.AFFINE, _inverse_affine(matrix, offset), Image.BILINEAR,
            fillcolor=_rgb(ident.background))
        landmarks = points @ matrix.T + offset
        if not debug:
            image = _photometric(image, var)
        return image, landmarks


def _pose(var: FaceVariation) -> Tuple[np.ndarray, np.ndarray]:
    """Frame -> image affine map p -> M p + o (rotation and scale about _POSE_CENTRE)."""
    theta = math.radians(var.rotation)
    matrix = var.scale * np.array([[math.cos(theta), -math.sin(theta)],
                                   [math.sin(theta), math.cos(theta)]])
    offset = _POSE_CENTRE + (var.shift_x, var.shift_y) - matrix @ _POSE_CENTRE
    return matrix, offset


def _inverse_affine(matrix: np.ndarray, offset: np.ndarray) -> Tuple[float, ...]:
    """PIL's AFFINE data for the reduced canvas: output -> input, pixel edges at integers.

    Output edge coordinate q is image pixel p_out = q - 0.5; its frame point is
    p = M^-1 (p_out - o), at edge coordinate p + 0.5 + margin of the reduced canvas.
    """
    inv = np.linalg.inv(matrix)
    const = inv @ (-0.5 - offset) + 0.5 + _MARGIN
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


def _photometric(image: Image.Image, var: FaceVariation) -> Image.Image:
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


def synthetic_face(seed: int, identity_id: int, image_index: int,
                   debug: bool = False) -> Tuple[Image.Image, np.ndarray]:
    """The image ``image_index`` of identity ``identity_id`` for ``seed`` (as written to disk)."""
    renderer = FaceRenderer(sample_identity(identity_rng(seed, identity_id)))
    return renderer.render(sample_variation(image_rng(seed, identity_id, image_index)), debug)


def contact_sheet(images: Sequence[Image.Image], landmarks: Sequence[np.ndarray],
                  columns: int = 4) -> Image.Image:
    """Tile images with their landmarks drawn (red eyes, green nose, blue mouth)."""
    w, h = images[0].size
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (w * columns, h * rows), (0, 0, 0))
    colours = [(255, 0, 0), (255, 0, 0), (0, 255, 0), (0, 90, 255), (0, 90, 255)]
    for i, (image, points) in enumerate(zip(images, landmarks)):
        tile = image.copy()
        draw = ImageDraw.Draw(tile)
        for (x, y), colour in zip(points, colours):
            draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], outline=colour)
        sheet.paste(tile, ((i % columns) * w, (i // columns) * h))
    return sheet


# --------------------------------------------------------------------------- writing

@dataclass(frozen=True)
class _Plan:
    """Which identity and image index every file holds, and the split blocks."""
    names: List[str]
    identities: List[int]   # 0-based identity ids
    image_indices: List[int]
    splits: List[int]
    mafl_train: List[str]
    mafl_test: List[str]


def _round_robin(first_identity: int, num_identities: int, count: int):
    """``count`` images over ``num_identities`` identities, consecutive ones differing."""
    return [(first_identity + j % num_identities, j // num_identities) for j in range(count)]


def _plan(num_train_identities, num_test_identities, images_per_identity, num_val_images,
          num_mafl_train, num_mafl_test) -> _Plan:
    num_val_identities = 0
    if num_val_images:
        num_val_identities = max(-(-num_val_images // images_per_identity), min(num_val_images, 2))
    blocks = [
        (0, _round_robin(0, num_train_identities, num_train_identities * images_per_identity)),
        (1, _round_robin(num_train_identities, num_val_identities, num_val_images)),
        (2, _round_robin(num_train_identities + num_val_identities, num_test_identities,
                         num_test_identities * images_per_identity)),
    ]
    names, identities, indices, splits = [], [], [], []
    for split, block in blocks:
        for identity, index in block:
            names.append(f"{len(names) + 1:06d}.jpg")
            identities.append(identity)
            indices.append(index)
            splits.append(split)
    train = [n for n, s in zip(names, splits) if s == 0]
    test = [n for n, s in zip(names, splits) if s == 2]
    return _Plan(names, identities, indices, splits,
                 mafl_train=train[len(train) - num_mafl_train:] if num_mafl_train else [],
                 mafl_test=test[:num_mafl_test])


def _checked_params(**params) -> dict:
    """The generation parameters as plain ints, after checking them."""
    for key, value in params.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ValueError(f"synthetic faces: {key} must be an integer, got {value!r}")
        if value < 0:
            raise ValueError(f"synthetic faces: {key} must be >= 0, got {value}")
    if params["images_per_identity"] < 1:
        raise ValueError("synthetic faces: images_per_identity must be >= 1")
    for kind in ("train", "test"):
        count = params[f"num_{kind}_identities"]
        if count < 2:
            raise ValueError(f"synthetic faces: num_{kind}_identities must be >= 2 so that "
                             f"consecutive images differ in identity, got {count}")
        available, wanted = count * params["images_per_identity"], params[f"num_mafl_{kind}"]
        if wanted > available:
            raise ValueError(f"synthetic faces: num_mafl_{kind}={wanted} exceeds the "
                             f"{available} {kind} images")
    return {key: int(value) for key, value in params.items()}


def _write_lists(tmp: Path, plan: _Plan, landmarks: np.ndarray) -> None:
    (tmp / "Anno").mkdir()
    (tmp / "Eval").mkdir()
    (tmp / "MAFL").mkdir()
    rows = [f"{name} " + " ".join(str(int(v)) for v in np.rint(points).astype(int).reshape(-1))
            for name, points in zip(plan.names, landmarks)]
    (tmp / "Anno" / "list_landmarks_align_celeba.txt").write_text(
        f"{len(plan.names)}\n{LANDMARK_HEADER}\n" + "\n".join(rows) + "\n")
    (tmp / "Anno" / "identity_CelebA.txt").write_text(
        "".join(f"{n} {i + 1}\n" for n, i in zip(plan.names, plan.identities)))
    (tmp / "Eval" / "list_eval_partition.txt").write_text(
        "".join(f"{n} {s}\n" for n, s in zip(plan.names, plan.splits)))
    (tmp / "MAFL" / "training.txt").write_text("".join(f"{n}\n" for n in plan.mafl_train))
    (tmp / "MAFL" / "testing.txt").write_text("".join(f"{n}\n" for n in plan.mafl_test))


def _progress(total: int):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional here
        return None
    return tqdm(total=total, desc="synthetic faces", unit="img", disable=None, leave=False)


def _render_all(tmp: Path, plan: _Plan, seed: int) -> np.ndarray:
    hq_dir = tmp / "Img" / "img_align_celeba_hq"
    plain_dir = tmp / "Img" / "img_align_celeba"
    hq_dir.mkdir(parents=True)
    plain_dir.mkdir()
    by_identity = {}
    for position, identity in enumerate(plan.identities):
        by_identity.setdefault(identity, []).append(position)
    landmarks = np.zeros((len(plan.names), 5, 2))
    bar = _progress(len(plan.names))
    for identity, positions in by_identity.items():
        renderer = FaceRenderer(sample_identity(identity_rng(seed, identity)))
        for position in positions:
            var = sample_variation(image_rng(seed, identity, plan.image_indices[position]))
            image, landmarks[position] = renderer.render(var)
            name = plan.names[position]
            image.save(hq_dir / name, quality=95)
            try:
                os.link(hq_dir / name, plain_dir / name)
            except OSError:
                shutil.copyfile(hq_dir / name, plain_dir / name)
        if bar is not None:
            bar.update(len(positions))
    if bar is not None:
        bar.close()
    return landmarks


def _read_marker(root: Path) -> Optional[dict]:
    try:
        return json.loads((root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(root: Path, params: dict) -> bool:
    marker = _read_marker(root)
    return bool(marker) and marker.get("format_version") == FORMAT_VERSION \
        and marker.get("params") == params


def _is_ours(root: Path) -> bool:
    return (root / MARKER_NAME).is_file() or (root / OWNER_NAME).is_file()


def _foreign_error(root: Path) -> RuntimeError:
    return RuntimeError(f"{root} exists and is not a synthetic CelebA folder (no {MARKER_NAME}): "
                        f"remove it or pass another root")


def _remove_stale_temps(root: Path) -> None:
    """Delete temporary siblings left by runs whose process no longer exists."""
    prefix = root.name + TEMP_INFIX
    for path in root.parent.glob(prefix + "*"):
        try:
            pid = int(path.name[len(prefix):].split("-")[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:  # alive, another user's
            continue


def write_synthetic_celeba(root, *, num_train_identities: int = 300,
                           num_test_identities: int = 60, images_per_identity: int = 10,
                           num_val_images: int = 100, num_mafl_train: int = 1000,
                           num_mafl_test: int = 300, seed: int = 0) -> None:
    """Write a synthetic CelebA (SPEC section 5 layout) under ``root``, replacing ours.

    Splits: ``num_train_identities * images_per_identity`` train images (split 0), then
    ``num_val_images`` validation images of their own identities (split 1), then
    ``num_test_identities * images_per_identity`` test images (split 2) of identities
    disjoint from the others; within each block identities go round-robin, so
    consecutive images always differ in identity. MAFL training is the last
    ``num_mafl_train`` train images, MAFL testing the first ``num_mafl_test`` test images.

    Raises:
        RuntimeError: ``root`` is a non-empty folder that this function did not write.
        ValueError: a parameter is out of range.
    """
    params = _checked_params(
        num_train_identities=num_train_identities, num_test_identities=num_test_identities,
        images_per_identity=images_per_identity, num_val_images=num_val_images,
        num_mafl_train=num_mafl_train, num_mafl_test=num_mafl_test, seed=seed)
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir()) and not _is_ours(root)):
        raise _foreign_error(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root)
    start = time.perf_counter()
    plan = _plan(**{k: v for k, v in params.items() if k != "seed"})
    tmp = root.parent / f"{root.name}{TEMP_INFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        (tmp / OWNER_NAME).write_text("written by data_loader/synthetic_faces.py\n")
        landmarks = _render_all(tmp, plan, params["seed"])
        _write_lists(tmp, plan, landmarks)
        counts = {name: plan.splits.count(split)
                  for split, name in enumerate(("train", "val", "test"))}
        (tmp / MARKER_NAME).write_text(json.dumps(
            {"format": "synthetic_faces", "format_version": FORMAT_VERSION, "params": params,
             "counts": counts}, indent=1) + "\n")
        _move_into_place(tmp, root, params)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _logger.info("wrote %d synthetic faces to %s in %.1f s", len(plan.names), root,
                 time.perf_counter() - start)


def _move_into_place(tmp: Path, root: Path, params: dict) -> None:
    """Rename the finished ``tmp`` to ``root``, replacing only a folder of ours."""
    if _is_complete(root, params):  # a concurrent run finished first: keep its copy
        return
    if root.exists():
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        elif _is_ours(root):
            old = root.parent / f"{root.name}{TEMP_INFIX}{os.getpid()}-old-{uuid.uuid4().hex[:8]}"
            os.replace(root, old)
            shutil.rmtree(old, ignore_errors=True)
        else:
            raise _foreign_error(root)
    os.replace(tmp, root)


def ensure_synthetic_celeba(root, *, num_train_identities: int = 300,
                            num_test_identities: int = 60, images_per_identity: int = 10,
                            num_val_images: int = 100, num_mafl_train: int = 1000,
                            num_mafl_test: int = 300, seed: int = 0) -> bool:
    """Write the synthetic CelebA unless ``root`` already holds it with these parameters.

    Returns True when it generated. Arguments: see ``write_synthetic_celeba``.
    """
    params = _checked_params(
        num_train_identities=num_train_identities, num_test_identities=num_test_identities,
        images_per_identity=images_per_identity, num_val_images=num_val_images,
        num_mafl_train=num_mafl_train, num_mafl_test=num_mafl_test, seed=seed)
    if _is_complete(Path(root), params):
        return False
    write_synthetic_celeba(root, **params)
    return True
