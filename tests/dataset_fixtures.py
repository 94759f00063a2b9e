"""Writers of tiny datasets in each exact on-disk layout, and the dot checks the tests share.

Every annotated keypoint is drawn as a disc of its own colour; after loading, the centre
of the pixels of that colour must sit at the returned keypoint.
"""
from pathlib import Path
from typing import Iterable, List, Sequence

import numpy as np
import torch
from PIL import Image
from scipy.io import savemat

from data_loader.warper import WarperSingle

BACKGROUND = (0, 0, 0)
COLOUR_TOLERANCE = 30  # RGB distance accepted as "that dot's colour"


def palette(count: int) -> np.ndarray:
    """(count, 3) colours with one channel at 255 and the others on levels 0, 51, ..., 255:
    51 apart, and a blend with the black background is darker, so never mistaken for one."""
    levels = np.arange(0, 256, 51)
    colours = [(r, g, b) for r in levels for g in levels for b in levels if max(r, g, b) == 255]
    order = sorted(colours, key=lambda c: (sorted(c).count(255) != 1, c))  # saturated first
    if count > len(order):
        raise ValueError(f"at most {len(order)} dot colours")
    return np.array(order[:count], dtype=np.uint8)


def dot_image(width: int, height: int, points: np.ndarray, radius: int) -> np.ndarray:
    """(H, W, 3) uint8: a disc of radius ``radius`` and colour ``palette[k]`` centred on each
    integer pixel ``points[k]`` (0-based (x, y)), on black."""
    image = np.full((height, width, 3), BACKGROUND, np.uint8)
    ys, xs = np.mgrid[:height, :width]
    for colour, (x, y) in zip(palette(len(points)), np.asarray(points)):
        image[(xs - x) ** 2 + (ys - y) ** 2 <= radius ** 2] = colour
    return image


