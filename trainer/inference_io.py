"""What ``predict.py`` reads and writes besides the network: image lists, face boxes,
CSV / JSON results and the drawings (overlays, side-by-side matches, colour maps).

Every coordinate written is in pixels of the upright original image (its EXIF
orientation applied, as viewers show it): x to the right, y down, in the convention of
the training annotations (the datasets' ``KeypointMap`` inverted exactly).
"""
import colorsys
import csv
import json
import logging
import math
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw

from base.base_dataset import Box, MissingDataError
from data_loader.image_folder import find_images, image_extensions
from utils.errors import UserError
from utils.registry import ConfigError

_logger = logging.getLogger(__name__)

FRAME = ("pixels of the upright image (EXIF orientation applied, as viewers show it), "
         "x right, y down, in the convention of the training annotations")
DECIMALS = 4
MIN_PANEL = 256  # colour maps are enlarged (nearest) to at least this many pixels high


class BoxesError(UserError, ValueError):
    """A ``--boxes`` file cannot be read or a row is not ``image,x0,y0,x1,y1``; the
    message names the file and line."""


def collect_images(arguments: Sequence[str]) -> List[Path]:
    """Image files and folders given on the command line -> image paths, in the order
    given; a folder contributes every image under it (any depth, sorted, the extensions
    Pillow opens: ``data_loader.image_folder.find_images``). Raises ``MissingDataError``
    for a path that does not exist or a folder without images."""
    images = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = find_images(path)
            if not found:
                raise MissingDataError(f"no images under {path} (looked for "
                                       f"{', '.join(sorted(image_extensions())[:6])}, ...); "
                                       f"pass image files or a folder holding some")
            images.extend(found)
        elif path.is_file():
            images.append(path)
        else:
            raise MissingDataError(f"image {path} not found; check the path")
    return images


def parse_box(text: str, where: str) -> Box:
    """``"x0,y0,x1,y1"`` (numbers, original pixels, x1 and y1 exclusive) -> the integer box
    the datasets cut (each value rounded). Raises ``ConfigError`` naming ``where`` unless
    there are four numbers with x1 > x0 and y1 > y0 after rounding."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    box = tuple(int(round(v)) for v in values if math.isfinite(v))
    if len(values) != 4 or len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise ConfigError(f"{where}: {text!r} is not a box; give x0,y0,x1,y1 in pixels of the "
                          f"upright image with x1 > x0 and y1 > y0, e.g. 10,20,110,120")
    return box


def read_boxes(path: Path) -> Dict[str, List[Box]]:
    """A boxes file, CSV ``image,x0,y0,x1,y1`` (an optional header row starting with
    ``image``; several rows may name one image: one face each) -> {image: [box, ...]}
    in file order. Raises ``MissingDataError`` or :class:`BoxesError` naming the file
    and line."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"--boxes {path} not found; check the path")
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise BoxesError(f"--boxes {path}: not a readable CSV text file ({err}); write "
                         f"image,x0,y0,x1,y1 rows") from None
    boxes: Dict[str, List[Box]] = {}
    for line, row in enumerate(rows, start=1):
        if not row or (line == 1 and row[0].strip().lower() == "image"):
            continue
        if len(row) != 5:
            raise BoxesError(f"--boxes {path}:{line}: expected 5 fields image,x0,y0,x1,y1, "
                             f"found {len(row)}")
        try:
            box = parse_box(",".join(row[1:]), f"--boxes {path}:{line}")
        except ConfigError as err:
            raise BoxesError(str(err)) from None
        boxes.setdefault(row[0].strip(), []).append(box)
    return boxes


