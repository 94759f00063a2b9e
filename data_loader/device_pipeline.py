"""Batched, on-device preparation of loader batches: warps, crop, photometric noise.

The loader only decodes, crops the source box and resizes; everything random happens
here, on the training device, for the whole batch at once.
"""
from typing import Optional

import torch

from data_loader.photometric import PhotometricAugmentation, training_augmentation
from utils.image_normalization import normalize_images


def interleave(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(B, ...) and (B, ...) -> (2B, ...) ordered first[0], second[0], first[1], ..."""
    return torch.stack([first, second], dim=1).flatten(0, 1)


class PairPipeline:
    """Turns a loader batch into interleaved warped pairs, for embedding learning and for
    the matching evaluation alike.

    The result is ``{"data": (2B, 3, h, w) normalized images, pairs interleaved, "meta":
    {"grid": (B, h, w, 2) normalized correspondence, "index", "frame": (h, w) pixels of
    the cropped images, "crop": the margin removed, and with loader keypoints "keypts":
    (2B, K, 2) pixels of the cropped frame, interleaved like the images}}``.

    Args:
        warper: a ``Warper`` (pairs with their dense correspondence grid).
        crop: margin removed on every side after warping.
        augment: photometric augmentation applied to every image after warping, or None.
    """

    def __init__(self, warper, crop: int, augment: Optional[PhotometricAugmentation] = None):
        self.warper = warper
        self.crop = crop
        self.augment = augment

    def __call__(self, batch: dict, device: torch.device,
                 generator: Optional[torch.Generator] = None) -> dict:
        images = batch["data"].to(device, non_blocking=True).float()  # (B, 3, H, W) 0..255
        keypts = batch.get("keypts")
        if keypts is not None:
            keypts = keypts.to(device)
        pair = self.warper(images, keypts=keypts, crop=self.crop, generator=generator)
        images01 = interleave(pair.first, pair.second) / 255.0  # (2B, 3, h, w)
        if self.augment is not None:
            images01 = self.augment(images01, generator=generator)
        meta = {"grid": pair.grid, "index": batch["index"],  # grid (B, h, w, 2)
                "frame": tuple(images01.shape[-2:]), "crop": self.crop}
        if keypts is not None:
            meta["keypts"] = interleave(pair.keypts_first, pair.keypts_second)  # (2B, K, 2)
        return {"data": normalize_images(images01), "meta": meta}


def build_pair_pipeline(warper, crop: int, do_augmentations: bool, train: bool) -> PairPipeline:
    """Pairs cropped by ``crop`` pixels a side; photometric augmentation for training
    batches when ``do_augmentations`` (the config's ``dataset.args``)."""
    return PairPipeline(warper, crop=crop, augment=training_augmentation(do_augmentations, train))
