"""``FaceRenderer``: draws the images of one identity (face features, pose, degradation),
plus ``synthetic_face`` (one image as written to disk) and ``contact_sheet``."""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from data_loader.synthetic.camera import inverse_affine, apply_photometric, pose_affine
from data_loader.synthetic.canvas import (DEBUG_COLOUR, IMAGE_SIZE, CANVAS, MARGIN, SCALE,
                                          bezier, ellipse_points, canvas_pixels, rgb, to_canvas)
from data_loader.synthetic.identity import (NEUTRAL, FaceIdentity, FaceVariation, identity_rng,
                                            image_rng, sample_identity, sample_variation)
from data_loader.synthetic.layers import render_background, hair_masks, hair_texture
from data_loader.synthetic.texture import DEFAULT_TEXTURE_STRENGTH, TextureScale, draw_spots, paste_skin


class FaceRenderer:
    """Draws the images of one identity; the identity's fixed layers are built once.

    Args:
        identity: the person, from ``sample_identity``.
        texture_strength: scales the identity's fine texture (skin noise, freckles, moles,
            hair strand width; ``data_loader.synthetic.texture``); 1.0 is the original
            texture, 0 none, default 2.0.

    Raises:
        ValueError: ``texture_strength`` is not a finite number >= 0.
    """

    def __init__(self, identity: FaceIdentity,
                 texture_strength: float = DEFAULT_TEXTURE_STRENGTH):
        self.identity = identity
        self.texture = TextureScale(texture_strength)
        rng = np.random.default_rng(identity.texture_seed)
        self.hair_layer = hair_texture(identity, rng, self.texture.strand_width)
        back, cap = hair_masks(identity)
        self.base = self._base_layer(rng, back)
        self.cap = None  # (hair pixels, mask, top-left corner) of the hair in front
        if cap is not None:
            mask = Image.new("L", CANVAS, 0)
            ImageDraw.Draw(mask).polygon(to_canvas(cap), fill=255)
            box = mask.getbbox()
            self.cap = (self.hair_layer.crop(box), mask.crop(box), box[:2])

    # ---- identity layers
    def _base_layer(self, rng: np.random.Generator, back: Optional[np.ndarray]) -> Image.Image:
        """Background, long hair (polygon ``back``), neck, clothes, ears, textured skin,
        freckles and moles."""
        ident = self.identity
        canvas = render_background(ident, rng)
        draw = ImageDraw.Draw(canvas)
        if back is not None:
            mask = Image.new("L", CANVAS, 0)
            ImageDraw.Draw(mask).polygon(to_canvas(back), fill=255)
            canvas.paste(self.hair_layer, (0, 0), mask)
        cx, cy, a, b = ident.face_cx, ident.face_cy, ident.face_a, ident.face_b
        bottom = IMAGE_SIZE[1] + MARGIN
        shoulders = [(cx - 0.55 * a, cy + b), (cx - 2.3 * a, cy + b + 40),
                     (cx - 2.6 * a, bottom), (cx + 2.6 * a, bottom),
                     (cx + 2.3 * a, cy + b + 40), (cx + 0.55 * a, cy + b)]
        draw.polygon(to_canvas(shoulders), fill=rgb(ident.clothes))
        neck_w = 0.5 * a
        draw.polygon(to_canvas([(cx - neck_w, cy + 0.3 * b), (cx - neck_w * 1.05, cy + b + 30),
                                 (cx + neck_w * 1.05, cy + b + 30), (cx + neck_w, cy + 0.3 * b)]),
                     fill=rgb(ident.skin, 0.8))
        ear_y, ear_a, ear_b = ident.eye_y + 9, 5.5 * ident.ear_size, 10 * ident.ear_size
        for side in (-1, 1):
            ex = cx + side * a * 0.97
            draw.polygon(to_canvas(ellipse_points(ex, ear_y, ear_a, ear_b, 24)),
                         fill=rgb(ident.skin, 0.93))
            fold = ellipse_points(ex + side, ear_y, ear_a * 0.5 * side, ear_b * 0.6, 12, -0.5 * math.pi,
                            0.5 * math.pi)
            draw.line(to_canvas(fold), fill=rgb(ident.skin, 0.75), width=canvas_pixels(0.8))
        if ident.hair_front == "bald":  # a horseshoe of hair around the ears
            for side in (-1, 1):
                hx = cx + side * a
                strip = [(hx - side * 4, ident.eye_y - 14), (hx + side * 4, ident.eye_y - 12),
                         (hx + side * 3, ident.eye_y + 10), (hx - side * 3, ident.eye_y + 6)]
                draw.polygon(to_canvas(strip), fill=rgb(ident.hair))
        paste_skin(canvas, ident, rng, self.texture)
        draw_spots(canvas, ident, rng, self.landmarks_in_frame(NEUTRAL), self.texture)
        return canvas

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
        almond = np.asarray(to_canvas(place(np.concatenate([upper, lower]))))
        x0, y0 = np.floor(almond.min(0)).astype(int) - 2
        x1, y1 = np.ceil(almond.max(0)).astype(int) + 2
        patch = Image.new("RGB", (x1 - x0, y1 - y0), (236, 232, 226))
        mask = Image.new("L", patch.size, 0)
        ImageDraw.Draw(mask).polygon([tuple(p) for p in almond - (x0, y0)], fill=255)
        pd = ImageDraw.Draw(patch)
        (ccx, ccy), = np.asarray(to_canvas([centre])) - (x0, y0)
        r = ident.eye_h * ident.iris_ratio * SCALE

        def disc(left, top, right, bottom):  # box in iris radii around the eye centre
            return [int(round(v)) for v in (ccx + left * r, ccy + top * r,
                                            ccx + right * r, ccy + bottom * r)]

        pd.ellipse(disc(-1, -1, 1, 1), fill=rgb(ident.iris), outline=rgb(ident.iris, 0.6))
        pd.ellipse(disc(-0.45, -0.45, 0.45, 0.45), fill=(12, 10, 10))  # pupil
        pd.ellipse(disc(-0.55, -0.6, -0.2, -0.25), fill=(250, 250, 250))  # catch light
        canvas.paste(patch, (int(x0), int(y0)), mask)
        lash = rgb(np.array(ident.hair) * 0.4 + 10)
        draw.line(to_canvas(place(upper)), fill=lash, width=canvas_pixels(ident.lash_w), joint="curve")
        draw.line(to_canvas(place(lower)), fill=rgb(ident.skin, 0.72), width=canvas_pixels(0.5))
        crease_h = h_up + 2.2 + 0.3 * ident.eye_h
        crease = np.stack([u * half_w * 0.9, -crease_h * (1 - u ** 2) ** 0.6], 1)
        draw.line(to_canvas(place(crease[2:-2])), fill=rgb(ident.skin, 0.7), width=canvas_pixels(0.6))

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
        draw.polygon(to_canvas(np.concatenate([top, bottom])), fill=rgb(colour, 0.8))

    def _draw_nose(self, draw, tip, var):
        ident = self.identity
        w, skin = ident.nose_w, ident.skin
        nx, ny = tip
        lean = 1.0 if var.yaw >= 0 else -1.0  # the bridge shadow on the side turned away
        bridge = bezier((ident.face_cx + lean * 3.5 + 2.0 * var.yaw, ident.eye_y + 4),
                         (nx + lean * 4.0, ny - 10), (nx + lean * w * 0.7, ny - 2), 10)
        draw.line(to_canvas(bridge), fill=rgb(skin, 0.82), width=canvas_pixels(1.1), joint="curve")
        for side in (-1, 1):
            wing = bezier((nx + side * w * 0.55, ny - 3.5), (nx + side * (w + 1.5), ny + 0.5),
                           (nx + side * w * 0.45, ny + 3.2), 8)
            draw.line(to_canvas(wing), fill=rgb(skin, 0.68), width=canvas_pixels(0.8))
            c = (nx + side * w * 0.42, ny + 2.6)
            draw.ellipse(to_canvas([(c[0] - 1.5, c[1] - 0.8), (c[0] + 1.5, c[1] + 0.8)]),
                         fill=rgb(skin, 0.4))
        under = bezier((nx - w * 0.35, ny + 3.2), (nx, ny + 4.6), (nx + w * 0.35, ny + 3.2), 8)
        draw.line(to_canvas(under), fill=rgb(skin, 0.6), width=canvas_pixels(0.7))
        draw.ellipse(to_canvas([(nx - 1.6, ny - 1.8), (nx + 1.6, ny + 0.8)]),
                     fill=rgb(skin, 1.12))  # highlight on the tip

    def _draw_mouth(self, draw, left, right, var):
        ident = self.identity
        mid = (left + right) / 2
        half = (right[0] - left[0]) / 2
        dip = 2.2 * var.smile + 0.5  # the lip line sags in the middle when smiling
        gap = var.mouth_open
        line_top = bezier(left, (mid[0], mid[1] + 2 * dip - gap / 2), right, 13)
        line_bottom = bezier(left, (mid[0], mid[1] + 2 * dip + gap * 1.5), right, 13)
        bow = np.array([left, (mid[0] - 0.45 * half, mid[1] - ident.lip_up - 0.5),
                        (mid[0], mid[1] - ident.lip_up + 0.6 + dip * 0.3),
                        (mid[0] + 0.45 * half, mid[1] - ident.lip_up - 0.5), right])
        upper_top = np.concatenate([
            bezier(bow[0], (bow[0] + bow[1]) / 2 + (0, -0.6), bow[1], 7), bow[2:3],
            bezier(bow[3], (bow[3] + bow[4]) / 2 + (0, -0.6), bow[4], 7)])
        if ident.facial_hair == "moustache":
            tache = np.concatenate([upper_top + (0, -0.5), (upper_top + (0, -4.0))[::-1]])
            draw.polygon(to_canvas(tache), fill=rgb(ident.hair, 0.85))
        chin_side = mid[1] + 2 * (dip + gap * 0.75 + ident.lip_lo + 0.7)
        lower_low = bezier(left, (mid[0], chin_side), right, 13)
        if gap > 0:  # the open mouth, then the upper teeth
            draw.polygon(to_canvas(np.concatenate([line_top, line_bottom[::-1]])),
                         fill=(60, 20, 24))
            teeth = bezier(left + (half * 0.35, 0), (mid[0], mid[1] + 2 * dip + gap * 0.2),
                            right - (half * 0.35, 0), 9)
            draw.line(to_canvas(teeth), fill=(232, 228, 216), width=canvas_pixels(min(2.0, gap * 0.5)))
        draw.polygon(to_canvas(np.concatenate([upper_top, line_top[::-1]])),
                     fill=rgb(ident.lip))
        draw.polygon(to_canvas(np.concatenate([line_bottom, lower_low[::-1]])),
                     fill=rgb(ident.lip, 1.08))
        draw.line(to_canvas(line_top), fill=rgb(ident.lip, 0.5), width=canvas_pixels(0.6))
        for corner, side in ((left, -1), (right, 1)):  # dimples at the corners
            draw.line(to_canvas([corner + (side * 0.3, -0.8), corner + (side * 1.6, 0.9)]),
                      fill=rgb(ident.skin, 0.7), width=canvas_pixels(0.6))

    def _draw_glasses(self, draw, eyes, half_ws):
        ident = self.identity
        colour, width = rgb(ident.glasses_colour), canvas_pixels(ident.glasses_thick)
        boxes = []
        for (ex, ey), hw in zip(eyes, half_ws):
            rx, ry = hw * ident.glasses_size, ident.eye_w * ident.glasses_size * 0.78
            box = [(ex - rx, ey + 1 - ry), (ex + rx, ey + 1 + ry)]
            boxes.append(box)
            if ident.glasses == "round":
                draw.ellipse(to_canvas(box), outline=colour, width=width)
            else:
                draw.rounded_rectangle(to_canvas(box), radius=3 * SCALE, outline=colour,
                                       width=width)
        y = eyes[0][1] - 1
        inner_left, inner_right = boxes[0][1][0], boxes[1][0][0]
        bridge = bezier((inner_left, y), ((inner_left + inner_right) / 2, y - 2.5),
                         (inner_right, y), 6)
        draw.line(to_canvas(bridge), fill=colour, width=width)
        for edge, side in ((boxes[0][0][0], -1), (boxes[1][1][0], 1)):  # the temples
            ear = (ident.face_cx + side * ident.face_a * 0.99, y - 2)
            draw.line(to_canvas([(edge, y - 1), ear]), fill=colour, width=width)

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
                draw.ellipse(to_canvas([p - 1.5, p + 1.5]), fill=DEBUG_COLOUR)
        matrix, offset = pose_affine(var)
        image = canvas.reduce(SCALE).transform(  # (W_c, H_c) / S -> IMAGE_SIZE
            IMAGE_SIZE, Image.AFFINE, inverse_affine(matrix, offset), Image.BILINEAR,
            fillcolor=rgb(ident.background))
        landmarks = points @ matrix.T + offset
        if not debug:
            image = apply_photometric(image, var)
        return image, landmarks


