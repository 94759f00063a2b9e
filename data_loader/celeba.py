"""CelebA and MAFL, aligned faces (SPEC section 5)."""
from pathlib import Path
from typing import Tuple

import numpy as np
import pandas as pd

from base.base_dataset import LandmarkImageDataset, require_file
from data_loader.registry import DATASETS

CELEBA_SIZE = (178, 218)
CROP_TOP = 30  # rows 30..207: the 178x178 square


def read_landmarks(path: Path) -> Tuple[list, np.ndarray]:
    """``list_landmarks_align_celeba.txt`` -> (names, (N, 5, 2) float pixels)."""
    table = pd.read_csv(path, sep=r"\s+", skiprows=2, header=None)
    if table.shape[1] != 11:
        raise ValueError(f"{path}: expected 11 columns (name and 5 x,y pairs), "
                         f"found {table.shape[1]}")
    names = table[0].astype(str).tolist()
    return names, table.iloc[:, 1:].to_numpy(np.float32).reshape(-1, 5, 2)


def read_partition(path: Path) -> dict:
    """``list_eval_partition.txt`` -> {name: split} (0 train, 1 val, 2 test)."""
    table = pd.read_csv(path, sep=r"\s+", header=None, names=["name", "split"])
    return dict(zip(table["name"].astype(str), table["split"].astype(int)))


def read_names(path: Path) -> set:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


class CelebAAligned(LandmarkImageDataset):
    """Common reading of the CelebA layout; subclasses choose the image subset."""

    fetch_hint = "python misc/sync_datasets.py --dataset celeba"

    def __init__(self, root="data/celeba", train=True, imwidth=100, crop=18,
                 use_keypoints=False, do_augmentations=True, use_hq_ims=True):
        super().__init__(root, train, imwidth, crop, use_keypoints, do_augmentations)
        self.use_hq_ims = use_hq_ims
        image_dir = self.root / "Img" / ("img_align_celeba_hq" if use_hq_ims else "img_align_celeba")
        require_file(image_dir, self.fetch_hint)
        anno = require_file(self.root / "Anno" / "list_landmarks_align_celeba.txt", self.fetch_hint)
        names, keypoints = read_landmarks(anno)
        partition = read_partition(require_file(
            self.root / "Eval" / "list_eval_partition.txt", self.fetch_hint))
        mafl_train = read_names(require_file(self.root / "MAFL" / "training.txt", self.fetch_hint))
        mafl_test = read_names(require_file(self.root / "MAFL" / "testing.txt", self.fetch_hint))
        order = sorted(range(len(names)), key=lambda i: names[i])  # partition order
        selected = [i for i in order if self.keep(names[i], partition.get(names[i]),
                                                  mafl_train, mafl_test)]
        selected = self.limit(selected)
        self.names = [names[i] for i in selected]
        self.image_paths = [image_dir / name for name in self.names]
        self.keypoints = keypoints[selected]

    def keep(self, name: str, split, mafl_train: set, mafl_test: set) -> bool:
        raise NotImplementedError

    def limit(self, selected: list) -> list:
        return selected

    def source_box(self, index, size):
        return 0.0, float(CROP_TOP), float(CELEBA_SIZE[0]), float(CROP_TOP + CELEBA_SIZE[0])


@DATASETS.register
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


@DATASETS.register
class MAFLAligned(CelebAAligned):
    """MAFL: train = MAFL training (19,000), test = MAFL testing (1,000), partition order."""

    def keep(self, name, split, mafl_train, mafl_test):
        return name in (mafl_train if self.train else mafl_test)
