"""Every image mode comes out as the 8-bit RGB picture a viewer shows, upright by EXIF.

Each expected picture is computed here with numpy from the values written, by the rule
the README states: 16-bit samples keep their high byte (value >> 8), 32-bit integer "I"
is 16-bit data clipped to 0..65535, "F" maps 0..1 to 0..255, transparency is composited
over black (round(c * alpha / 255)).
"""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from base.image_modes import viewer_rgb
from data_loader.aflw import AFLW
from data_loader.image_folder import ImageFolder
from data_loader.pts_landmarks import PtsLandmarks
from dataset_fixtures import (assert_dots_on_keypoints, dot_image, find_dots, write_aflw_index,
                              write_pts)

RNG = np.random.default_rng(0)
SHAPE = (5, 7)  # height, width
GREY = RNG.integers(0, 256, SHAPE, dtype=np.uint8)
RGB = RNG.integers(0, 256, SHAPE + (3,), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, SHAPE, dtype=np.uint8)
WIDE = RNG.integers(0, 65536, SHAPE).astype(np.uint16)
PALETTE = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
INDICES = RNG.integers(0, 256, SHAPE, dtype=np.uint8)
EXIF_ORIENTATION = 0x0112


def grey3(values):
    return np.repeat(np.asarray(values, np.uint8)[:, :, None], 3, axis=2)


def over_black(rgb, alpha):
    """Straight alpha composited over black, rounded to the nearest integer."""
    return np.round(rgb.astype(np.float64) * alpha[:, :, None] / 255).astype(np.uint8)


def palette_image():
    image = Image.frombytes("P", SHAPE[::-1], INDICES.tobytes())
    image.putpalette(PALETTE.ravel().tolist())
    return image


def make_pa():
    image = palette_image().convert("PA")
    image.putalpha(Image.fromarray(ALPHA))
    return image


def make_p_with_transparent_index():
    image = palette_image()
    image.info["transparency"] = int(INDICES[0, 0])
    return image


def make_i32():
    values = WIDE.astype(np.int32)
    values[0, :3] = (-5, 70000, 65535)  # outside 16 bits: clipped
    return Image.fromarray(values)


FLOATS = RNG.uniform(-0.2, 1.2, SHAPE).astype(np.float32)
FLOATS[0, 0] = np.nan  # black


def make_float():
    return Image.fromarray(FLOATS)


CMYK = RNG.integers(0, 256, SHAPE + (4,), dtype=np.uint8)
I32 = np.asarray(make_i32(), np.int64)
ONE_BIT = GREY > 127

