"""AFLW with the MTFL test crops ("AFLW_M", the original code's ``AFLW_MTFL``; SPEC section 5)."""
import csv
from pathlib import Path
from typing import List, Tuple

import numpy as np
from PIL import Image

from base.base_dataset import (AnnotationError, KeypointMap, TrainTestDataset, one_line,
                               parse_floats, read_numbered_rows, read_text_lines)

NUM_POINTS = 5
SOURCE_SIDE = 150  # the crops are 150 x 150
CSV_KEYPOINT_COLUMNS = slice(4, 14)  # 0-based columns 4..13: x1 y1 ... x5 y5
TRAIN_SET = 1


def read_train_csv(path: Path) -> Tuple[List[str], np.ndarray]:
    """``facedata_cropped.csv`` rows with set == 1 -> (crop files, (N, 5, 2) x, y as written).

    Raises ``AnnotationError`` naming the file (and line) when it is not CSV text or not
    in that layout."""
    reader = csv.reader(read_text_lines(path, "CSV"))
    try:
        rows = list(reader)
    except csv.Error as err:
        raise AnnotationError(f"{path}:{reader.line_num}: not CSV ({one_line(err)}); fix or "
                              f"re-fetch the file") from None
    if not rows:
        raise AnnotationError(f"{path}:1: empty file; expected a header row")
    header = [name.strip() for name in rows[0]]
    for column in ("set", "crop_file"):
        if column not in header:
            raise AnnotationError(f"{path}:1: no '{column}' column in the header "
                                  f"({', '.join(header)})")
    if len(header) < CSV_KEYPOINT_COLUMNS.stop:
        raise AnnotationError(f"{path}:1: expected at least {CSV_KEYPOINT_COLUMNS.stop} "
                              f"columns, found {len(header)}")
    set_column, file_column = header.index("set"), header.index("crop_file")
    files, keypoints = [], []
    for line_number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise AnnotationError(f"{path}:{line_number}: expected {len(header)} columns "
                                  f"like the header, found {len(row)}")
        if parse_floats(path, line_number, [row[set_column]])[0] != TRAIN_SET:
            continue
        files.append(row[file_column].strip())
        keypoints.append(parse_floats(path, line_number, row[CSV_KEYPOINT_COLUMNS]))
    return files, np.array(keypoints, dtype=np.float32).reshape(-1, NUM_POINTS, 2)


def read_test_list(path: Path) -> Tuple[List[str], np.ndarray]:
    """``MTFL/testing.txt`` (path, x1..x5, y1..y5, attributes) -> (paths, (N, 5, 2))."""
    rows = read_numbered_rows(path, min_columns=1 + 2 * NUM_POINTS)
    files = [row[0].replace("\\", "/") for _, row in rows]  # the MTFL lists use Windows paths
    values = [parse_floats(path, number, row[1:1 + 2 * NUM_POINTS]) for number, row in rows]
    coords = np.array(values, dtype=np.float32).reshape(-1, 2, NUM_POINTS)  # (N, xy, 5)
    return files, coords.transpose(0, 2, 1).copy()


class AFLW_MTFL(TrainTestDataset):  # noqa: N801 (the original's name)
    """AFLW training faces with the MTFL test set: 10,122 train, 2,995 test, 5 points.

    Layout under ``root``: ``aflw_cropped/facedata_cropped.csv`` (header row; rows with
    ``set`` == 1 are the training set, images ``aflw_cropped/<crop_file>``, 0-based
    columns 4..13 are x1 y1 ... x5 y5) and ``MTFL/testing.txt`` (path under ``MTFL/``,
    x1..x5, y1..y5, attributes). Keypoints are 1-based on 150 x 150 crops: each image is
    resized to ``imwidth`` and keypoints become ``(k - 1) * imwidth / 150``.

    Args:
        use_hq_ims: accepted because the original configs pass it; there is one image set.
        (other arguments, ``use_minival`` included: see ``TrainTestDataset``.)
    """

    eye_indices = (0, 1)
    fetch_hint = "python misc/sync_datasets.py --dataset aflw-mtfl"

    def __init__(self, root="data/aflw-mtfl", train=True, imwidth=70, crop=0,
                 use_keypoints=False, do_augmentations=True, use_minival=False,
                 use_hq_ims=True):
        super().__init__(root, train, imwidth, crop, use_keypoints, do_augmentations,
                         use_minival)
        self.use_hq_ims = use_hq_ims
        if self.reads_train_list:
            image_dir = self.root / "aflw_cropped"
            files, keypoints = read_train_csv(self.require(image_dir / "facedata_cropped.csv"))
        else:
            image_dir = self.root / "MTFL"
            files, keypoints = read_test_list(self.require(image_dir / "testing.txt"))
        self.keep_split(image_dir, files, keypoints)

    def render(self, index, image):
        square = image.resize((self.imwidth, self.imwidth), Image.BILINEAR)
        scale = self.imwidth / SOURCE_SIDE
        return square, KeypointMap((scale, scale), (-scale, -scale))  # (k - 1) * scale
