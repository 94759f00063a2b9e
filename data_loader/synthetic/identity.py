"""What a synthetic face is made of: the sampled identity and per-image variation.

``FaceIdentity`` holds what stays the same across the images of one person, and
``FaceVariation`` what changes from one image to the next; both are plain frozen
dataclasses drawn by ``sample_identity`` / ``sample_variation`` from a
``numpy.random.Generator``.

Determinism: the identity ``i`` comes from ``default_rng([seed, 0, i])`` and its image
``k`` from ``default_rng([seed, 1, i, k])`` (``identity_rng`` / ``image_rng``; numpy's
global RNG is never used), so an image does not depend on the order or the process it is
drawn in. An identity's fixed layers (background, hair strands, skin noise, spots) draw
from ``default_rng(texture_seed)``, and what a ``texture_strength`` above 1 adds from
streams of their own (``texture``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

_SKIN = np.array([(255, 226, 200), (242, 196, 164), (226, 172, 134), (200, 138, 100),
                  (164, 106, 74), (122, 78, 54), (88, 58, 42)], np.float64)
_HAIR = np.array([(22, 18, 16), (52, 36, 26), (92, 62, 40), (136, 92, 56), (150, 66, 34),
                  (206, 170, 104), (232, 208, 150), (148, 144, 140), (208, 206, 202)],
                 np.float64)
_HAIR_P = np.array([0.2, 0.2, 0.15, 0.1, 0.07, 0.1, 0.05, 0.08, 0.05])
_IRIS = np.array([(62, 40, 24), (100, 64, 34), (126, 104, 52), (74, 112, 64),
                  (64, 104, 168), (112, 124, 134)], np.float64)
_HAIR_FRONT = ("bald", "short", "fringe", "side")


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
