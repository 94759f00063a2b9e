"""CelebA and MAFL, aligned faces (SPEC section 5)."""
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from base.base_dataset import (AnnotationError, Box, JoinedPaths, LandmarkImageDataset,
                               read_name_list, read_table)
from data_loader.synthetic import is_synthetic_root, synthetic_data_remedy

CELEBA_WIDTH = 178
CROP_TOP = 30  # rows 30..207: the 178x178 square
LANDMARK_HEADER_LINES = 2  # the count, then the column names


def read_landmarks(path: Path) -> Tuple[List[str], np.ndarray]:
    """``list_landmarks_align_celeba.txt`` -> (names, (N, 5, 2) float32 pixels)."""
    table = read_table(path, columns=11, skip=LANDMARK_HEADER_LINES)
    return table[0].tolist(), table.iloc[:, 1:].to_numpy(np.float32).reshape(-1, 5, 2)


def read_partition(path: Path) -> List[Tuple[str, int]]:
    """``list_eval_partition.txt`` -> [(name, split)] in file order (0 train, 1 val, 2 test)."""
    table = read_table(path, columns=2)
    return list(zip(table[0].tolist(), table[1].astype(np.int64).tolist()))


def check_known(names, known: Dict[str, int], path: Path, other: Path) -> None:
    for line, name in enumerate(names, start=1):
        if name not in known:
            raise AnnotationError(f"{path}:{line}: image {name} is not listed in {other}; "
                                  f"the annotation files do not match, re-fetch the dataset")


class CelebAAligned(LandmarkImageDataset):
    """Common reading of the CelebA layout; subclasses choose the image subset, kept in
    the order of ``Eval/list_eval_partition.txt`` (ascending file name)."""

    eye_indices = (0, 1)
    fetch_hint = "python misc/sync_datasets.py --dataset celeba"

    def __init__(self, root="data/celeba", train=True, imwidth=100, crop=18,
                 use_keypoints=False, do_augmentations=True, use_hq_ims=True):
        super().__init__(root, train, imwidth, crop, use_keypoints, do_augmentations)
        self.use_hq_ims = use_hq_ims
        image_dir = self.require(
            self.root / "Img" / ("img_align_celeba_hq" if use_hq_ims else "img_align_celeba"))
        anno_path = self.require(self.root / "Anno" / "list_landmarks_align_celeba.txt")
        partition_path = self.require(self.root / "Eval" / "list_eval_partition.txt")
        mafl_paths = [self.require(self.root / "MAFL" / f"{name}.txt")
                      for name in ("training", "testing")]
        names, keypoints = read_landmarks(anno_path)
        row_of = {name: row for row, name in enumerate(names)}
        partition = read_partition(partition_path)
        check_known([name for name, _ in partition], row_of, partition_path, anno_path)
        split_of = dict(partition)
        check_known(names, split_of, anno_path, partition_path)
        mafl = []
        for path in mafl_paths:
            listed = read_name_list(path)
            check_known(listed, split_of, path, partition_path)
            mafl.append(set(listed))
        selected = [name for name, split in partition if self.keep(name, split, *mafl)]
        self.names = self.limit(selected)
        self.image_paths = JoinedPaths(image_dir, self.names)
        self.keypoints = keypoints[[row_of[name] for name in self.names]].reshape(-1, 5, 2)

    @classmethod
    def missing_data_remedy(cls, root=None) -> str:
        """The CelebA download, or for the synthetic faces' root the run that writes them."""
        if root is not None and is_synthetic_root(root):
            return synthetic_data_remedy()
        return super().missing_data_remedy(root)

    @property
    def repair_remedy(self) -> str:
        """Re-fetching CelebA, or for the synthetic faces rewriting them."""
        if is_synthetic_root(self.root):
            return synthetic_data_remedy()
        return super().repair_remedy

    def keep(self, name: str, split: int, mafl_train: set, mafl_test: set) -> bool:
        raise NotImplementedError

    def limit(self, selected: list) -> list:
        return selected

    def source_box(self, index, size) -> Box:
        return 0, CROP_TOP, CELEBA_WIDTH, CROP_TOP + CELEBA_WIDTH


class CelebAPrunedAligned_MAFLVal(CelebAAligned):  # noqa: N801 (the original's name)
    """CelebA for embedding learning: train = split 0 minus every MAFL image.

    Args:
        val_split: "celeba" (the first ``val_size`` of split 2 minus MAFL) or "mafl"
            (the MAFL test set).
        val_size: size of the "celeba" validation subset.
        (other arguments: see ``LandmarkImageDataset`` and ``CelebAAligned``.)
    """

    def __init__(self, root="data/celeba", train=True, imwidth=100, crop=18,
                 use_keypoints=False, do_augmentations=True, use_hq_ims=True,
                 val_split="celeba", val_size=2000):
        if val_split not in ("celeba", "mafl"):
            raise ValueError(f"val_split must be 'celeba' or 'mafl', got '{val_split}'")
        self.val_split = val_split
        self.val_size = val_size
        super().__init__(root, train, imwidth, crop, use_keypoints, do_augmentations, use_hq_ims)

    def keep(self, name, split, mafl_train, mafl_test):
        in_mafl = name in mafl_train or name in mafl_test
        if self.train:
            return split == 0 and not in_mafl
        if self.val_split == "mafl":
            return name in mafl_test
        return split == 2 and not in_mafl

    def limit(self, selected):
        if not self.train and self.val_split == "celeba":
            return selected[:self.val_size]
        return selected


class MAFLAligned(CelebAAligned):
    """MAFL: train = MAFL training (19,000), test = MAFL testing (1,000), partition order."""

    def keep(self, name, split, mafl_train, mafl_test):
        return name in (mafl_train if self.train else mafl_test)