def assign_boxes(images: Sequence[Path], box: Optional[str] = None,
                 boxes_file: Optional[str] = None) -> List[Tuple[Path, Optional[Box]]]:
    """(image, box) per face: the rows of ``boxes_file`` naming the image (by its path as
    given, or its file name), else ``box`` (``--box``), else None (the whole image)."""
    default = parse_box(box, "--box") if box else None
    table = read_boxes(Path(boxes_file)) if boxes_file else {}
    faces, used = [], set()
    for image in images:
        key = next((k for k in (image.as_posix(), str(image), image.name) if k in table), None)
        if key is None:
            faces.append((image, default))
            continue
        used.add(key)
        faces.extend((image, listed) for listed in table[key])
    unused = sorted(set(table) - used)
    if unused:
        _logger.warning("--boxes %s: %d image(s) not among the inputs: %s", boxes_file,
                        len(unused), ", ".join(unused[:4]))
    return faces


def output_stems(paths: Sequence[Path]) -> Dict[Path, str]:
    """A distinct file-name stem per image path: its name without the extension, with
    ``-2``, ``-3``, ... added to repeats, in order."""
    stems: Dict[Path, str] = {}
    taken = set()
    for path in paths:
        if path in stems:
            continue
        stem, number = path.stem, 1
        while stem in taken:
            number += 1
            stem = f"{path.stem}-{number}"
        taken.add(stem)
        stems[path] = stem
    return stems


def parse_points(text: str) -> torch.Tensor:
    """``"x,y;x,y;..."`` -> (K, 2) float64. Raises ``ConfigError`` for anything else."""
    try:
        points = [[float(v) for v in pair.split(",")] for pair in text.split(";") if pair.strip()]
    except ValueError:
        points = []
    if not points or any(len(p) != 2 or not all(map(math.isfinite, p)) for p in points):
        raise ConfigError(f"--points {text!r}: expected x,y pairs separated by ';', in pixels "
                          f"of the upright source image, e.g. \"40,52;61,50\"")
    return torch.tensor(points, dtype=torch.float64)


def point_colours(count: int) -> List[Tuple[int, int, int]]:
    """One saturated colour per point index (hues 0..0.9 of the circle)."""
    hues = np.linspace(0, 0.9, max(count, 1))
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, 1, 1)) for h in hues[:count]]


def _rounded(values) -> list:
    return np.round(np.asarray(values, dtype=np.float64), DECIMALS).tolist()


def _draw_points(draw: ImageDraw.ImageDraw, points, radius: float, offset=(0.0, 0.0),
                 scale: float = 1.0) -> None:
    for (x, y), colour in zip(points, point_colours(len(points))):
        cx, cy = x * scale + offset[0], y * scale + offset[1]
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour,
                     outline=(0, 0, 0))


def _radius(image: Image.Image) -> float:
    return max(2.0, 0.01 * max(image.size))


def write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=1) + "\n")


