"""Shared base of the face datasets: index reading, decoding, cropping, resizing, keypoints.

A dataset item is a dict with ``data`` (3, imwidth, imwidth) uint8, ``index`` and, when
``use_keypoints``, ``keypts`` (K, 2) float32 (x, y) pixels of that resized image. Every
image is read upright (its EXIF orientation applied) and as the 8-bit RGB picture a viewer
shows (``base.image_modes``); annotations are pixels of that upright picture. Warps,
the ``crop`` margin and photometric augmentation happen later, batched on the device
(``data_loader.device_pipeline``); a subclass only parses its index files and says how
an image becomes the ``imwidth`` square (``source_box``, or ``render`` for anything
that is not one crop and one resize).
"""
import math
from collections import abc
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy.io import loadmat
from torch.utils.data import Dataset

from base.image_modes import viewer_rgb
from utils.errors import USER_ERRORS, UserError

Box = Tuple[int, int, int, int]  # left, top, right, bottom in source pixels (right exclusive)
MINIVAL_FRACTION = 0.1  # ``use_minival``: the last 10% of the training list


class MissingDataError(UserError, FileNotFoundError):
    """A dataset file is absent; the message names it and how to get it."""


class AnnotationError(UserError, ValueError):
    """An annotation file cannot be read or does not have the expected layout; the message
    names the file (and line) and what to do."""


class ImageReadError(UserError, OSError):
    """An image file cannot be decoded (truncated, not an image, too large); the message
    names the file, its index in the dataset and what to do."""


# What Pillow raises on a broken file: OSError (truncated, UnidentifiedImageError),
# SyntaxError / ValueError / EOFError from some format plugins, and the pixel-count guard.
IMAGE_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
LFS_POINTER_START = b"version https://git-lfs"
IBUG_LAYOUT = "the points as iBUG text: 'version: 1', 'n_points: N', '{', one 'x y' per line, '}'"


def one_line(err: BaseException) -> str:
    """``err``'s message on one line (a library's message may hold newlines)."""
    return " ".join(str(err).split()) or type(err).__name__


def lfs_pointer_error(path: Path, remedy: str) -> AnnotationError:
    return AnnotationError(f"{path}: a Git LFS pointer (a small text stub), not the data; "
                           f"run 'git lfs pull' in the clone it came from, or {remedy}")