def synthetic_face(seed: int, identity_id: int, image_index: int, debug: bool = False,
                   texture_strength: float = DEFAULT_TEXTURE_STRENGTH
                   ) -> Tuple[Image.Image, np.ndarray]:
    """The image ``image_index`` of identity ``identity_id`` for ``seed`` (as written to disk
    with that ``texture_strength``): (178 x 218 RGB image, (5, 2) landmarks in its pixels)."""
    renderer = FaceRenderer(sample_identity(identity_rng(seed, identity_id)), texture_strength)
    return renderer.render(sample_variation(image_rng(seed, identity_id, image_index)), debug)


def contact_sheet(images: Sequence[Image.Image], landmarks: Optional[Sequence[np.ndarray]] = None,
                  columns: int = 4) -> Image.Image:
    """Tile same-sized images row by row, ``columns`` a row, with their (5, 2) landmarks
    (pixels of each image) drawn when given (red eyes, green nose, blue mouth)."""
    w, h = images[0].size
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (w * columns, h * rows), (0, 0, 0))
    colours = [(255, 0, 0), (255, 0, 0), (0, 255, 0), (0, 90, 255), (0, 90, 255)]
    for i, image in enumerate(images):
        tile = image.copy()
        draw = ImageDraw.Draw(tile)
        for (x, y), colour in zip(landmarks[i] if landmarks is not None else (), colours):
            draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], outline=colour)
        sheet.paste(tile, ((i % columns) * w, (i // columns) * h))
    return sheet