def write_landmarks(output_dir: Path, faces: Sequence[Tuple[Path, Optional[Box]]],
                    boxes: np.ndarray, landmarks: np.ndarray,
                    open_image: Callable[[Path], Image.Image], about: dict) -> None:
    """``landmarks.csv`` (one row per point: image, face, x0, y0, x1, y1, point, x, y),
    ``landmarks.json`` (per image: size, overlay file, faces with box and landmarks;
    ``about`` added at the top) and ``<stem>_landmarks.png`` per image: the upright
    image with each face's box (when one was given) and points drawn.

    Args:
        faces: (image path, given box or None) per face, as predicted.
        boxes: (F, 4) the region of each face, original pixels.
        landmarks: (F, K, 2) original pixels.
        open_image: image path -> its upright RGB picture (read once per image).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    stems = output_stems([path for path, _ in faces])
    by_image: Dict[Path, list] = {path: [] for path in stems}
    with open(output_dir / "landmarks.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["image", "face", "x0", "y0", "x1", "y1", "point", "x", "y"])
        for face, (path, _) in enumerate(faces):
            number = len(by_image[path])
            by_image[path].append({"box": _rounded(boxes[face]),
                                   "landmarks": _rounded(landmarks[face])})
            for point, (x, y) in enumerate(_rounded(landmarks[face])):
                writer.writerow([str(path), number, *_rounded(boxes[face]), point, x, y])
    listing = []
    for path, stem in stems.items():
        overlay = open_image(path)
        draw, radius = ImageDraw.Draw(overlay), _radius(overlay)
        for face, (face_path, given) in enumerate(faces):
            if face_path != path:
                continue
            if given is not None:
                draw.rectangle(list(given), outline=(255, 255, 0), width=max(1, int(radius / 2)))
            _draw_points(draw, landmarks[face], radius)
        overlay.save(output_dir / f"{stem}_landmarks.png")
        listing.append({"image": str(path), "width": overlay.width, "height": overlay.height,
                        "overlay": f"{stem}_landmarks.png", "faces": by_image[path]})
    write_json(output_dir / "landmarks.json", {**about, "frame": FRAME, "images": listing})


def side_by_side(source: Image.Image, points: np.ndarray, target: Image.Image,
                 matched: np.ndarray) -> Image.Image:
    """Source (left) and target (right) at a common height, with the source points, their
    matches (same colour) and a line joining each pair; (K, 2) original pixels each."""
    height = max(source.height, target.height)
    scales = (height / source.height, height / target.height)
    left = source.resize((round(source.width * scales[0]), height), Image.BILINEAR)
    right = target.resize((round(target.width * scales[1]), height), Image.BILINEAR)
    canvas = Image.new("RGB", (left.width + right.width, height))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    draw = ImageDraw.Draw(canvas)
    for (xs, ys), (xt, yt), colour in zip(points, matched, point_colours(len(points))):
        draw.line([xs * scales[0], ys * scales[0], xt * scales[1] + left.width,
                   yt * scales[1]], fill=colour, width=1)
    radius = _radius(canvas) / 2
    _draw_points(draw, points, radius, scale=scales[0])
    _draw_points(draw, matched, radius, offset=(left.width, 0), scale=scales[1])
    return canvas


def write_matches(output_dir: Path, source: Path, points: np.ndarray,
                  faces: Sequence[Tuple[Path, Optional[Box]]], boxes: np.ndarray,
                  matched: np.ndarray, open_image: Callable[[Path], Image.Image],
                  about: dict) -> None:
    """``matches.csv`` (one row per target face and point: target, face, point, source_x,
    source_y, x, y), ``matches.json`` and ``<source>_to_<target>_matches.png`` per
    target face (a ``-<face>`` suffix from the second face of an image on).

    Args:
        points: (K, 2) source points, original source pixels.
        faces: (target path, given box or None) per target face.
        boxes: (F, 4) target regions; matched: (F, K, 2) original target pixels.
        open_image: image path -> its upright RGB picture.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    stems = output_stems([source] + [path for path, _ in faces])
    targets, counts, source_image = [], {}, open_image(source)
    with open(output_dir / "matches.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["target", "face", "point", "source_x", "source_y", "x", "y"])
        for face, (path, _) in enumerate(faces):
            number = counts[path] = counts.get(path, -1) + 1
            suffix = f"-{number}" if number else ""
            figure = f"{stems[source]}_to_{stems[path]}{suffix}_matches.png"
            side_by_side(source_image, points, open_image(path), matched[face]).save(
                output_dir / figure)
            for point, ((xs, ys), (x, y)) in enumerate(zip(_rounded(points),
                                                            _rounded(matched[face]))):
                writer.writerow([str(path), number, point, xs, ys, x, y])
            targets.append({"image": str(path), "face": number, "box": _rounded(boxes[face]),
                            "figure": figure, "matches": _rounded(matched[face])})
    write_json(output_dir / "matches.json", {**about, "frame": FRAME, "source": str(source),
                                             "points": _rounded(points), "targets": targets})


def save_colour_map(path: Path, panel: torch.Tensor) -> None:
    """(3, h, w) float in [0, 1] -> a PNG, enlarged by a whole factor (nearest) to at
    least ``MIN_PANEL`` pixels high."""
    factor = max(1, math.ceil(MIN_PANEL / panel.shape[1]))
    pixels = (panel.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    image = Image.fromarray(pixels)
    image.resize((image.width * factor, image.height * factor), Image.NEAREST).save(path)