def save_image(array: np.ndarray, path: Path) -> None:
    """PNG, or JPEG at quality 100 without chroma subsampling (colours survive)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        Image.fromarray(array).save(path, quality=100, subsampling=0)
    else:
        Image.fromarray(array).save(path)


def find_dots(image: torch.Tensor, count: int) -> np.ndarray:
    """(3, H, W) image -> (count, 2) centroid (x, y) of the pixels of each palette colour
    (NaN where a colour is absent)."""
    pixels = image.numpy().astype(np.float64).transpose(1, 2, 0)  # (H, W, 3)
    ys, xs = np.mgrid[:pixels.shape[0], :pixels.shape[1]]
    found = np.full((count, 2), np.nan)
    for k, colour in enumerate(palette(count).astype(np.float64)):
        mask = np.linalg.norm(pixels - colour, axis=-1) < COLOUR_TOLERANCE
        if mask.any():
            found[k] = xs[mask].mean(), ys[mask].mean()
    return found


def through_crop(items: Sequence[dict], crop: int):
    """Images and keypoints of loader items after the device pipeline's ``crop`` step (an
    identity ``WarperSingle``): ((B, 3, h, w) float, (B, K, 2) warper keypoints,
    (B, K, 2) the items' keypoints shifted by -crop)."""
    images = torch.stack([item["data"] for item in items])
    keypts = torch.stack([item["keypts"] for item in items])
    identity = WarperSingle(warpsd_all=0, warpsd_subset=0, transsd=0, scalesd=0, rotsd=0)
    warped = identity(images, keypts=keypts, crop=crop, generator=torch.Generator().manual_seed(0))
    return warped.images, warped.keypts, keypts - crop


def assert_dots_on_keypoints(dataset, crop: int, tolerance: float = 1.0) -> None:
    """Every keypoint of every item is within ``tolerance`` px (each axis) of its dot's
    centroid after the crop step, and the warper's keypoints are that keypoint rounded."""
    items = [dataset[i] for i in range(len(dataset))]
    images, warped_keypts, shifted = through_crop(items, crop)
    count = shifted.shape[1]
    for index in range(len(items)):
        found = find_dots(images[index].round().to(torch.uint8), count)
        error = np.abs(found - shifted[index].numpy())
        lost = np.flatnonzero(~np.isfinite(found).all(axis=1))
        assert len(lost) == 0, f"item {index}: dots {lost} not found"
        assert error.max() < tolerance, f"item {index}: dot {error.max(axis=1).argmax()} is " \
                                        f"{error.max():.2f} px from its keypoint"
        assert (warped_keypts[index] - shifted[index]).abs().max().item() <= 0.5 + 1e-4


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def write_pts(path: Path, points: np.ndarray) -> None:
    """iBUG .pts of (K, 2) points, written as given (callers add 1 for 1-based files)."""
    write_lines(path, ["version: 1", f"n_points: {len(points)}", "{",
                       *(f"{x:.3f} {y:.3f}" for x, y in points), "}"])


# AFLW recropped ---------------------------------------------------------------------------

def write_aflw_index(root: Path, split: str, names: List[str], points_xy: np.ndarray,
                     sizes_hw: np.ndarray) -> None:
    """``aflw_<split>_images.txt`` and ``aflw_<split>_keypoints.mat`` (gt stored (y, x))."""
    write_lines(root / f"aflw_{split}_images.txt", names)
    savemat(root / f"aflw_{split}_keypoints.mat",
            {"gt": np.asarray(points_xy, np.float64)[:, :, ::-1].copy(),
             "hw": np.asarray(sizes_hw, np.float64)})


# AFLW_MTFL --------------------------------------------------------------------------------

MTFL_CSV_HEADER = ["image_file", "face_id", "set", "crop_file", "x1", "y1", "x2", "y2", "x3",
                   "y3", "x4", "y4", "x5", "y5", "face_x", "face_y"]  # "set" and names first


def write_mtfl_csv(root: Path, rows: List[tuple]) -> None:
    """``aflw_cropped/facedata_cropped.csv``; rows are (crop_file, set, (5, 2) 1-based x, y)."""
    lines = [",".join(MTFL_CSV_HEADER)]
    for number, (crop_file, subset, points) in enumerate(rows):
        coords = ",".join(f"{v:.2f}" for v in np.asarray(points).ravel())
        lines.append(f"orig/{number}.jpg,{number},{subset},{crop_file},{coords},0,0")
    write_lines(root / "aflw_cropped" / "facedata_cropped.csv", lines)


def write_mtfl_test(root: Path, rows: List[tuple]) -> None:
    """``MTFL/testing.txt``: ' path x1..x5 y1..y5 gender smile glasses pose' per row, with
    the Windows separators of the MTFL release."""
    lines = []
    for path, points in rows:
        points = np.asarray(points)
        values = " ".join(f"{v:.2f}" for v in [*points[:, 0], *points[:, 1]])
        lines.append(f" {path.replace('/', chr(92))} {values} 1 2 2 3")
    write_lines(root / "MTFL" / "testing.txt", lines)


# 300-W ------------------------------------------------------------------------------------

BOX_DTYPE = [("imgName", object), ("bb_ground_truth", object)]


def write_300w_boxes(root: Path, subset: str, entries: List[tuple], layout: str = "cell") -> None:
    """``Bounding Boxes/bounding_boxes_<subset>.mat`` of (imgName, [xmin ymin xmax ymax]).

    ``layout`` "cell": a 1 x N cell array of 1 x 1 structs, as in the 300-W release (an
    object array of (1, 1) struct arrays makes savemat write a cell; loadmat then gives
    ``bounding_boxes[0, i]['imgName'][0, 0][0]``); "struct": a 1 x N struct array.
    """
    if layout == "cell":
        boxes = np.empty((1, len(entries)), dtype=object)
        for k, (name, box) in enumerate(entries):
            struct = np.zeros((1, 1), dtype=BOX_DTYPE)
            struct[0, 0]["imgName"] = name
            struct[0, 0]["bb_ground_truth"] = np.asarray(box, np.float64).reshape(1, 4)
            boxes[0, k] = struct
    elif layout == "struct":
        boxes = np.zeros((1, len(entries)), dtype=BOX_DTYPE)
        for k, (name, box) in enumerate(entries):
            boxes[0, k]["imgName"] = name
            boxes[0, k]["bb_ground_truth"] = np.asarray(box, np.float64).reshape(1, 4)
    else:
        raise ValueError(f"layout must be 'cell' or 'struct', got {layout!r}")
    path = root / "Bounding Boxes" / f"bounding_boxes_{subset}.mat"
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"bounding_boxes": boxes})
