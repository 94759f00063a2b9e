"""``PtsLandmarks``: your own annotated faces, each image with an iBUG ``.pts`` file beside it."""
from typing import Optional, Sequence, Tuple

import numpy as np

from base.base_dataset import (AnnotationError, Box, MissingDataError, TrainTestDataset,
                               box_around, read_name_list, read_pts, tail_split)
from data_loader.image_folder import find_images


class PtsLandmarks(TrainTestDataset):
    """Images under ``root`` (any depth, any format Pillow reads), each with a ``.pts``
    file of the same stem beside it (iBUG format: ``version: 1``, ``n_points: N``, ``{``,
    N lines ``x y``, ``}``). Every file must hold the same number of points, in the
    same order. Points are pixels of the picture as a viewer shows it: a photo stored
    turned, with an EXIF Orientation tag, is read upright and its points are in that
    upright frame (as annotation tools show and write them).

    Splits: with ``train_list`` and ``test_list`` (text files under ``root``, one image
    path relative to ``root`` per line) those lists, in their order; otherwise every
    image found, sorted by relative path, the last ``test_fraction`` being the test set.

    Geometry: without ``box_margin`` the whole image is resized to ``imwidth`` x
    ``imwidth``; with it, the square centred on the points' bounding box, of side
    (1 + 2 box_margin) times its longer side (zero padding outside the image).

    Args:
        eye_indices: the two point indices (0-based) whose distance normalises the
            inter-ocular error, e.g. [36, 45] for the 68-point iBUG markup; needed for
            landmark regression, not for embedding learning.
        box_margin: None (whole image) or the margin around the points, as a fraction of
            the points' extent.
        train_list, test_list: the split lists (both or neither).
        test_fraction: held-out fraction when there are no lists.
        one_based: the files count pixels from 1 (iBUG convention); False for 0-based.
        (other arguments, ``use_minival`` included: see ``TrainTestDataset``.)
    """

    @classmethod
    def missing_data_remedy(cls, root=None) -> str:
        return "put each image and its .pts file under the dataset root"

    @property
    def repair_remedy(self) -> str:
        return "replace that image, or remove it and its .pts file"

    def __init__(self, root="data/my_landmarks", train=True, imwidth=100, crop=15,
                 use_keypoints=False, do_augmentations=True,
                 eye_indices: Optional[Sequence[int]] = None, box_margin: Optional[float] = None,
                 train_list: Optional[str] = None, test_list: Optional[str] = None,
                 test_fraction: float = 0.2, use_minival: bool = False, one_based: bool = True):
        super().__init__(root, train, imwidth, crop, use_keypoints, do_augmentations,
                         use_minival)
        if not self.root.is_dir():
            raise MissingDataError(f"landmark folder {self.root} not found; set "
                                   f"dataset.args.root to the folder of images and .pts files")
        if (train_list is None) != (test_list is None):
            raise ValueError("PtsLandmarks: give both dataset.args.train_list and "
                             "dataset.args.test_list, or neither (then test_fraction splits)")
        if box_margin is not None and box_margin < 0:
            raise ValueError(f"PtsLandmarks: dataset.args.box_margin must be >= 0, "
                             f"got {box_margin}")
        self.box_margin = box_margin
        if train_list is not None:
            listed = read_name_list(self.require(
                self.root / (train_list if self.reads_train_list else test_list)))
            images = [self.root / name for name in listed]
        else:
            found = find_images(self.root)
            if not found:
                raise MissingDataError(f"no images under {self.root}; set dataset.args.root "
                                       f"to the folder of images and .pts files")
            images = found[tail_split(len(found), test_fraction, self.reads_train_list)]
        images = images[self.minival_choice(len(images))]
        self.image_paths = images
        self.names = [p.relative_to(self.root).as_posix() for p in images]
        self.keypoints = self.read_all_points(images) - (1.0 if one_based else 0.0)
        self._eye_indices = self.check_eye_indices(eye_indices)

    @property
    def eye_indices(self) -> Tuple[int, int]:
        """The configured ``eye_indices``; an error naming the config key when absent."""
        if self._eye_indices is None:
            raise ValueError("PtsLandmarks: set dataset.args.eye_indices to the two points whose "
                             "distance normalises the inter-ocular error (e.g. [36, 45] for "
                             "the 68-point iBUG markup)")
        return self._eye_indices

    def read_all_points(self, images) -> np.ndarray:
        """(N, K, 2) float32 for the ``.pts`` beside each image; K must agree."""
        points, first = [], None
        for image in images:
            pts_path = image.with_suffix(".pts")
            if not pts_path.exists():
                raise MissingDataError(f"{pts_path} not found: every image needs a .pts file "
                                       f"beside it; add it or remove {image}")
            current = read_pts(pts_path)
            if first is None:
                first = (pts_path, len(current))
            elif len(current) != first[1]:
                raise AnnotationError(f"{pts_path}: {len(current)} points, but {first[0]} has "
                                      f"{first[1]}; every file needs the same points")
            points.append(current)
        count = first[1] if first else 0
        return np.array(points, dtype=np.float32).reshape(-1, count, 2)

    def check_eye_indices(self, eye_indices):
        if eye_indices is None:
            return None
        count = self.keypoints.shape[1]
        if len(eye_indices) != 2 or len(set(eye_indices)) != 2 or \
                not all(0 <= int(i) < count for i in eye_indices):
            raise ValueError(f"PtsLandmarks: dataset.args.eye_indices must be two different "
                             f"point indices in [0, {count}), got {list(eye_indices)}")
        return int(eye_indices[0]), int(eye_indices[1])

    def source_box(self, index, size) -> Box:
        if self.box_margin is None:
            return 0, 0, size[0], size[1]
        return box_around(self.keypoints[index], self.box_margin, size)
