"""300-W, 68 landmarks (the original code's ``ThreeHundredW``; SPEC section 5)."""
import math
from pathlib import Path
from typing import List, Tuple

import numpy as np
from PIL import Image

from base.base_dataset import AnnotationError, KeypointMap, TrainTestDataset, read_mat, read_pts

NUM_POINTS = 68
# (bounding-box file suffix, image folder), in reading order
TRAIN_SUBSETS = (("afw", "afw"), ("helen_trainset", "helen/trainset"),
                 ("lfpw_trainset", "lfpw/trainset"))
TEST_SUBSETS = (("helen_testset", "helen/testset"), ("lfpw_testset", "lfpw/testset"),
                ("ibug", "ibug"))
FACE_WIDTH = 52  # the box width after the first (nearest) resize
WINDOW = 100  # side of the window cut around the box centre
WINDOW_LEFT, WINDOW_TOP = 50, 52  # window origin relative to the scaled box centre
BOX_FIELDS = ("imgName", "bb_ground_truth")


def _box_structs(path: Path, boxes) -> List[np.void]:
    """The records of ``bounding_boxes``: a 1 x N cell array of 1 x 1 structs (the 300-W
    release; loadmat gives an object array of (1, 1) struct arrays) or a struct array."""
    def is_struct(value) -> bool:
        names = getattr(getattr(value, "dtype", None), "names", None) or ()
        return all(field in names for field in BOX_FIELDS)

    layout = (f"{path}: expected 'bounding_boxes', a cell array of structs (or a struct "
              f"array) with fields imgName and bb_ground_truth")
    if is_struct(boxes):
        return list(boxes.ravel())
    if not isinstance(boxes, np.ndarray) or boxes.dtype != object:
        raise AnnotationError(layout)
    structs = []
    for number, cell in enumerate(boxes.ravel(), start=1):
        if not is_struct(cell) or cell.size != 1:
            raise AnnotationError(f"{layout}; entry {number} is not one such struct")
        structs.append(cell.ravel()[0])
    return structs


def read_bounding_boxes(path: Path, remedy: str = "re-fetch it") -> List[Tuple[str, np.ndarray]]:
    """``bounding_boxes_*.mat`` (``bounding_boxes``: structs with ``imgName`` and
    ``bb_ground_truth`` [xmin ymin xmax ymax], in either layout of ``_box_structs``) ->
    [(image name, (4,) float64)] in order.

    Raises ``AnnotationError`` naming the file (and entry) when it is unreadable or not
    in that layout."""
    entries = []
    structs = _box_structs(path, read_mat(path, remedy).get("bounding_boxes"))
    for number, entry in enumerate(structs, start=1):
        name = np.asarray(entry["imgName"]).ravel()
        try:
            box = np.asarray(entry["bb_ground_truth"], dtype=np.float64).ravel()
        except (TypeError, ValueError):
            box = np.zeros(0)
        if box.shape != (4,) or name.size != 1:
            raise AnnotationError(f"{path}: entry {number} of bounding_boxes has imgName of "
                                  f"{name.size} and bb_ground_truth of {box.size} numbers, "
                                  f"expected one name and 4 numbers (xmin ymin xmax ymax)")
        entries.append((str(name[0]), box))
    return entries


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
            for image_name, box in read_bounding_boxes(mat_path, self.repair_remedy):
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