CASES = {
    "1": (lambda: Image.fromarray(ONE_BIT), grey3(ONE_BIT * 255)),
    "L": (lambda: Image.fromarray(GREY), grey3(GREY)),
    "RGB": (lambda: Image.fromarray(RGB), RGB),
    "P": (palette_image, PALETTE[INDICES]),
    "P-transparent-index": (make_p_with_transparent_index,
                            np.where((INDICES == INDICES[0, 0])[:, :, None], 0, PALETTE[INDICES])),
    "PA": (make_pa, over_black(PALETTE[INDICES], ALPHA)),
    "LA": (lambda: Image.fromarray(np.stack([GREY, ALPHA], -1)), over_black(grey3(GREY), ALPHA)),
    "RGBA": (lambda: Image.fromarray(np.dstack([RGB, ALPHA])), over_black(RGB, ALPHA)),
    "CMYK": (lambda: Image.frombytes("CMYK", SHAPE[::-1], CMYK.tobytes()),
             np.round((255.0 - CMYK[:, :, :3]) * (255.0 - CMYK[:, :, 3:]) / 255).astype(np.uint8)),
    "I;16": (lambda: Image.fromarray(WIDE), grey3(WIDE >> 8)),
    "I;16B": (lambda: Image.frombytes("I;16B", SHAPE[::-1], WIDE.astype(">u2").tobytes()),
              grey3(WIDE >> 8)),
    "I": (make_i32, grey3(np.clip(I32, 0, 65535) // 256)),
    "F": (make_float, grey3(np.round(np.clip(np.nan_to_num(FLOATS.astype(np.float64)), 0, 1)
                                          * 255))),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_mode_as_a_viewer_shows_it(case):
    make, expected = CASES[case]
    image = make()
    assert image.mode == case.split("-")[0]
    result = viewer_rgb(image)
    assert result.mode == "RGB" and result.size == image.size
    np.testing.assert_array_equal(np.asarray(result), expected)


def png_16bit(values, colour_type):
    """A 16-bit PNG written byte by byte (colour type 0 grey, 2 RGB), big-endian samples."""
    height, width = values.shape[:2]
    rows = b"".join(b"\0" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) \
        + chunk(b"IEND", b"")


@pytest.mark.parametrize("colour_type, channels", [(0, 1), (2, 3)], ids=["grey", "rgb"])
def test_16bit_png_files_keep_their_full_range(tmp_path, colour_type, channels):
    side = 16  # loaded at imwidth 16: the resize keeps every pixel
    values = RNG.integers(0, 65536, (side, side, channels)).astype(np.uint16).squeeze()
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "deep.png").write_bytes(png_16bit(values, colour_type))
    item = ImageFolder(tmp_path / "faces", imwidth=side, crop=0, val_fraction=0)[0]
    expected = values >> 8 if channels == 3 else grey3(values >> 8)
    np.testing.assert_array_equal(item["data"].permute(1, 2, 0).numpy(), expected)


def save_turned(upright, path, orientation):
    """A JPEG holding ``upright`` stored turned, with the EXIF Orientation that undoes it:
    6 = "rotate 90 degrees clockwise to view", 8 = counter-clockwise, 1 = as stored."""
    stored = np.rot90(upright, {1: 0, 6: 1, 8: -1}[orientation])
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(path, quality=100, subsampling=0,
                                                       exif=exif.tobytes())


FACE = np.array([(30, 40), (62, 38), (46, 60), (34, 80), (60, 82)])  # upright (x, y)
UPRIGHT_SIZE = (96, 120)  # width, height


def write_turned_faces(folder):
    """Three photos, two stored turned (EXIF 6 and 8), with the .pts of the upright picture."""
    names = []
    for k, orientation in enumerate((6, 8, 1)):
        path = folder / f"face{k}.jpg"
        folder.mkdir(parents=True, exist_ok=True)
        save_turned(dot_image(*UPRIGHT_SIZE, FACE + k, radius=4), path, orientation)
        write_pts(path.with_suffix(".pts"), FACE + k + 1.0)
        names.append(path.name)
    return names


def test_turned_photos_are_stored_on_their_side(tmp_path):
    write_turned_faces(tmp_path)
    assert Image.open(tmp_path / "face0.jpg").size == UPRIGHT_SIZE[::-1]


def turned_dataset(root, dataset_type):
    """``dataset_type`` over the turned faces, imwidth 96, with keypoints where it has them."""
    if dataset_type == "PtsLandmarks":
        write_turned_faces(root)
        return PtsLandmarks(root, imwidth=96, crop=8, use_keypoints=True, test_fraction=0,
                            box_margin=0.3)
    if dataset_type == "AFLW":
        names = write_turned_faces(root / "output")
        write_aflw_index(root, "test", names, np.stack([FACE + k for k in range(3)]),
                         np.tile(UPRIGHT_SIZE[::-1], (3, 1)))
        return AFLW(root, train=False, imwidth=96, use_keypoints=True)
    write_turned_faces(root)
    return ImageFolder(root, imwidth=96, crop=0, val_fraction=0)


@pytest.mark.parametrize("dataset_type", ["PtsLandmarks", "AFLW", "ImageFolder"])
def test_every_dataset_type_reads_turned_photos_upright(tmp_path, dataset_type):
    dataset = turned_dataset(tmp_path, dataset_type)
    if dataset.use_keypoints:
        assert_dots_on_keypoints(dataset, crop=dataset.crop)
        return
    scale = np.array([96 / UPRIGHT_SIZE[0], 96 / UPRIGHT_SIZE[1]])
    for index in range(len(dataset)):
        found = find_dots(dataset[index]["data"], len(FACE))
        assert np.abs(found - (FACE + index) * scale).max() < 1.0
