"""Photometric augmentation: each piece against an independent computation (Pillow, numpy)."""
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance

from data_loader.photometric import (
    LIGHTING_EIGVAL, LIGHTING_EIGVEC, PhotometricAugmentation, color_jitter, jpeg_noise,
    jpeg_quant_tables, jpeg_quality_scaling, jpeg_roundtrip, pca_lighting)
from utils.image_normalization import denormalize_images, normalize_images


def smooth_image(h: int = 64, w: int = 64) -> np.ndarray:
    """(h, w, 3) uint8: colour gradients, a disc and a rectangle."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    red = 40 + 150 * xx / w + 30 * np.sin(yy / 7)
    green = 60 + 120 * yy / h
    blue = 200 - 100 * (xx + yy) / (w + h)
    disc = (xx - 0.4 * w) ** 2 + (yy - 0.5 * h) ** 2 < (0.2 * h) ** 2
    red[disc], green[disc], blue[disc] = 230, 80, 50
    box = (xx > 0.6 * w) & (xx < 0.85 * w) & (yy > 0.15 * h) & (yy < 0.4 * h)
    red[box], green[box], blue[box] = 20, 200, 220
    return np.clip(np.stack([red, green, blue], -1), 0, 255).round().astype(np.uint8)


def pillow_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB")).astype(np.float32)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float()  # (1, 3, H, W)


def to_numpy(images: torch.Tensor) -> np.ndarray:
    return images[0].permute(1, 2, 0).numpy()


def ours_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    return to_numpy(jpeg_roundtrip(to_tensor(image), torch.tensor([quality])))


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_quality_scaling_by_hand():
    # q=30: scale 5000 // 30 = 166; luma[0] = 16 -> (16 * 166 + 50) // 100 = 27
    # q=75: scale 200 - 150 = 50; luma[1] = 11 -> (11 * 50 + 50) // 100 = 6
    # q=90: scale 20; chroma[63] = 99 -> (99 * 20 + 50) // 100 = 20
    # q=98: scale 4; luma[2] = 10 -> 90 // 100 = 0, clamped to 1
    quality = torch.tensor([30, 75, 90, 98])
    assert jpeg_quality_scaling(quality).tolist() == [166, 50, 20, 4]
    luma, chroma = jpeg_quant_tables(quality)
    assert luma.shape == chroma.shape == (4, 64)
    assert luma[0, 0] == 27 and luma[1, 1] == 6 and chroma[2, 63] == 20 and luma[3, 2] == 1


@pytest.mark.parametrize("quality", [30, 75])
def test_jpeg_roundtrip_matches_pillow(quality):
    image = smooth_image()
    ours, pil = ours_jpeg(image, quality), pillow_jpeg(image, quality)
    error = mean_abs(ours, pil)
    assert error < 1.0
    # Far below what skipping or mis-scaling the quantization would give.
    assert error < 0.15 * mean_abs(image, pil)
    assert error < 0.15 * mean_abs(pillow_jpeg(image, 30), pillow_jpeg(image, 95))
    other = 95 if quality < 60 else 30
    assert error < 0.15 * mean_abs(ours, pillow_jpeg(image, other))


def test_jpeg_valid_region_codes_the_image_alone():
    image = smooth_image(50, 50)
    canvas = np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    canvas[:50, :50] = image
    coded = jpeg_roundtrip(to_tensor(canvas), torch.tensor([75]), torch.tensor([[50, 50]]))
    coded = to_numpy(coded)[:50, :50]
    np.testing.assert_array_equal(coded, ours_jpeg(image, 75))  # junk beyond is ignored
    assert mean_abs(coded, pillow_jpeg(image, 75)) < 1.0


def test_jpeg_per_image_quality_in_one_batch():
    first = smooth_image()
    second = np.ascontiguousarray(first[::-1, ::-1])
    batch = torch.cat([to_tensor(first), to_tensor(second)])
    coded = jpeg_roundtrip(batch, torch.tensor([30, 90]))
    np.testing.assert_array_equal(to_numpy(coded[:1]), ours_jpeg(first, 30))
    np.testing.assert_array_equal(to_numpy(coded[1:]), ours_jpeg(second, 90))
    assert mean_abs(to_numpy(coded[:1]), pillow_jpeg(first, 30)) < 1.0
    assert mean_abs(to_numpy(coded[1:]), pillow_jpeg(second, 90)) < 1.0


def test_jpeg_noise_batched_equals_per_image_resizes():
    image = to_tensor(smooth_image())
    batch = torch.cat([image, image.flip(3)])
    sizes, quality = torch.tensor([52, 83]), torch.tensor([60, 40])
    out = jpeg_noise(batch, sizes, quality)
    for i in range(2):
        side = int(sizes[i])
        small = F.interpolate(batch[i:i + 1], size=(side, side), mode="bilinear",
                              align_corners=False).round()
        small = jpeg_roundtrip(small, quality[i:i + 1])
        ref = F.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False).round()
        assert (out[i] - ref[0]).abs().mean() < 0.05


def naive_jitter(image: np.ndarray, factors, order) -> np.ndarray:
    """torchvision's float formulas, one image (H, W, 3) in 0..255."""
    def blend(a, b, f):
        return np.clip(f * a + (1 - f) * b, 0, 255)

    def gray(a):
        return 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]

    image = image.astype(np.float64)
    for op in order:
        if op == 0:
            image = blend(image, 0.0, factors[0])
        elif op == 1:
            image = blend(image, gray(image).mean(), factors[1])
        else:
            image = blend(image, gray(image)[..., None], factors[2])
    return image


