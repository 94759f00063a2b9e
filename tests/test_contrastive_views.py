"""The MoCo views (data_loader/contrastive_views.py) against independent computations:
torchvision's RandomResizedCrop rule by hand, Pillow's crop/resize and JPEG codec, and
the order of the steps (SPEC-contrastive section 2)."""
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from data_loader.contrastive_views import (ContrastiveViews, random_resized_crop_boxes,
                                           resized_crop)
from data_loader.photometric import jpeg_noise
from data_loader.synthetic.renderer import synthetic_face

SCALE, RATIO = (0.2, 1.0), (3 / 4, 4 / 3)


def face_136(identity: int) -> Image.Image:
    """A synthetic face as the MoCo dataset gives it: the 178 x 178 square from row 30 of
    the 178 x 218 image, resized to 136 x 136 (SPEC-contrastive section 2)."""
    image, _ = synthetic_face(0, identity, 0)
    return image.crop((0, 30, 178, 208)).resize((136, 136), Image.BILINEAR)


def as_batch(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8


def as_array(images: torch.Tensor) -> np.ndarray:
    return images[0].permute(1, 2, 0).numpy().astype(np.float32)


def boxes_by_hand(uniforms, height, width):
    """torchvision 0.5 RandomResizedCrop.get_params, written out, with the uniforms
    (scale (n, 10), log-ratio (n, 10), position (n, 2)) standing for Python's draws."""
    u_scale, u_ratio, u_position = (u.tolist() for u in uniforms)
    boxes = []
    for i in range(len(u_scale)):
        box = None
        for attempt in range(10):
            target_area = (SCALE[0] + u_scale[i][attempt] * (SCALE[1] - SCALE[0])) * height * width
            low, high = math.log(RATIO[0]), math.log(RATIO[1])
            aspect = math.exp(low + u_ratio[i][attempt] * (high - low))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(u_position[i][0] * (height - h + 1))  # randint(0, height - h)
                left = int(u_position[i][1] * (width - w + 1))
                box = [top, left, h, w]
                break
        boxes.append(box)
    return boxes


def test_crop_boxes_follow_torchvisions_rule():
    n, height, width = 64, 136, 136
    seed = 11
    generator = torch.Generator().manual_seed(seed)
    got = random_resized_crop_boxes(n, height, width, SCALE, RATIO, generator, torch.device("cpu"))
    replay = torch.Generator().manual_seed(seed)
    uniforms = [torch.rand(n, 10, generator=replay, dtype=torch.float64),
                torch.rand(n, 10, generator=replay, dtype=torch.float64),
                torch.rand(n, 2, generator=replay, dtype=torch.float64)]
    expected = boxes_by_hand(uniforms, height, width)
    assert got.tolist() == expected
    # the draws cover the range: small and large boxes, not always the first attempt
    areas = (got[:, 2] * got[:, 3]).float() / (height * width)
    assert areas.min() < 0.35 and areas.max() > 0.85


def test_crop_falls_back_to_the_centre_crop():
    # 10 x 40 image (ratio 4 > 4/3), area fraction >= 0.9: no attempt fits (h > 10), so the
    # fallback: h = 10, w = round(10 * 4/3) = 13, centred: top 0, left (40 - 13) // 2 = 13
    boxes = random_resized_crop_boxes(3, 10, 40, (0.9, 1.0), RATIO,
                                      torch.Generator().manual_seed(0), torch.device("cpu"))
    assert boxes.tolist() == [[0, 13, 10, 13]] * 3


def test_resized_crop_matches_pillow():
    image = face_136(0)
    boxes = torch.tensor([[10, 20, 70, 90], [0, 0, 136, 136], [100, 3, 36, 31]])
    batch = as_batch(image).expand(3, -1, -1, -1).float()
    ours = resized_crop(batch, boxes)
    for i, (top, left, h, w) in enumerate(boxes.tolist()):
        pil = image.crop((left, top, left + w, top + h)).resize((136, 136), Image.BILINEAR)
        difference = np.abs(as_array(ours[i:i + 1]) - np.asarray(pil, dtype=np.float32))
        assert difference.max() <= 1  # Pillow rounds after each separable pass, we once
        assert difference.mean() < 0.3
    assert torch.equal(ours[1], batch[1])  # the whole image at scale 1 is unchanged


def pillow_jpeg_noise(image: Image.Image, side: int, quality: int) -> np.ndarray:
    """The original's JPEGNoise on a PIL image: resize, JPEG round trip, resize back."""
    small = image.resize((side, side), Image.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    coded = Image.open(buffer).convert("RGB")
    return np.asarray(coded.resize(image.size, Image.BILINEAR), dtype=np.float32)


@pytest.mark.parametrize("side,limit", [(136, 0.6), (108, 2.5), (170, 1.2)])
def test_jpeg_noise_step_is_close_to_pillows(side, limit):
    """Mean difference in levels to Pillow's real round trip; at side 136 only the codec
    differs (float DCT), otherwise also Pillow's antialiased bilinear downscaling."""
    for identity in (0, 1):
        image = face_136(identity)
        batch = as_batch(image).float()
        for quality in (30, 60, 95):
            ours = as_array(jpeg_noise(batch, torch.tensor([side]), torch.tensor([quality])))
            error = np.abs(ours - pillow_jpeg_noise(image, side, quality)).mean()
            other = 95 if quality < 60 else 30
            between_qualities = np.abs(pillow_jpeg_noise(image, side, other)
                                       - pillow_jpeg_noise(image, side, quality)).mean()
            assert error < limit
            assert error < 0.5 * between_qualities


def test_views_are_96px_two_per_image_and_seeded():
    images = torch.cat([as_batch(face_136(0)), as_batch(face_136(1))])  # (2, 3, 136, 136)
    views = ContrastiveViews(crop=20)
    queries, keys = views(images, torch.Generator().manual_seed(3))
    assert queries.shape == keys.shape == (2, 3, 96, 96)
    assert queries.dtype == torch.float32 and torch.isfinite(queries).all()
    again_q, again_k = views(images, torch.Generator().manual_seed(3))
    assert torch.equal(queries, again_q) and torch.equal(keys, again_k)
    other_q, _ = views(images, torch.Generator().manual_seed(4))
    assert not torch.equal(queries, other_q)
    for i in range(2):  # two independent views of one image
        assert (queries[i] - keys[i]).abs().mean() > 0.05
    # normalized with the face constants: a 0..255 image ends up around mean 0, std 1
    assert -1.0 < float(queries.mean()) < 1.0 and 0.3 < float(queries.std()) < 2.0


def test_the_crop_is_cut_last_from_the_full_size_view():
    """Cropping 20 px commutes with everything but the geometry of JPEG noise and the
    resized crop: the views with crop 20 are the central 96 px of the views with crop 0
    for the same draws, as when the original cut the normalized 136-px tensor."""
    images = as_batch(face_136(2)).expand(2, -1, -1, -1)
    cropped = ContrastiveViews(crop=20)(images, torch.Generator().manual_seed(5))
    whole = ContrastiveViews(crop=0)(images, torch.Generator().manual_seed(5))
    for part, full in zip(cropped, whole):
        assert full.shape[-2:] == (136, 136)
        assert torch.equal(part, full[:, :, 20:116, 20:116])


def test_views_reject_a_bad_batch():
    with pytest.raises(ValueError, match=r"expects \(B, 3, H, W\)"):
        ContrastiveViews(crop=20)(torch.zeros(3, 136, 136, dtype=torch.uint8), None)
