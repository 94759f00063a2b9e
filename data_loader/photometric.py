"""Photometric augmentation of a whole batch on its own device (SPEC section 4).

The original applied, per PIL image: JPEG noise, torchvision ``ColorJitter(.4, .4, .4)``,
``ToTensor``, AlexNet PCA lighting noise, ``Normalize``. Here the same steps run batched,
with an independent draw per image and all randomness taken from a ``torch.Generator``.

* JPEG noise: the steps of baseline libjpeg up to (lossless) entropy coding: JFIF YCbCr,
  4:2:0 box subsampling, 8x8 DCT, IJG tables scaled by quality, rounding, inverse DCT,
  bilinear ("fancy") chroma upsampling; in float32, not libjpeg's fixed-point integer
  DCT, so not bit-exact (a coefficient near a quantization step boundary can round the
  other way and move its 8x8 block). Against Pillow 13 (libjpeg-turbo) on five synthetic
  64-136 px images: mean absolute difference 0.26-1.12 levels at quality 30, 0.12-1.36
  at 60, 0.26-0.74 at 95, 50-90% of values equal; single pixels up to 11-14 levels on
  smooth images, 53 on blurred noise and 102 on pure noise at quality 30 (51 at 60,
  14 at 95).
* ColorJitter: PIL ``ImageEnhance`` semantics on 0..255 integer levels, which is what
  torchvision ran on PIL images (rounded grayscale, rounded mean, truncating blend).
* PCA lighting on the [0, 1] scale, unclamped as in the original.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

LIGHTING_EIGVAL = (0.2175, 0.0188, 0.0045)
LIGHTING_EIGVEC = (  # rows as written in the original; column k is eigenvector k
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)

# IJG / JPEG Annex K tables in natural (row-major, row = vertical frequency) order.
JPEG_LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)
JPEG_CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32

JITTER_OPS = ("brightness", "contrast", "saturation")  # indices used by ``order``


# ----------------------------------------------------------------------------- resampling

def _axis_grid(out_len: int, in_len: int, scale: torch.Tensor, in_valid: torch.Tensor,
               out_valid: Optional[torch.Tensor]) -> torch.Tensor:
    """Normalized grid_sample coordinates (N, out_len) along one axis.

    Output pixel x reads input pixel (x + 0.5) * scale - 0.5 (F.interpolate with
    align_corners=False), clamped to the image's valid input [0, in_valid - 1]; output
    pixels at or beyond ``out_valid`` repeat the last valid one (edge replication).
    """
    dst = torch.arange(out_len, device=scale.device, dtype=torch.float32)[None]  # (1, L)
    if out_valid is not None:
        dst = torch.minimum(dst, out_valid[:, None].float() - 1)  # (N, L)
    src = (dst + 0.5) * scale[:, None] - 0.5
    src = torch.minimum(src.clamp(min=0), in_valid[:, None].float() - 1)
    return (src + 0.5) * (2.0 / in_len) - 1.0


def resample_bilinear(images: torch.Tensor, out_hw: Tuple[int, int], scale_yx: torch.Tensor,
                      in_valid_yx: torch.Tensor,
                      out_valid_yx: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-image bilinear resize, equal to F.interpolate(align_corners=False) per image.

    Args:
        images: (N, C, H, W).
        out_hw: size of the output canvas.
        scale_yx: (N, 2) input pixels per output pixel, per axis.
        in_valid_yx: (N, 2) the image occupies [0, h) x [0, w) of the input.
        out_valid_yx: (N, 2) or None; output beyond it replicates the last valid pixel.
    Returns:
        (N, C, out_h, out_w), float32.
    """
    n, _, in_h, in_w = images.shape
    scale_yx = scale_yx.float()
    out_y = None if out_valid_yx is None else out_valid_yx[:, 0]
    out_x = None if out_valid_yx is None else out_valid_yx[:, 1]
    grid_y = _axis_grid(out_hw[0], in_h, scale_yx[:, 0], in_valid_yx[:, 0], out_y)  # (N, Ho)
    grid_x = _axis_grid(out_hw[1], in_w, scale_yx[:, 1], in_valid_yx[:, 1], out_x)  # (N, Wo)
    grid = torch.stack([grid_x[:, None, :].expand(n, out_hw[0], out_hw[1]),
                        grid_y[:, :, None].expand(n, out_hw[0], out_hw[1])], dim=-1)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=False)  # (N, C, Ho, Wo)


