"""The two augmented views per image of MoCo pre-training (SPEC-contrastive section 2).

The original ran, per PIL image and per view, independently: JPEG noise, torchvision's
``RandomResizedCrop(W, scale=(0.2, 1.0))``, ``ColorJitter(0.4, 0.4, 0.4)``, ``ToTensor``,
PCA lighting, ``Normalize`` (face constants), and then cut ``crop`` pixels from every
side of the normalized tensor (136 px -> 96 px). Here every step runs batched on the
images' device, each view with its own draws from one ``torch.Generator``:

* JPEG noise: ``data_loader.photometric.jpeg_noise`` (libjpeg's lossy steps in float;
  per-image side r and quality: every image is resized into a shared canvas of side
  max(r) rounded up to 16, edge-replicated beyond its own r x r, so that it codes as if
  alone).
* RandomResizedCrop: torchvision's box rule (10 attempts, then the centre-crop fallback)
  with the uniform draws taken from the generator; the box is resized to W x W
  bilinearly (align_corners=False with edge clamping, which is what Pillow's bilinear
  upscaling computes: a box is never larger than the image) and rounded to integer
  levels, as the original's PIL images were uint8 (Pillow rounds after each of its two
  separable passes, this once: results may differ by one level).
* ColorJitter (PIL ``ImageEnhance`` semantics on integer levels, random order, no hue)
  and PCA lighting: ``data_loader.photometric.PhotometricAugmentation`` without its JPEG
  step.
"""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from data_loader.photometric import PhotometricAugmentation, jpeg_noise, resample_bilinear
from data_loader.warper import crop_images
from utils.image_normalization import normalize_images

CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop.get_params


