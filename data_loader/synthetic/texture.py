"""An identity's fine texture and its strength: skin noise, freckles, moles, strand width.

``texture_strength`` s (an argument of ``SyntheticFaces``) scales the texture that is
fixed per identity and differs between identities; s = 1 draws exactly the texture of
the first generator (bit-identical images), s = 0 none of it; the default is
``DEFAULT_TEXTURE_STRENGTH`` (2). ``TextureScale`` holds the
mapping; sizes are frame pixels (the 178 x 218 image before the pose, so a training
image of ``imwidth`` 64 shows them 0.36 times as large). A is the identity's
``skin_texture`` ~ U(0.02, 0.08):

=========================  ==================  ========================  =========  =========
quantity                   s = 1               function of s             s = 2      s = 4
=========================  ==================  ========================  =========  =========
skin noise amplitude       A (coarse 5x6 and   A * s                     2 A        4 A
(coarse, fine, grain)      fine 22x28 cells),
                           grain sd 0.025
mid-frequency skin noise   none                A * max(s - 1, 0)         A          3 A
(11x14 cells, ~8 px each)
freckle radius             U(0.4, 0.9)         * s ** (2/3)              0.63-1.43  1.0-2.27
freckle shade (of skin)    u ~ U(0.7, 0.85)    u ** sqrt(s)              0.60-0.79  0.49-0.72
extra freckles, whole      none                round(e * U(40, 120)),    13-40      40-120
face                                           e = max(s - 1, 0) / 3
extra moles                none                round(e * U{4, 5, 6})     1-2        4-6
mole shade (of skin)       0.45                0.45 ** min(s, 1)         0.45       0.45
hair strand width          U(0.5, 1.0)         * sqrt(s)                 0.71-1.41  1.0-2.0
=========================  ==================  ========================  =========  =========

The cheek-and-nose freckles (0 or 10-59, ``FaceIdentity.freckles``) and the 0-3 moles of
s = 1 stay where they are at every s; the extra ones come on top (so s = 4 has 40-179
freckles and 4-9 moles), each more than 9 px from the neutral landmarks. At s = 0 no
spot is drawn. Rounding aside, everything changes continuously with s, and the extra
spots of a smaller s are the first ones of a larger s.

Random draws: the s = 1 texture comes from the identity's generator
``default_rng(texture_seed)`` in the same order as before. Everything s adds is drawn
from its own streams, ``default_rng([texture_seed, 1])`` (mid-frequency noise),
``[texture_seed, 2]`` (extra freckles) and ``[texture_seed, 3]`` (extra moles), and only
when s > 1, so it shifts no earlier draw.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from data_loader.synthetic.canvas import (SCALE, face_outline, frame_grid, rgb,
                                          smooth_noise, to_canvas)
from data_loader.synthetic.identity import FaceIdentity

_MID_CELLS = (11, 14)          # (w, h) cells of the mid-frequency skin noise over the face box
_EXTRA_FRECKLES = (40, 120)    # extra freckles at s = 4 (uniform count range)
_EXTRA_MOLES = (4, 7)          # extra moles at s = 4 (integers, high exclusive)
_SPOT_CLEARANCE = 9.0          # frame px between a mole or extra freckle and every landmark

DEFAULT_TEXTURE_STRENGTH = 2.0
"""The default s: the smallest measured strength at which the paper's claim (no-DVE
different-identity error growing with the dimension, DVE's staying flat) shows clearly
over three seeds (docs/synthetic-faces.md); s = 1.5 showed only half the growth."""


def check_texture_strength(value) -> float:
    """``value`` as a float after checking it is a finite number >= 0.

    Raises:
        ValueError: a boolean, a non-number, NaN, infinite or negative value (one line
            naming ``texture_strength``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"synthetic faces: texture_strength must be a finite number >= 0 "
                         f"(1.0: the original texture), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TextureScale:
    """The texture quantities as functions of ``strength`` s (module docstring table).

    Raises:
        ValueError: ``strength`` is not a finite number >= 0.
    """
    strength: float = DEFAULT_TEXTURE_STRENGTH

    def __post_init__(self):
        object.__setattr__(self, "strength", check_texture_strength(self.strength))

    @property
    def skin(self) -> float:
        """Factor on the amplitude of the s = 1 skin noise and grain."""
        return self.strength

    @property
    def mid_skin(self) -> float:
        """Amplitude of the mid-frequency skin noise, in units of ``skin_texture``."""
        return max(self.strength - 1.0, 0.0)

    @property
    def spot_radius(self) -> float:
        """Factor on every freckle radius."""
        return self.strength ** (2.0 / 3.0)

    @property
    def freckle_darkening(self) -> float:
        """Exponent on a freckle's shade u (u ** exponent; 0 makes it skin-coloured)."""
        return math.sqrt(self.strength)

    @property
    def mole_shade(self) -> float:
        """Brightness of a mole as a fraction of the skin colour."""
        return 0.45 ** min(self.strength, 1.0)

    @property
    def extra_spots(self) -> float:
        """Fraction of the s = 4 extra freckle and mole counts: 0 up to s = 1, 1 at s = 4."""
        return max(self.strength - 1.0, 0.0) / 3.0

    @property
    def strand_width(self) -> float:
        """Factor on every hair strand's width."""
        return math.sqrt(self.strength)


def _extra_rng(ident: FaceIdentity, stream: int) -> np.random.Generator:
    return np.random.default_rng([ident.texture_seed, stream])


def paste_skin(canvas: Image.Image, ident: FaceIdentity, rng: np.random.Generator,
               scale: TextureScale) -> None:
    """Paste the face onto ``canvas``: skin colour x shading x the identity's noise (coarse,
    fine, mid-frequency, per-pixel grain), stubble and blush, inside the face outline."""
    cx, cy, a, b = ident.face_cx, ident.face_cy, ident.face_a, ident.face_b
    outline = np.asarray(to_canvas(face_outline(ident)))
    x0, y0 = np.floor(outline.min(0)).astype(int) - 1
    x1, y1 = np.ceil(outline.max(0)).astype(int) + 2
    box = (int(x0), int(y0), int(x1), int(y1))
    x, y = frame_grid(box)  # (H, W) frame coordinates of the box's pixels
    size = (x.shape[1], x.shape[0])
    rr2 = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2
    shade = 1.0 - 0.28 * np.clip(rr2, 0, 1) ** 2
    texture = 1.0 + ident.skin_texture * scale.skin * (smooth_noise(rng, (5, 6), size)
                                                       + 0.5 * smooth_noise(rng, (22, 28), size))
    grain_shape = (-(-size[1] // SCALE), -(-size[0] // SCALE))  # one per image pixel
    grain = np.kron(rng.normal(0, 0.025 * scale.skin, grain_shape).astype(np.float32),
                    np.ones((SCALE, SCALE), np.float32))[:size[1], :size[0]]
    texture += grain
    if scale.mid_skin > 0:
        texture += ident.skin_texture * scale.mid_skin * smooth_noise(_extra_rng(ident, 1),
                                                                       _MID_CELLS, size)
    if ident.facial_hair == "stubble":
        jaw = np.clip((y - ident.eye_y - ident.nose_len - 6) / 8.0, 0, 1) \
            * np.clip(1.3 - np.abs(x - cx) / a, 0, 1)
        dots = np.kron(rng.uniform(0, 1, grain_shape) < 0.4,
                       np.ones((SCALE, SCALE), bool))[:size[1], :size[0]]
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


def draw_spots(canvas: Image.Image, ident: FaceIdentity, rng: np.random.Generator,
               neutral: np.ndarray, scale: TextureScale) -> None:
    """Draw the identity's freckles and moles at fixed face-relative places.

    ``neutral``: (5, 2) landmarks of the neutral pose in frame pixels; moles and extra
    freckles keep ``_SPOT_CLEARANCE`` away from them.
    """
    if scale.strength == 0:
        return
    draw = ImageDraw.Draw(canvas)
    cx, cy, a, b = ident.face_cx, ident.face_cy, ident.face_a, ident.face_b

    def spot(centre, radius, shade, clear=True):
        centre = np.asarray(centre, np.float64)
        if not clear or np.linalg.norm(neutral - centre, axis=1).min() > _SPOT_CLEARANCE:
            draw.ellipse(to_canvas([centre - radius, centre + radius]),
                         fill=rgb(ident.skin, shade))

    for _ in range(ident.freckles):  # cheeks and nose
        fx = cx + rng.normal(0, 0.35 * a)
        fy = ident.eye_y + 12 + rng.normal(0, 6)
        r = rng.uniform(0.4, 0.9) * scale.spot_radius
        spot((fx, fy), r, rng.uniform(0.7, 0.85) ** scale.freckle_darkening, clear=False)
    for _ in range(ident.moles):
        centre = (cx + rng.uniform(-0.75, 0.75) * a, cy + rng.uniform(-0.6, 0.75) * b)
        spot(centre, rng.uniform(0.8, 1.6), scale.mole_shade)
    if scale.extra_spots == 0:
        return
    freckle_rng = _extra_rng(ident, 2)
    count = int(round(scale.extra_spots * freckle_rng.uniform(*_EXTRA_FRECKLES)))
    for _ in range(count):  # over the whole face, uniform in an inner ellipse
        angle, radial = freckle_rng.uniform(0, 2 * math.pi), math.sqrt(freckle_rng.uniform())
        centre = (cx + 0.85 * a * radial * math.cos(angle), cy + 0.8 * b * radial * math.sin(angle))
        r = freckle_rng.uniform(0.4, 0.9) * scale.spot_radius
        spot(centre, r, freckle_rng.uniform(0.7, 0.85) ** scale.freckle_darkening)
    mole_rng = _extra_rng(ident, 3)
    count = int(round(scale.extra_spots * mole_rng.integers(*_EXTRA_MOLES)))
    for _ in range(count):
        centre = (cx + mole_rng.uniform(-0.75, 0.75) * a, cy + mole_rng.uniform(-0.6, 0.75) * b)
        spot(centre, mole_rng.uniform(0.8, 1.6), scale.mole_shade)
