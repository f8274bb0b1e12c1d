"""Image files to uint8 RGB arrays, whatever their format, and shrinking them.

`decode` is the one way the data-set commands read pixels: EXIF orientation applied,
transparency composited on white (the paper of a drawing), palette, CMYK, 16-bit, float,
bilevel and grayscale converted, and a file that cannot be decoded (or claims too many
pixels) refused with a `Rejected` naming why.
"""

import io
import warnings

import numpy as np
from PIL import Image
from PIL import ImageOps

MAX_PIXELS = 50_000_000  # larger images (decompression bombs) are not decoded by default


class Rejected(Exception):
  """An input that cannot go into the data set, with the reason (a key of
  `inputs.REASONS`)."""

  def __init__(self, reason: str, detail: str):
    super().__init__(f"{reason}: {detail}")
    self.reason, self.detail = reason, detail


def _to_rgb(im: Image.Image) -> np.ndarray:
  """Any PIL image to uint8 [H, W, 3] RGB; transparency is composited on white."""
  mode = im.mode
  if mode.startswith("I"):  # 16-bit ("I;16*") and 32-bit integer gray, e.g. 16-bit PNGs
    a = np.asarray(im).astype(np.float64)
    # PIL widens 16-bit PNGs to "I"; values above 255 say the range is 16-bit.
    scale = 257.0 if (mode.startswith("I;16") or a.max() > 255) else 1.0
    gray = np.clip(np.round(a / scale), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  if mode == "F":
    a = np.asarray(im).astype(np.float64)
    a = a * 255.0 if a.max() <= 1.0 else a
    gray = np.clip(np.round(a), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
  if has_alpha:
    rgba = np.asarray(im.convert("RGBA")).astype(np.float32)
    alpha = rgba[..., 3:] / 255.0
    rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)
  return np.asarray(im.convert("RGB"))


def decode(data: bytes, max_pixels: int) -> np.ndarray:
  """Decodes image bytes to uint8 [H, W, 3] RGB with EXIF orientation applied.

  Args:
    data: the file's bytes.
    max_pixels: images with more pixels (per their header) are not decoded.

  Raises:
    Rejected: "undecodable" or "decompression_bomb".
  """
  if not data:
    raise Rejected("undecodable", "empty file (0 bytes)")
  with warnings.catch_warnings():
    # PIL's own bomb warning is redundant with the max_pixels check below.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    try:
      im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
      raise Rejected("decompression_bomb", str(e)) from None
    except Exception as e:  # pylint: disable=broad-except
      raise Rejected("undecodable", f"{type(e).__name__}: {e}") from None
    w, h = im.size
    if w * h > max_pixels:
      raise Rejected("decompression_bomb",
                     f"{w}x{h} = {w * h / 1e6:.1f} Mpx > --max_pixels={max_pixels}")
    try:
      im.load()
      im = ImageOps.exif_transpose(im)
      return _to_rgb(im)
    except Exception as e:  # pylint: disable=broad-except
      raise Rejected("undecodable", f"{type(e).__name__}: {e}") from None


def read_rgb(path: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
  """`decode` of the file at `path` (OSError if it cannot be read)."""
  with open(path, "rb") as f:
    return decode(f.read(), max_pixels)


def shrink(rgb: np.ndarray, side: int) -> np.ndarray:
  """Resized (antialiased) so that the shorter side is at most `side`; never enlarged."""
  h, w = rgb.shape[:2]
  if min(h, w) <= side:
    return rgb
  s = side / min(h, w)
  size = (max(1, round(w * s)), max(1, round(h * s)))
  return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