def read_text_lines(path: Path, kind: str = "annotation",
                    fix: str = "fix or re-fetch it") -> List[str]:
    """The lines of the UTF-8 text file ``path`` (a leading byte-order mark skipped).

    Raises ``AnnotationError`` naming the file when it cannot be read, is a Git LFS
    pointer, or is not text (NUL bytes, invalid UTF-8): "<path>: not a text <kind> file
    (...); <fix>".
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise MissingDataError(f"{path} not found") from None
    except OSError as err:
        raise AnnotationError(f"{path}: cannot be read ({one_line(err)}); check that it "
                              f"is a readable file") from None
    if data.startswith(LFS_POINTER_START):
        raise lfs_pointer_error(path, "re-fetch it")
    try:
        text, bad_byte = data.decode("utf-8"), data.find(b"\0")  # NUL is no text either
    except UnicodeDecodeError as err:
        text, bad_byte = "", err.start
    if bad_byte >= 0:
        raise AnnotationError(f"{path}: not a text {kind} file (byte {bad_byte} is not UTF-8 "
                              f"text); {fix}")
    return text.removeprefix("\ufeff").splitlines()


def read_numbered_rows(path: Path, columns: Optional[int] = None,
                       min_columns: Optional[int] = None,
                       skip: int = 0) -> List[Tuple[int, List[str]]]:
    """(1-based line number, fields) of a whitespace-separated text table after ``skip``
    lines; blank lines ignored.

    Every row must have exactly ``columns`` (or at least ``min_columns``) fields; a row
    that does not raises an ``AnnotationError`` naming the file and its line, as does a
    file that is not text (``read_text_lines``).
    """
    rows = []
    for line_number, line in enumerate(read_text_lines(path), start=1):
        if line_number <= skip or not line.strip():
            continue
        fields = line.split()
        wrong = (columns is not None and len(fields) != columns) or \
                (min_columns is not None and len(fields) < min_columns)
        if wrong:
            wanted = f"{columns}" if columns is not None else f"at least {min_columns}"
            raise AnnotationError(f"{path}:{line_number}: expected {wanted} columns, found "
                                  f"{len(fields)}; fix or re-fetch the file")
        rows.append((line_number, fields))
    return rows


def read_table(path: Path, columns: int, skip: int = 0, text_columns: Sequence[int] = (0,)
               ) -> pd.DataFrame:
    """A whitespace-separated table of exactly ``columns`` fields per row after ``skip``
    lines, numbers except in ``text_columns`` (fast, pandas). A malformed row raises the
    ``AnnotationError`` of ``read_numbered_rows`` / ``parse_floats``, naming file and line."""
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, skiprows=skip, engine="c",
                            dtype={c: str for c in text_columns})
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=range(columns))
    except (pd.errors.ParserError, UnicodeDecodeError, OSError):
        table = None  # read_numbered_rows names the file and what is wrong
    numeric = [c for c in range(columns) if c not in text_columns]
    if (table is None or table.shape[1] != columns or table.isna().to_numpy().any()
            or not all(pd.api.types.is_numeric_dtype(table[c]) for c in numeric)):
        rows = read_numbered_rows(path, columns=columns, skip=skip)
        for line_number, fields in rows:
            parse_floats(path, line_number, [fields[c] for c in numeric])
        table = pd.DataFrame([fields for _, fields in rows])
        table[numeric] = table[numeric].astype(np.float64)
    return table


def read_name_list(path: Path) -> List[str]:
    """One name (or relative path) per line, in file order."""
    return [fields[0] for _, fields in read_numbered_rows(path, columns=1)]


def read_mat(path: Path, remedy: str = "re-fetch it") -> dict:
    """The variables of a MATLAB ``.mat`` file (v4 to v7; scipy's ``loadmat``).

    Raises ``AnnotationError`` naming the file and ``remedy`` when it cannot be parsed: a
    Git LFS pointer, a MATLAB v7.3 (HDF5) file, a cut or damaged file.
    """
    try:
        with open(path, "rb") as handle:
            if handle.read(len(LFS_POINTER_START)) == LFS_POINTER_START:
                raise lfs_pointer_error(path, remedy)
        return loadmat(str(path))
    except USER_ERRORS:
        raise
    except NotImplementedError:  # what scipy raises for v7.3
        raise AnnotationError(f"{path}: a MATLAB v7.3 (HDF5) file, which scipy cannot read; "
                              f"save it again with save(..., '-v7') in MATLAB, or "
                              f"{remedy}") from None
    except Exception as err:  # noqa: BLE001 -- damaged files make scipy raise OSError,
        # ValueError, TypeError, IndexError, UnboundLocalError, ZeroDivisionError, zlib.error...
        raise AnnotationError(f"{path}: not a readable .mat file ({one_line(err)}); "
                              f"{remedy}") from None


def parse_floats(path: Path, line_number: int, fields: Sequence[str]) -> List[float]:
    try:
        return [float(field) for field in fields]
    except ValueError:
        raise AnnotationError(f"{path}:{line_number}: expected numbers, found "
                              f"{' '.join(fields)!r}") from None


def read_pts(path: Path) -> np.ndarray:
    """An iBUG ``.pts`` file (``version: 1``, ``n_points: N``, ``{``, N lines ``x y``, ``}``)
    -> (N, 2) float32 as written (1-based pixels of the upright image: the frame a viewer
    shows, after its EXIF orientation).

    Raises ``AnnotationError`` naming the file (and line) when it is not UTF-8 text or
    not in that layout.
    """
    lines = [line.strip() for line in read_text_lines(path, "iBUG .pts", f"save {IBUG_LAYOUT}")]
    try:
        count_line = next(i for i, line in enumerate(lines) if line.startswith("n_points"))
        count = int(lines[count_line].split(":")[1])
        start = lines.index("{", count_line) + 1
    except (StopIteration, ValueError, IndexError):
        raise AnnotationError(f"{path}: not an iBUG .pts file (no 'n_points: N' line followed "
                              f"by '{{'); write {IBUG_LAYOUT}") from None
    points = []
    for offset in range(count):
        line_number = start + offset + 1
        fields = lines[start + offset].split() if start + offset < len(lines) else []
        if len(fields) != 2:
            raise AnnotationError(f"{path}:{line_number}: expected 2 columns (x y) for point "
                                  f"{offset + 1} of {count}, found {len(fields)}")
        points.append(parse_floats(path, line_number, fields))
    end = start + count
    if end >= len(lines) or lines[end] != "}":
        raise AnnotationError(f"{path}:{end + 1}: expected '}}' after {count} points")
    return np.array(points, dtype=np.float32).reshape(count, 2)


def tail_split(count: int, fraction: float, train: bool) -> slice:
    """Training = all but the last ``round(fraction * count)`` items; those are the
    held-out split (at least one when ``fraction`` > 0 and there are two items)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")
    held_out = int(round(fraction * count))
    if fraction > 0 and count >= 2:
        held_out = min(max(held_out, 1), count - 1)
    return slice(0, count - held_out) if train else slice(count - held_out, count)


class JoinedPaths(abc.Sequence):
    """``folder / name`` for each name, built on access (cheap for 200,000 images)."""

    def __init__(self, folder: Path, names: Sequence[str]):
        self.folder = Path(folder)
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.folder / name for name in self.names[index]]
        return self.folder / self.names[index]


