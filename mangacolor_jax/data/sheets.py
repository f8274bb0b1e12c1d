"""Pictures for a person to look at: contact sheets and histograms, as uint8 RGB arrays.

The clean's report shows kept and dropped images on contact sheets and the line density
as a histogram with its threshold.
"""

import math
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

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
