"""Pictures for a person to look at: contact sheets, batch grids, histograms (uint8 RGB).

The clean's report shows kept and dropped images on contact sheets and the line density
as a histogram with its threshold; inspect shows the batches a model is fed, pixel for
pixel, and the histograms of their values.
"""

import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from mangacolor_jax.utils import images

THUMB = 80  # contact-sheet cell side, pixels


def contact_sheet(cells: Sequence[Tuple[Sequence[Optional[np.ndarray]], str]],
                  columns: int = 10) -> np.ndarray:
  """A uint8 sheet: each cell one or two thumbnails (None: a grey 'no image') and a caption."""
  width = max([len(images) for images, _ in cells] + [1])
  cell_w, cell_h = THUMB * width + 4, THUMB + 16
  rows = max(1, math.ceil(len(cells) / columns))
  sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
  draw = ImageDraw.Draw(sheet)
  font = ImageFont.load_default()
  for n, (images, caption) in enumerate(cells):
    x0, y0 = (n % columns) * cell_w, (n // columns) * cell_h
    for k, image in enumerate(images):
      x = x0 + 2 + k * THUMB
      if image is None:
        draw.rectangle([x, y0 + 2, x + THUMB - 3, y0 + THUMB - 1], fill=(200, 200, 200))
        draw.line([x, y0 + 2, x + THUMB - 3, y0 + THUMB - 1], fill=(150, 0, 0), width=2)
        continue
      thumb = Image.fromarray(image)
      thumb.thumbnail((THUMB - 2, THUMB - 2), Image.Resampling.LANCZOS)
      sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y0 + 2 + (THUMB - thumb.height) // 2))
    draw.text((x0 + 2, y0 + THUMB + 2), caption[:cell_w // 6], fill=(0, 0, 0), font=font)
  return np.asarray(sheet)


def histogram_plot(values: np.ndarray, threshold: float, label: str, bins: int = 50,
                   upper: Optional[float] = None) -> np.ndarray:
  """A uint8 bar chart of `values` with a red line at `threshold`."""
  values = np.asarray(values, np.float64)
  upper = upper or max(threshold * 1.2, float(values.max()) if values.size else 1.0)
  counts, _ = np.histogram(values, bins=bins, range=(0.0, upper))
  w, h, margin = 640, 240, 30
  image = Image.new("RGB", (w, h), "white")
  draw = ImageDraw.Draw(image)
  font = ImageFont.load_default()
  top = max(1, counts.max()) if counts.size else 1
  bar = (w - 2 * margin) / bins
  for k, c in enumerate(counts):
    x = margin + k * bar
    draw.rectangle([x, h - margin - (h - 2 * margin) * c / top, x + bar - 1, h - margin],
                   fill=(70, 110, 180))
  tx = margin + (w - 2 * margin) * threshold / upper
  draw.line([tx, margin - 10, tx, h - margin], fill=(220, 0, 0), width=2)
  draw.line([margin, h - margin, w - margin, h - margin], fill=(0, 0, 0))
  for k in range(6):
    v = upper * k / 5
    draw.text((margin + (w - 2 * margin) * k / 5 - 8, h - margin + 4), f"{v:.2f}", fill=0,
              font=font)
  draw.text((margin, 4), f"{label}: {values.size} images, max bin {top}; red: threshold "
            f"{threshold:g}", fill=0, font=font)
  return np.asarray(image)


def batch_grid(batch: Dict[str, np.ndarray], max_images: int = 8) -> np.ndarray:
  """uint8 [rows, cols, 3]: a header, then one row per example: line art | hints | target.

  Pixels are exact (nearest-neighbour, integer scale to at least 128 px per cell).
  """
  columns = [k for k in ("lineart", "hints", "target") if k in batch]
  n, h, w = batch["target"].shape[:3]
  n = min(n, max_images)
  scale = max(1, -(-128 // max(h, w)))
  gap, header = 2, 14
  cell_h, cell_w = h * scale, w * scale
  grid = np.full((header + n * (cell_h + gap), len(columns) * (cell_w + gap), 3), 255,
                 np.uint8)
  for c, key in enumerate(columns):
    x = batch[key][:n]
    x = x[..., :3] if key == "hints" else x
    pixels = images.to_uint8(x)
    if pixels.shape[-1] == 1:
      pixels = np.repeat(pixels, 3, axis=-1)
    pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
    for r in range(n):
      y0, x0 = header + r * (cell_h + gap), c * (cell_w + gap)
      grid[y0:y0 + cell_h, x0:x0 + cell_w] = pixels[r]
  image = Image.fromarray(grid)
  draw = ImageDraw.Draw(image)
  for c, key in enumerate(columns):
    draw.text((c * (cell_w + gap) + 2, 1), key, fill=(0, 0, 0), font=ImageFont.load_default())
  return np.asarray(image)


def histogram_panel(values: np.ndarray, title: str, bins: int = 64) -> np.ndarray:
  """uint8 bar chart of values over [-1.05, 1.05]; bar height is sqrt(count), so the
  paper spike of line art does not flatten everything else."""
  v = np.asarray(values, np.float64).ravel()
  v = v[np.isfinite(v)]
  counts, _ = np.histogram(v, bins=bins, range=(-1.05, 1.05))
  w, h, m = 520, 130, 20
  image = Image.new("RGB", (w, h), "white")
  draw = ImageDraw.Draw(image)
  font = ImageFont.load_default()
  top = np.sqrt(max(1, counts.max()))
  bar = (w - 2 * m) / bins
  for k, c in enumerate(counts):
    x = m + k * bar
    draw.rectangle([x, h - m - (h - 2 * m - 12) * np.sqrt(c) / top, x + bar - 1, h - m],
                   fill=(70, 110, 180))
  for tick in (-1.0, 0.0, 1.0):
    x = m + (w - 2 * m) * (tick + 1.05) / 2.1
    draw.line([x, 14, x, h - m], fill=(200, 0, 0) if tick == 0 else (150, 150, 150))
    draw.text((x - 6, h - m + 3), f"{tick:g}", fill=0, font=font)
  stats = (f"min {v.min():.3f} max {v.max():.3f} mean {v.mean():.3f} std {v.std():.3f}"
           if v.size else "no values")
  draw.text((m, 1), f"{title}: {stats}", fill=0, font=font)
  return np.asarray(image)
