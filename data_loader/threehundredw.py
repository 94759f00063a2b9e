"""300-W, 68 landmarks (the original code's ``ThreeHundredW``; SPEC section 5)."""
import math
from pathlib import Path
from typing import List, Tuple

import numpy as np
from PIL import Image

from base.base_dataset import AnnotationError, KeypointMap, TrainTestDataset, read_mat, read_pts
from data_loader.registry import DATASETS

NUM_POINTS = 68
# (bounding-box file suffix, image folder), in reading order
TRAIN_SUBSETS = (("afw", "afw"), ("helen_trainset", "helen/trainset"),
                 ("lfpw_trainset", "lfpw/trainset"))
TEST_SUBSETS = (("helen_testset", "helen/testset"), ("lfpw_testset", "lfpw/testset"),
                ("ibug", "ibug"))
FACE_WIDTH = 52  # the box width after the first (nearest) resize
WINDOW = 100  # side of the window cut around the box centre
WINDOW_LEFT, WINDOW_TOP = 50, 52  # window origin relative to the scaled box centre


def _text(value) -> str:
    return str(np.asarray(value).ravel()[0])


def read_bounding_boxes(path: Path) -> List[Tuple[str, np.ndarray]]:
    """``bounding_boxes_*.mat`` (struct array ``bounding_boxes`` with ``imgName`` and
    ``bb_ground_truth`` [xmin ymin xmax ymax]) -> [(image name, (4,) float64)] in order."""
    mat = read_mat(path)
    structs = mat.get("bounding_boxes")
    names = getattr(getattr(structs, "dtype", None), "names", None) or ()
    if "imgName" not in names or "bb_ground_truth" not in names:
        raise AnnotationError(f"{path}: expected a struct array 'bounding_boxes' with fields "
                              f"imgName and bb_ground_truth")
    entries = []
    for number, entry in enumerate(structs.ravel(), start=1):
        box = np.asarray(entry["bb_ground_truth"], dtype=np.float64).ravel()
        if box.shape != (4,):
            raise AnnotationError(f"{path}: bounding_boxes({number}).bb_ground_truth has "
                                  f"{box.size} values, expected 4 (xmin ymin xmax ymax)")
        entries.append((_text(entry["imgName"]), box))
    return entries


@DATASETS.register
class ThreeHundredW(TrainTestDataset):
    """300-W: 3,148 training faces (AFW, HELEN and LFPW train) and 689 test faces (HELEN
    and LFPW test, iBUG), 68 points.

    Layout under ``root``: ``Bounding Boxes/bounding_boxes_<subset>.mat`` and, beside each
    image of ``afw/``, ``helen/{trainset,testset}/``, ``lfpw/{trainset,testset}/`` and
    ``ibug/``, an iBUG ``.pts`` file (1-based). Of the iBUG boxes only images whose name
    starts with "image" are used. Geometry (the original's, bit for bit): the image is
    resized by f = 52 / box width with nearest-neighbour sampling, a 100 x 100 window
    around the scaled box centre is cut (zero padding), then resized bilinear to
    ``imwidth``; keypoints become ``(f k - window origin - 1) * imwidth / 100``.

    Args: see ``TrainTestDataset`` (``use_minival``) and ``LandmarkImageDataset``.
    """

    eye_indices = (36, 45)  # outer eye corners
    fetch_hint = "python misc/sync_datasets.py --dataset 300w"

    def __init__(self, root="data/300w/300w", train=True, imwidth=100, crop=15,
                 use_keypoints=False, do_augmentations=True, use_minival=False):
        super().__init__(root, train, imwidth, crop, use_keypoints, do_augmentations,
                         use_minival)
        names, boxes, keypoints = [], [], []
        for subset, folder in (TRAIN_SUBSETS if self.reads_train_list else TEST_SUBSETS):
            mat_path = self.require(self.root / "Bounding Boxes" / f"bounding_boxes_{subset}.mat")
            for image_name, box in read_bounding_boxes(mat_path):
                if subset == "ibug" and not image_name.startswith("image"):
                    continue  # the iBUG boxes also list images the release does not hold
                name = f"{folder}/{image_name}"
                pts_path = self.require(self.root / Path(name).with_suffix(".pts"))
                points = read_pts(pts_path)
                if points.shape != (NUM_POINTS, 2):
                    raise AnnotationError(f"{pts_path}: {len(points)} points, expected {NUM_POINTS}")
                names.append(name)
                boxes.append(box)
                keypoints.append(points)
        chosen = self.keep_split(self.root, names,
                                 np.array(keypoints, dtype=np.float32).reshape(-1, NUM_POINTS, 2))
        self.boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)[chosen]

    def render(self, index, image):
        xmin, ymin, xmax, ymax = self.boxes[index]
        box_width, box_height = xmax - xmin + 1, ymax - ymin + 1
        centre_x, centre_y = xmin + (box_width + 1) / 2, ymin + (box_height + 1) / 2
        factor = FACE_WIDTH / box_width
        scaled = image.resize((int(image.width * factor), int(image.height * factor)),
                              Image.NEAREST)  # Pillow 6.1's default filter
        left = math.floor(factor * centre_x) - WINDOW_LEFT
        top = math.floor(factor * centre_y) - WINDOW_TOP
        window = scaled.crop((left, top, left + WINDOW, top + WINDOW))  # zero padding outside
        square = window.resize((self.imwidth, self.imwidth), Image.BILINEAR)
        scale = self.imwidth / WINDOW
        return square, KeypointMap((factor * scale, factor * scale),
                                   ((-left - 1) * scale, (-top - 1) * scale))