def random_resized_crop_boxes(n: int, height: int, width: int,
                              scale: Tuple[float, float], ratio: Tuple[float, float],
                              generator: Optional[torch.Generator],
                              device: torch.device) -> Tensor:
    """torchvision's ``RandomResizedCrop.get_params`` for ``n`` images of height x width.

    Per image and attempt (10): area fraction s = scale[0] + u1 (scale[1] - scale[0]),
    aspect a = exp(log ratio[0] + u2 (log ratio[1] - log ratio[0])), box
    w = round(sqrt(s H W a)), h = round(sqrt(s H W / a)) (half to even); the first
    attempt with 0 < w <= W and 0 < h <= H is taken, with top = floor(u3 (H - h + 1)),
    left = floor(u4 (W - w + 1)) (``random.randint(0, H - h)``). Without one: the centre
    crop of the whole image clipped to the ratio range. Draws, in float64 from
    ``generator`` in this order: u1 (n, 10), u2 (n, 10), (u3, u4) (n, 2).

    Returns:
        (n, 4) long: top, left, h, w in pixels of the input frame.
    """
    options = dict(generator=generator, device=device, dtype=torch.float64)
    u_scale = torch.rand(n, CROP_ATTEMPTS, **options)
    u_ratio = torch.rand(n, CROP_ATTEMPTS, **options)
    u_position = torch.rand(n, 2, **options)
    target_area = (scale[0] + u_scale * (scale[1] - scale[0])) * (height * width)
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + u_ratio * (log_high - log_low))
    box_w = torch.round(torch.sqrt(target_area * aspect)).long()  # (n, 10)
    box_h = torch.round(torch.sqrt(target_area / aspect)).long()
    fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
    first = fits.long().argmax(dim=1, keepdim=True)  # first fitting attempt (0 if none)
    found = fits.any(dim=1)
    fallback_h, fallback_w = _centre_box(height, width, ratio)
    box_h = torch.where(found, box_h.gather(1, first)[:, 0], fallback_h)  # (n,)
    box_w = torch.where(found, box_w.gather(1, first)[:, 0], fallback_w)
    top = torch.where(found, torch.floor(u_position[:, 0] * (height - box_h + 1)).long(),
                      (height - box_h) // 2)
    left = torch.where(found, torch.floor(u_position[:, 1] * (width - box_w + 1)).long(),
                       (width - box_w) // 2)
    return torch.stack([top, left, box_h, box_w], dim=1)


def _centre_box(height: int, width: int, ratio: Tuple[float, float]) -> Tuple[int, int]:
    """(h, w) of torchvision's fallback: the whole image, clipped to the ratio range."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def resized_crop(images255: Tensor, boxes: Tensor) -> Tensor:
    """Cut each image's box and resize it to the input size, bilinear, rounded to levels.

    Args:
        images255: (N, C, H, W) 0..255.
        boxes: (N, 4) long top, left, h, w (inside the image).
    Returns:
        (N, C, H, W) float32 integer levels.
    """
    n, c, height, width = images255.shape
    boxes = boxes.to(images255.device)
    rows = (boxes[:, :1] + torch.arange(height, device=boxes.device)).clamp(max=height - 1)
    cols = (boxes[:, 1:2] + torch.arange(width, device=boxes.device)).clamp(max=width - 1)
    moved = images255.gather(2, rows[:, None, :, None].expand(n, c, height, width))
    moved = moved.gather(3, cols[:, None, None, :].expand(n, c, height, width))  # box at (0, 0)
    size = torch.tensor([height, width], device=boxes.device)
    resized = resample_bilinear(moved, (height, width), boxes[:, 2:] / size, boxes[:, 2:])
    return resized.round().clamp(0, 255)


class ContrastiveViews:
    """Two independently augmented views of every image (SPEC-contrastive section 2).

    Args:
        crop: pixels cut from every side after normalisation (20: 136 -> 96 px).
        scale, ratio: RandomResizedCrop's area-fraction and aspect ranges.
        jitter: ColorJitter's brightness, contrast and saturation (factors in
            [max(0, 1 - j), 1 + j]); hue is not jittered.
        lighting_std: standard deviation of the PCA lighting coefficients alpha.
    """

    def __init__(self, crop: int, scale: Tuple[float, float] = (0.2, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3), jitter: float = 0.4,
                 lighting_std: float = 0.1):
        if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ContrastiveViews: scale {scale} must lie in (0, 1] and ratio "
                             f"{ratio} be positive, each as (low, high)")
        self.crop, self.scale, self.ratio = crop, tuple(scale), tuple(ratio)
        self.photometric = PhotometricAugmentation(
            jpeg_noise=False, brightness=jitter, contrast=jitter, saturation=jitter,
            lighting_std=lighting_std)

    def augment(self, images255: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        """One view of each image: (N, 3, H, W) 0..255 -> (N, 3, H - 2 crop, W - 2 crop)
        float32, normalized. Draws from ``generator``: JPEG side and quality, crop box,
        jitter factors and order, lighting."""
        n, _, height, width = images255.shape
        device = images255.device
        z = torch.randn(n, generator=generator, device=device)
        sizes = torch.maximum(torch.full_like(z, int(0.8 * width)),
                              torch.trunc(width * (1 + 0.5 * z))).long()  # side r, pixels
        quality = torch.randint(30, 99, (n,), generator=generator, device=device)
        images = jpeg_noise(images255.float(), sizes, quality)
        boxes = random_resized_crop_boxes(n, height, width, self.scale, self.ratio, generator,
                                          device)
        images01 = resized_crop(images, boxes) / 255.0  # ToTensor
        images01 = self.photometric(images01, generator)  # jitter, lighting
        return crop_images(normalize_images(images01), self.crop)

    def __call__(self, images: Tensor, generator: Optional[torch.Generator]
                 ) -> Tuple[Tensor, Tensor]:
        """(B, 3, H, W) uint8 (or 0..255 float) -> (queries, keys), each
        (B, 3, H - 2 crop, W - 2 crop) normalized: two views of every image, all 2B
        drawn independently (queries first)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"ContrastiveViews expects (B, 3, H, W) images, got "
                             f"{tuple(images.shape)}")
        views = self.augment(torch.cat([images, images]).float(), generator)  # (2B, 3, h, w)
        return views.chunk(2)