PERMUTATIONS = torch.tensor([[0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1]])


def jitter_inputs():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 12, 16, 3)).astype(np.uint8)
    images[1] = images[1] // 3 + 100
    factors = torch.tensor(rng.uniform(0.6, 1.4, (4, 3)), dtype=torch.float32)
    return images, factors


def test_color_jitter_float_matches_naive_formulas():
    images, factors = jitter_inputs()
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    out = color_jitter(batch, factors, PERMUTATIONS, quantize=False).permute(0, 2, 3, 1)
    for i in range(4):
        ref = naive_jitter(images[i], factors[i].double().numpy(), PERMUTATIONS[i].tolist())
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-3)


def test_color_jitter_quantized_matches_pil_image_enhance():
    enhancers = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]
    images, factors = jitter_inputs()
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    out = color_jitter(batch, factors, PERMUTATIONS).permute(0, 2, 3, 1).numpy()
    for i in range(4):
        image = Image.fromarray(images[i])
        for op in PERMUTATIONS[i].tolist():
            image = enhancers[op](image).enhance(float(factors[i, op]))
        np.testing.assert_array_equal(out[i], np.asarray(image).astype(np.float32))


def test_pca_lighting_naive_formula():
    images = torch.rand(2, 3, 5, 6)
    alpha = torch.tensor([[0.1, -0.2, 0.05], [-0.3, 0.0, 0.2]])
    eigvec, eigval = np.array(LIGHTING_EIGVEC), np.array(LIGHTING_EIGVAL)
    out = pca_lighting(images, alpha)
    for i in range(2):
        shift = sum(eigvec[:, k] * eigval[k] * float(alpha[i, k]) for k in range(3))
        ref = images[i].numpy() + shift[:, None, None]
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-6)


def test_augmentation_seeded_per_image_and_preserves_tensor():
    image = to_tensor(smooth_image(40, 40)) / 255
    batch = image.expand(4, 3, 40, 40).double()
    augment = PhotometricAugmentation()
    out_a = augment(batch, generator=torch.Generator().manual_seed(3))
    out_b = augment(batch, generator=torch.Generator().manual_seed(3))
    out_c = augment(batch, generator=torch.Generator().manual_seed(4))
    assert out_a.shape == batch.shape and out_a.dtype == batch.dtype
    assert out_a.device == batch.device and torch.isfinite(out_a).all()
    assert torch.equal(out_a, out_b)
    assert not torch.equal(out_a, out_c)
    for i in range(1, 4):  # same input image, independent draws
        assert (out_a[i] - out_a[0]).abs().mean() > 1e-3
    assert (out_a - batch).abs().mean() < 0.25  # noise, not garbage


def test_augmentation_rejects_bad_arguments():
    with pytest.raises(ValueError, match="brightness must be >= 0"):
        PhotometricAugmentation(brightness=-0.1)
    with pytest.raises(ValueError, match=r"expects \(N, 3, H, W\)"):
        PhotometricAugmentation()(torch.rand(3, 8, 8))


def test_normalize_round_trip():
    images = torch.rand(2, 3, 4, 5)
    normalized = normalize_images(images)
    assert torch.allclose(normalized[:, 0], (images[:, 0] - 0.5084) / 0.2599)
    assert torch.allclose(denormalize_images(normalized), images, atol=1e-6)
