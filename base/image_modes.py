"""Any image Pillow opens -> the 8-bit RGB picture an image viewer shows.

``viewer_rgb`` takes an image already turned upright (``ImageOps.exif_transpose``) and
returns mode "RGB", 8 bits per channel, same size. Per source mode:

- ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` (16-bit grey, 0..65535): ``value >> 8``, the
  high byte, which is also what Pillow does itself for 16-bit RGB, RGBA and LA PNGs (they
  open as 8-bit "RGB"/"RGBA"), so every 16-bit source is reduced the same way. Pillow's
  ``convert("RGB")`` would clip these at 255 instead (nearly white pictures).
- ``I`` (32-bit integer): Pillow opens 16-bit PGM/PPM (and older versions 16-bit PNG) as
  "I" holding 0..65535, so it is read as 16-bit data: clipped to 0..65535, then ``>> 8``.
- ``F`` (32-bit float): 0.0 is black and 1.0 white (the float-image convention of
  viewers and image libraries); clipped to [0, 1], ``round(255 v)``; NaN is black.
- transparency (an alpha band: ``RGBA``, ``LA``, ``PA``, ``RGBa``; or a transparent
  palette entry / colour key in ``info["transparency"]``): composited over black,
  ``round(c * alpha / 255)``, the colour of the zero padding around images in the
  crops, so a transparent border looks like the outside of the image. (A colour key of
  a 16-bit or float image is ignored.)
- every other mode (``1``, ``L``, ``P``, ``RGB``, ``RGBX``, ``CMYK``, ``YCbCr``,
  ``LAB``, ``HSV``): Pillow's ``convert("RGB")``.
"""
import numpy as np
from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
SIXTEEN_BIT_MAX = 65535
ALPHA_MODES = ("RGBA", "RGBa", "LA", "PA")


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    """(H, W) uint8 -> RGB image with three equal channels."""
    return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))


def viewer_rgb(image: Image.Image) -> Image.Image:
    """``image`` (any mode Pillow opens, already upright) -> the 8-bit RGB picture a
    viewer shows, same size; the rule of each mode is in the module docstring. This is a
    convention of this project for users' own images: the SPEC section 5 datasets are
    8-bit RGB JPEGs and PNGs, which it leaves unchanged."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.int64)  # (H, W)
        return _grey_to_rgb((np.clip(values, 0, SIXTEEN_BIT_MAX) >> 8).astype(np.uint8))
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)  # (H, W)
        return _grey_to_rgb(np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8))
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA")).astype(np.uint32)  # (H, W, 4)
        over_black = (rgba[:, :, :3] * rgba[:, :, 3:] + 127) // 255  # round(c * a / 255)
        return Image.fromarray(over_black.astype(np.uint8))
    return image.convert("RGB")
