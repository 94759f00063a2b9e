"""Shared base of the face datasets: decoding, cropping, resizing and keypoint geometry.

A dataset item is a dict with ``data`` (3, imwidth, imwidth) uint8, ``index`` and, when
``use_keypoints``, ``keypts`` (K, 2) float32 (x, y) pixels of that resized image. Warps,
the ``crop`` margin and photometric augmentation happen later, batched on the device
(``data_loader.device_pipeline``); a subclass only parses its index files and says which
source box each image is cut from.
"""
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

Box = Tuple[float, float, float, float]  # left, top, right, bottom in source pixels


class MissingDataError(FileNotFoundError):
    """A dataset file is absent; the message names it and the command that fetches it."""


def require_file(path: Path, fetch_hint: str) -> Path:
    if not path.exists():
        raise MissingDataError(f"{path} not found; fetch the dataset with: {fetch_hint}")
    return path


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

    eye_indices: Tuple[int, int] = (0, 1)
    fetch_hint: str = "python misc/sync_datasets.py --dataset <name>"

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
        self.image_paths: List[Path] = []
        self.keypoints: Optional[np.ndarray] = None  # (N, K, 2) source pixels

    def __len__(self) -> int:
        return len(self.image_paths)

    def source_box(self, index: int, size: Tuple[int, int]) -> Box:
        """The region of the source image (width, height = ``size``) that becomes the output."""
        return 0.0, 0.0, float(size[0]), float(size[1])

    def open_image(self, index: int) -> Image.Image:
        path = self.image_paths[index]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except FileNotFoundError:
            raise MissingDataError(f"image {path} (index {index}) not found; fetch the "
                                   f"dataset with: {self.fetch_hint}") from None
        except (UnidentifiedImageError, OSError) as err:
            raise OSError(f"image {path} (index {index}) is unreadable or truncated: {err}; "
                          f"re-fetch the dataset with: {self.fetch_hint}") from None

    def transform_keypoints(self, keypoints: np.ndarray, box: Box) -> np.ndarray:
        """Source pixels -> pixels of the ``imwidth`` output cut from ``box``."""
        left, top, right, bottom = box
        scale = np.array([self.imwidth / (right - left), self.imwidth / (bottom - top)])
        return ((keypoints - np.array([left, top])) * scale).astype(np.float32)

    def __getitem__(self, index: int) -> dict:
        image = self.open_image(index)
        box = self.source_box(index, image.size)
        image = image.crop(tuple(int(round(v)) for v in box)).resize(
            (self.imwidth, self.imwidth), Image.BILINEAR)
        item = {"data": torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous(),
                "index": index}
        if self.use_keypoints:
            if self.keypoints is None:
                raise ValueError(f"{type(self).__name__} has no keypoint annotations")
            item["keypts"] = torch.from_numpy(self.transform_keypoints(self.keypoints[index], box))
        return item


def select_in_order(names: Sequence[str], keep: set) -> np.ndarray:
    """Indices of ``names`` that are in ``keep``, in the order of ``names``."""
    return np.array([i for i, name in enumerate(names) if name in keep], dtype=np.int64)