@dataclass(frozen=True)
class KeypointMap:
    """The per-axis affine map source pixels -> output pixels: ``k * scale + offset``."""
    scale: Tuple[float, float]
    offset: Tuple[float, float]

    @classmethod
    def from_box(cls, box: Box, imwidth: int) -> "KeypointMap":
        """The map of cutting ``box`` and resizing it to ``imwidth`` x ``imwidth``."""
        left, top, right, bottom = box
        scale = (imwidth / (right - left), imwidth / (bottom - top))
        return cls(scale, (-left * scale[0], -top * scale[1]))

    def __call__(self, keypoints: np.ndarray) -> np.ndarray:
        """(K, 2) source (x, y) -> (K, 2) float32 output (x, y)."""
        return (keypoints * np.array(self.scale) + np.array(self.offset)).astype(np.float32)


def box_around(points: np.ndarray, margin: float, size: Tuple[int, int]) -> Box:
    """The square box centred on the points' bounding box, of side (1 + 2 margin) times its
    longer side (at least 2 pixels); it may leave the image (zero padding)."""
    finite = points[np.isfinite(points).all(axis=1)]
    if len(finite) == 0:
        return 0, 0, size[0], size[1]
    low, high = finite.min(axis=0), finite.max(axis=0)
    centre = (low + high) / 2
    side = max(2, int(math.ceil((1 + 2 * margin) * float((high - low).max()))))
    left = int(math.floor(centre[0] - side / 2))
    top = int(math.floor(centre[1] - side / 2))
    return left, top, left + side, top + side


