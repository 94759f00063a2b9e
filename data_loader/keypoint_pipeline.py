"""Batched, on-device preparation of annotated images for landmark regression.

Optional ``WarperSingle`` warp (keypoints follow), the ``crop`` margin, optional
photometric augmentation, normalization; keypoints also in normalized coordinates of
the cropped image (SPEC: x_n = 2x / (w - 1) - 1).
"""
from typing import Optional, Sequence

import torch

from data_loader.photometric import PhotometricAugmentation, training_augmentation
from data_loader.warper import crop_images
from utils.image_normalization import normalize_images
from utils.tps import normalize_pixels


class KeypointPipeline:
    """Turns a loader batch (``data`` uint8, ``keypts`` pixels) into regressor inputs.

    Args:
        warper: a ``WarperSingle`` (or None: no warp).
        crop: margin removed on every side.
        eye_indices: (e0, e1) of the dataset, passed on in ``meta``.
        augment: photometric augmentation after the warp, or None.
    """

    def __init__(self, warper, crop: int, eye_indices: Sequence[int],
                 augment: Optional[PhotometricAugmentation] = None):
        self.warper = warper
        self.crop = crop
        self.eye_indices = tuple(eye_indices)
        self.augment = augment

    def __call__(self, batch: dict, device: torch.device,
                 generator: Optional[torch.Generator] = None) -> dict:
        if "keypts" not in batch:
            raise ValueError("landmark regression needs keypoints: set dataset.args.use_keypoints "
                             "to true in the config")
        images = batch["data"].to(device, non_blocking=True).float()  # (B, 3, H, W) 0..255
        keypts = batch["keypts"].to(device).float()  # (B, K, 2) pixels
        if self.warper is not None:
            warped = self.warper(images, keypts=keypts, crop=self.crop, generator=generator)
            images, keypts = warped.images, warped.keypts  # (B, 3, h, w), (B, K, 2)
        else:
            images, keypts = crop_images(images, self.crop), keypts - self.crop
        images01 = images / 255.0
        if self.augment is not None:
            images01 = self.augment(images01, generator=generator)
        height, width = images01.shape[-2:]
        meta = {"keypts": keypts, "keypts_normalized": normalize_pixels(keypts, width, height),
                "eye_indices": self.eye_indices, "index": batch["index"]}
        return {"data": normalize_images(images01), "meta": meta}


def build_keypoint_pipeline(warper, crop: int, eye_indices: Sequence[int],
                            do_augmentations: bool, train: bool,
                            warp_val: bool = True) -> KeypointPipeline:
    """Warps for training (and validation with ``warp_val``) when a warper is configured;
    ``crop`` pixels a side; photometric noise for training batches when
    ``do_augmentations`` (the config's ``dataset.args``); ``eye_indices`` of the dataset
    go into ``meta``."""
    augment = training_augmentation(do_augmentations, train)
    use_warper = warper if (train or warp_val) else None
    return KeypointPipeline(use_warper, crop=crop, eye_indices=eye_indices, augment=augment)
