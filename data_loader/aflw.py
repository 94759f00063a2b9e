"""AFLW recropped ("AFLW_R", the original code's ``AFLW``; SPEC section 5)."""
from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image

from base.base_dataset import (AnnotationError, KeypointMap, TrainTestDataset, read_mat,
                               read_name_list)

NUM_POINTS = 5


def read_keypoint_mat(path: Path, count: int, names_path: Path,
                      remedy: str = "re-fetch it") -> Tuple[np.ndarray, np.ndarray]:
    """``aflw_*_keypoints.mat`` -> ((N, 5, 2) float32 (x, y), (N, 2) float64 (h, w)).

    ``gt`` is stored (y, x) and is swapped; ``hw`` holds each image's height and width.
    Raises ``AnnotationError`` (naming the file and ``remedy``) when the file cannot be
    read or its variables are missing, not numeric or not of those shapes.
    """
    mat = read_mat(path, remedy)
    for key in ("gt", "hw"):
        if key not in mat or not np.issubdtype(np.asarray(mat[key]).dtype, np.number):
            raise AnnotationError(f"{path}: no numeric variable '{key}'; expected 'gt' "
                                  f"(N x 5 x 2) and 'hw' (N x 2); {remedy}")
    gt, hw = np.asarray(mat["gt"]), np.asarray(mat["hw"], dtype=np.float64)
    if gt.shape != (count, NUM_POINTS, 2) or hw.shape != (count, 2):
        raise AnnotationError(f"{path}: 'gt' is {gt.shape} and 'hw' {hw.shape}, expected "
                              f"({count}, {NUM_POINTS}, 2) and ({count}, 2) for the {count} "
                              f"images listed in {names_path}")
    return gt[:, :, ::-1].astype(np.float32), hw


class AFLW(TrainTestDataset):
    """AFLW faces recropped by Zhang et al. (CVPR 2018): 10,122 train, 2,991 test, 5 points.

    Layout under ``root``: ``aflw_{train,test}_images.txt`` (image paths relative to
    ``output/``) and ``aflw_{train,test}_keypoints.mat`` (``gt`` (N, 5, 2) stored (y, x),
    ``hw`` (N, 2) height and width). Each image is resized whole to ``imwidth`` x
    ``imwidth``; keypoints are scaled by ``imwidth / (w, h)``.

    Args:
        use_hq_ims: accepted because the original configs pass it; AFLW has one image set.
        (other arguments, ``use_minival`` included: see ``TrainTestDataset``.)
    """

    eye_indices = (0, 1)
    fetch_hint = "python misc/sync_datasets.py --dataset aflw-recrop"

    def __init__(self, root="data/aflw/aflw_release-2", train=True, imwidth=100, crop=0,
                 use_keypoints=False, do_augmentations=False, use_minival=False,
                 use_hq_ims=True):
        super().__init__(root, train, imwidth, crop, use_keypoints, do_augmentations,
                         use_minival)
        self.use_hq_ims = use_hq_ims
        split = "train" if self.reads_train_list else "test"
        names_path = self.require(self.root / f"aflw_{split}_images.txt")
        mat_path = self.require(self.root / f"aflw_{split}_keypoints.mat")
        names = read_name_list(names_path)
        keypoints, sizes = read_keypoint_mat(mat_path, len(names), names_path,
                                             self.repair_remedy)
        chosen = self.keep_split(self.root / "output", names, keypoints)
        self.sizes = sizes[chosen]  # (N, 2) height, width

    def render(self, index, image):
        square = image.resize((self.imwidth, self.imwidth), Image.BILINEAR)
        height, width = self.sizes[index]
        return square, KeypointMap((self.imwidth / width, self.imwidth / height), (0.0, 0.0))