def _replicate_pad(images: torch.Tensor, valid_yx: torch.Tensor, out_hw: Tuple[int, int]):
    """(N, C, H, W) -> (N, C, Ho, Wo): pixels outside [0, h_i) x [0, w_i) copy the edge."""
    n, c, _, w = images.shape
    rows = torch.minimum(torch.arange(out_hw[0], device=images.device)[None],
                         valid_yx[:, :1] - 1)  # (N, Ho)
    cols = torch.minimum(torch.arange(out_hw[1], device=images.device)[None],
                         valid_yx[:, 1:] - 1)  # (N, Wo)
    images = images.gather(2, rows[:, None, :, None].expand(n, c, out_hw[0], w))
    return images.gather(3, cols[:, None, None, :].expand(n, c, out_hw[0], out_hw[1]))


# ----------------------------------------------------------------------------- JPEG

def jpeg_quality_scaling(quality: torch.Tensor) -> torch.Tensor:
    """libjpeg's ``jpeg_quality_scaling``: (N,) integer quality -> (N,) percent scale."""
    quality = quality.long().clamp(1, 100)
    return torch.where(quality < 50, 5000 // quality, 200 - 2 * quality)


def jpeg_quant_tables(quality: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(N,) quality -> luminance and chrominance tables, each (N, 64) long, natural order.

    Entries are (t * scale + 50) // 100 clamped to [1, 255] (``jpeg_add_quant_table``
    with force_baseline, as Pillow calls it).
    """
    scale = jpeg_quality_scaling(quality)[:, None]  # (N, 1)
    tables = []
    for base in (JPEG_LUMA_TABLE, JPEG_CHROMA_TABLE):
        base = torch.tensor(base, dtype=torch.long, device=quality.device)[None]  # (1, 64)
        tables.append(((base * scale + 50) // 100).clamp(1, 255))
    return tables[0], tables[1]


def _dct_matrix(device) -> torch.Tensor:
    """Orthonormal 8-point DCT-II matrix D (8, 8): coefficients = D @ x."""
    k = torch.arange(8, device=device, dtype=torch.float32)[:, None]
    n = torch.arange(8, device=device, dtype=torch.float32)[None, :]
    mat = torch.cos(torch.pi * (2 * n + 1) * k / 16) * 0.5
    mat[0] = mat[0] / 2 ** 0.5
    return mat


def _round_half_away(values: torch.Tensor) -> torch.Tensor:
    return torch.sign(values) * torch.floor(values.abs() + 0.5)


def _blocks_quantize(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Encode-decode of level samples (N, C, H, W), H and W multiples of 8.

    Level shift, block DCT, quantization with per-image ``table`` (N, 64), rounding,
    dequantization, inverse DCT, +128, round and clamp to 0..255.
    """
    n, c, h, w = plane.shape
    blocks = plane.view(n, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5)  # (N,C,bh,bw,8,8)
    dct = _dct_matrix(plane.device)
    quant = table.to(plane.dtype).view(n, 1, 1, 1, 8, 8)
    coeffs = _matmul_exact(_matmul_exact(dct, blocks - 128.0), dct.t())
    coeffs = _round_half_away(coeffs / quant) * quant
    blocks = _matmul_exact(_matmul_exact(dct.t(), coeffs), dct) + 128.0
    blocks = torch.round(blocks).clamp(0, 255)
    return blocks.permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def _matmul_exact(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """left @ right over the last two (8-sized) dims, in float32 even where TF32 is on."""
    out = left[..., :, :1] * right[..., :1, :]
    for j in range(1, left.shape[-1]):
        out = out + left[..., :, j:j + 1] * right[..., j:j + 1, :]
    return out


def rgb_to_ycbcr(rgb255: torch.Tensor) -> torch.Tensor:
    """JFIF full-range conversion, (N, 3, H, W) 0..255 -> Y, Cb, Cr with +128 chroma offset."""
    r, g, b = rgb255.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168735892 * r - 0.331264108 * g + 0.5 * b + 128.0
    cr = 0.5 * r - 0.418687589 * g - 0.081312411 * b + 128.0
    return torch.stack([y, cb, cr], dim=1)


def ycbcr_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    """Inverse JFIF conversion, rounded per term as libjpeg's tables do; clamped 0..255."""
    y, cb, cr = ycc.unbind(1)
    cb, cr = cb - 128.0, cr - 128.0
    r = y + torch.round(1.402 * cr)
    g = y + torch.round(-0.344136286 * cb - 0.714136286 * cr)
    b = y + torch.round(1.772 * cb)
    return torch.stack([r, g, b], dim=1).clamp(0, 255)


def _downsample_2x2(plane: torch.Tensor) -> torch.Tensor:
    """libjpeg h2v2_downsample: (sum of 2x2 + bias) >> 2, bias 1, 2, 1, 2, ... by column."""
    n, c, h, w = plane.shape
    sums = plane.view(n, c, h // 2, 2, w // 2, 2).sum(dim=(3, 5))  # (N, C, H/2, W/2)
    bias = 1.0 + (torch.arange(w // 2, device=plane.device) % 2).to(plane.dtype)
    return torch.floor((sums + bias) / 4)


def jpeg_roundtrip(images255: torch.Tensor, quality: torch.Tensor,
                   valid_hw: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Baseline JPEG encode + decode (4:2:0) of a batch, each image at its own quality.

    Float arithmetic: close to libjpeg's integer codec, not bit-exact (see the module
    docstring for the measured difference).

    Args:
        images255: (N, 3, H, W) RGB on the 0..255 scale (rounded to integers first).
        quality: (N,) integer JPEG quality per image (Pillow / libjpeg scale).
        valid_hw: (N, 2) long or None; image i occupies [0, h_i) x [0, w_i) and what lies
            beyond is ignored: it is replaced by edge replication, as libjpeg pads to whole
            MCUs, so that output inside the valid region equals coding the image alone.
    Returns:
        (N, 3, H, W) float32 integer levels 0..255 (outside the valid region: the decoded
        padding).
    """
    n, _, h, w = images255.shape
    device = images255.device
    if valid_hw is None:
        valid_hw = torch.tensor([h, w], device=device).expand(n, 2)
    valid_hw = valid_hw.to(device=device, dtype=torch.long)
    pad_h, pad_w = -(-h // 16) * 16, -(-w // 16) * 16
    rgb = _replicate_pad(images255.float().round().clamp(0, 255), valid_hw, (pad_h, pad_w))
    ycc = torch.floor(rgb_to_ycbcr(rgb) + 0.5)  # libjpeg rounds samples to integers
    luma_table, chroma_table = jpeg_quant_tables(quality.to(device))
    luma = _blocks_quantize(ycc[:, :1], luma_table)  # (N, 1, Hp, Wp)
    chroma = _blocks_quantize(_downsample_2x2(ycc[:, 1:]), chroma_table)  # (N, 2, Hp/2, Wp/2)
    # libjpeg's "fancy" upsampling is bilinear with half-pixel centres (weights 3/4, 1/4)
    # and edge replication at the chroma image's own edge, ceil(size / 2).
    chroma = resample_bilinear(chroma, (pad_h, pad_w), torch.full((n, 2), 0.5, device=device),
                               (valid_hw + 1) // 2)
    rgb = ycbcr_to_rgb(torch.cat([luma, torch.round(chroma)], dim=1))
    return rgb[:, :, :h, :w]


def jpeg_noise(images255: torch.Tensor, sizes: torch.Tensor,
               quality: torch.Tensor) -> torch.Tensor:
    """The original ``JPEGNoise``: resize to sizes[i] x sizes[i], JPEG at quality[i], resize back.

    Batched: every image is resized into a common canvas (side max(sizes) rounded up to
    16) where it occupies [0, s_i)^2, coded there, and resized back from [0, s_i)^2.
    Resizes are bilinear (align_corners=False, no antialiasing) and rounded to integer
    levels, as the PIL images of the original were uint8.

    Args:
        images255: (N, 3, H, W) 0..255.
        sizes: (N,) long side of the intermediate square image.
        quality: (N,) long JPEG quality.
    Returns:
        (N, 3, H, W) float32 integer levels.
    """
    n, _, h, w = images255.shape
    sizes = sizes.to(device=images255.device, dtype=torch.long)
    side = -(-int(sizes.max()) // 16) * 16
    in_hw = torch.tensor([h, w], device=images255.device).expand(n, 2)
    square = sizes[:, None].expand(n, 2)
    canvas = resample_bilinear(images255, (side, side), in_hw / square, in_hw, square)
    canvas = jpeg_roundtrip(canvas.round().clamp(0, 255), quality, square)  # (N, 3, S, S)
    out = resample_bilinear(canvas, (h, w), square / in_hw, square)  # (N, 3, H, W)
    return out.round().clamp(0, 255)


# ----------------------------------------------------------------------------- colour

def _grayscale(images255: torch.Tensor, quantize: bool) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W); PIL's fixed-point "L" conversion when quantizing."""
    r, g, b = images255[:, 0:1], images255[:, 1:2], images255[:, 2:3]
    if quantize:  # (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16, exact in float32
        return torch.floor((r * 19595 + g * 38470 + b * 7471 + 32768) / 65536)
    return 0.299 * r + 0.587 * g + 0.114 * b


def color_jitter(images255: torch.Tensor, factors: torch.Tensor, order: torch.Tensor,
                 quantize: bool = True) -> torch.Tensor:
    """torchvision ColorJitter (brightness, contrast, saturation) with given draws.

    Every op is blend(img, degenerate, f) = clamp(f * img + (1 - f) * degenerate, 0, 255)
    with degenerate 0 (brightness), the image's mean gray level (contrast) or its
    grayscale (saturation).

    Args:
        images255: (N, 3, H, W) on the 0..255 scale.
        factors: (N, 3) brightness, contrast and saturation factors.
        order: (N, 3) long; order[i, k] is the op (index into JITTER_OPS) applied at step k.
        quantize: follow PIL on uint8 images, as the original did: input rounded, grayscale
            rounded, mean gray rounded, each blend truncated to an integer level.
            Without it, the plain float formulas of the list above.
    Returns:
        (N, 3, H, W) float32 on the 0..255 scale.
    """
    n = images255.shape[0]
    images = images255.float()
    if quantize:
        images = images.round().clamp(0, 255)
    factors = factors.to(images.device, torch.float32)
    order = order.to(images.device, torch.long)
    for step in range(3):
        op = order[:, step]  # (N,)
        factor = factors.gather(1, op[:, None]).view(n, 1, 1, 1)
        gray = _grayscale(images, quantize)  # (N, 1, H, W)
        if quantize:  # int(mean + 0.5) with an exact integer sum
            total, count = gray.long().sum(dim=(1, 2, 3)), gray[0].numel()
            mean = ((2 * total + count) // (2 * count)).to(images.dtype)
        else:
            mean = gray.mean(dim=(1, 2, 3))
        op = op.view(n, 1, 1, 1)
        degenerate = torch.where(op == 0, torch.zeros_like(gray),
                                 torch.where(op == 1, mean.view(n, 1, 1, 1), gray))
        images = (degenerate + factor * (images - degenerate)).clamp(0, 255)  # as PIL computes
        if quantize:
            images = torch.floor(images)
    return images


# ----------------------------------------------------------------------------- lighting

def pca_lighting(images01: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Add sum_k eigvec[:, k] * eigval[k] * alpha[i, k] to every pixel of image i.

    images01: (N, 3, H, W); alpha: (N, 3). No clamping, as in the original.
    """
    eigval = torch.tensor(LIGHTING_EIGVAL, device=images01.device, dtype=torch.float32)
    eigvec = torch.tensor(LIGHTING_EIGVEC, device=images01.device, dtype=torch.float32)
    weights = alpha.to(images01.device, torch.float32) * eigval  # (N, 3)
    rgb_shift = (eigvec[None] * weights[:, None, :]).sum(-1)  # (N, 3)
    return images01 + rgb_shift.to(images01.dtype)[:, :, None, None]


# ----------------------------------------------------------------------------- transform

class PhotometricAugmentation:
    """JPEG noise, ColorJitter and PCA lighting, drawn independently per image.

    Args:
        jpeg_noise: apply the JPEG noise (random resize, quality in [30, 99)).
        brightness: jitter factor range [max(0, 1 - b), 1 + b].
        contrast: as brightness, for contrast.
        saturation: as brightness, for saturation.
        lighting_std: std of the PCA lighting coefficients alpha.
    """

    def __init__(self, jpeg_noise: bool = True, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.4, lighting_std: float = 0.1):
        for name, value in (("brightness", brightness), ("contrast", contrast),
                            ("saturation", saturation), ("lighting_std", lighting_std)):
            if value < 0:
                raise ValueError(f"PhotometricAugmentation: {name} must be >= 0, got {value}")
        self.jpeg_noise = jpeg_noise
        self.jitter = (brightness, contrast, saturation)
        self.lighting_std = lighting_std

    def __call__(self, images01: torch.Tensor,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(N, 3, H, W) float in [0, 1] -> same shape, dtype and device (not clamped)."""
        if images01.dim() != 4 or images01.shape[1] != 3:
            raise ValueError(f"PhotometricAugmentation expects (N, 3, H, W), got "
                             f"{tuple(images01.shape)}")
        n, _, _, width = images01.shape
        device = images01.device
        images255 = (images01.float() * 255).round().clamp(0, 255)  # the uint8 image
        if self.jpeg_noise:
            z = torch.randn(n, generator=generator, device=device)
            sizes = torch.maximum(torch.full_like(z, int(0.8 * width)),
                                  torch.trunc(width * (1 + 0.5 * z))).long()
            quality = torch.randint(30, 99, (n,), generator=generator, device=device)
            images255 = jpeg_noise(images255, sizes, quality)
        spread = torch.tensor(self.jitter, device=device)  # (3,)
        uniform = torch.rand(n, 3, generator=generator, device=device)
        factors = (1 - spread).clamp(min=0) + uniform * ((1 + spread) - (1 - spread).clamp(min=0))
        order = torch.argsort(torch.rand(n, 3, generator=generator, device=device), dim=1)
        images255 = color_jitter(images255, factors, order)
        alpha = torch.randn(n, 3, generator=generator, device=device) * self.lighting_std
        return pca_lighting(images255 / 255, alpha).to(images01.dtype)


def training_augmentation(do_augmentations: bool, train: bool
                          ) -> Optional[PhotometricAugmentation]:
    """The photometric augmentation of a pipeline: only for training batches, and only
    with the dataset's ``do_augmentations`` (``dataset.args.do_augmentations``)."""
    return PhotometricAugmentation() if (train and do_augmentations) else None