class LandmarkImageDataset(Dataset):
    """Images with optional keypoints, resized to ``imwidth`` x ``imwidth``.

    Args:
        root: dataset root folder.
        train: training split if True, else the evaluation split.
        imwidth: side of the square image returned.
        crop: margin removed on every side after warping (used by the device pipeline).
        use_keypoints: return ``keypts`` with every item.
        do_augmentations: photometric augmentation (applied by the device pipeline).
    """

    eye_indices: Optional[Tuple[int, int]] = (0, 1)  # the inter-ocular error's pair
    fetch_hint: str = "python misc/sync_datasets.py --dataset <name>"
    has_keypoints: bool = True  # False for datasets without annotations (ImageFolder)

    def __init__(self, root, train: bool = True, imwidth: int = 100, crop: int = 0,
                 use_keypoints: bool = False, do_augmentations: bool = False):
        if imwidth <= 2 * crop:
            raise ValueError(f"imwidth ({imwidth}) must exceed 2 * crop ({crop})")
        self.root = Path(root)
        self.train = train
        self.imwidth = imwidth
        self.crop = crop
        self.use_keypoints = use_keypoints
        self.do_augmentations = do_augmentations
        self.image_paths: Sequence[Path] = []
        self.keypoints: Optional[np.ndarray] = None  # (N, K, 2) source pixels

    @classmethod
    def missing_data_remedy(cls, root=None) -> str:
        """What a user does about a missing file of this dataset (kept at ``root``)."""
        return f"fetch the dataset with: {cls.fetch_hint}"

    @property
    def remedy(self) -> str:
        """``missing_data_remedy`` for this dataset's root."""
        return self.missing_data_remedy(self.root)

    @property
    def repair_remedy(self) -> str:
        """What a user does about a file of this dataset that is there but unreadable."""
        return f"re-fetch the dataset with: {self.fetch_hint} --refresh"

    def require(self, path: Path) -> Path:
        """``path`` if it exists, else a ``MissingDataError`` naming it and the remedy."""
        if not path.exists():
            raise MissingDataError(f"{path} not found; {self.remedy}")
        return path

    def __len__(self) -> int:
        return len(self.image_paths)

    def source_box(self, index: int, size: Tuple[int, int]) -> Box:
        """The region of the source image (width, height = ``size``) that becomes the output."""
        return 0, 0, size[0], size[1]

    def render(self, index: int, image: Image.Image) -> Tuple[Image.Image, KeypointMap]:
        """The ``imwidth`` square made from the source ``image`` and the keypoint map that
        goes with it: cut ``source_box`` (zero padding outside the image), resize bilinear."""
        box = tuple(int(v) for v in self.source_box(index, image.size))
        square = image.crop(box).resize((self.imwidth, self.imwidth), Image.BILINEAR)
        return square, KeypointMap.from_box(box, self.imwidth)

    def open_image(self, index: int) -> Image.Image:
        """Image ``index`` upright (its EXIF orientation applied, as viewers show it: the
        frame keypoints are given in) and as 8-bit RGB (``base.image_modes.viewer_rgb``).

        Raises ``MissingDataError`` (file absent) or ``ImageReadError`` (truncated, not an
        image, ...) naming the file, its index and what to do.
        """
        path = self.image_paths[index]
        try:
            with Image.open(path) as image:
                image.load()  # a truncated file fails here (LOAD_TRUNCATED_IMAGES unset)
                upright = ImageOps.exif_transpose(image)
        except FileNotFoundError:
            raise MissingDataError(f"image {path} (index {index}) not found; "
                                   f"{self.remedy}") from None
        except IMAGE_DECODE_ERRORS as err:
            reason = "not an image format Pillow reads" \
                if isinstance(err, UnidentifiedImageError) else one_line(err)
            raise ImageReadError(f"image {path} (index {index}) cannot be decoded ({reason}); "
                                 f"{self.repair_remedy}") from None
        return viewer_rgb(upright)

    def __getitem__(self, index: int) -> dict:
        square, keypoint_map = self.render(index, self.open_image(index))
        item = {"data": torch.from_numpy(np.array(square)).permute(2, 0, 1).contiguous(),
                "index": index}
        if self.use_keypoints:
            if self.keypoints is None:
                raise ValueError(f"{type(self).__name__} has no keypoint annotations; "
                                 f"set dataset.args.use_keypoints to false")
            item["keypts"] = torch.from_numpy(keypoint_map(self.keypoints[index]))
        return item


class TrainTestDataset(LandmarkImageDataset):
    """A dataset with a training list and a test list. With ``use_minival`` the validation
    split (``train=False``) is the last 10% of the training list and training keeps the
    first 90%; otherwise validation is the test list."""

    def __init__(self, root, train: bool = True, imwidth: int = 100, crop: int = 0,
                 use_keypoints: bool = False, do_augmentations: bool = False,
                 use_minival: bool = False):
        super().__init__(root, train, imwidth, crop, use_keypoints, do_augmentations)
        self.use_minival = use_minival

    @property
    def reads_train_list(self) -> bool:
        """Whether this split is drawn from the training list."""
        return self.train or self.use_minival

    def minival_choice(self, count: int) -> slice:
        """The items of this split among the ``count`` items of its list: all of them, or
        with ``use_minival`` the first 90% for training and the last 10% for validation."""
        if not self.use_minival:
            return slice(None)
        num_val = int(count * MINIVAL_FRACTION)
        return slice(0, count - num_val) if self.train else slice(count - num_val, count)

    def keep_split(self, folder: Path, names: List[str], keypoints: np.ndarray) -> slice:
        """Set ``names``, ``image_paths`` (``folder / name``) and ``keypoints`` to this
        split's items of the list read; returns their slice, for other per-image arrays."""
        chosen = self.minival_choice(len(names))
        self.names = names[chosen]
        self.image_paths = [folder / name for name in self.names]
        self.keypoints = keypoints[chosen]
        return chosen
