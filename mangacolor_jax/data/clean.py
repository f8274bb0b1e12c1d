r"""Command line: clean a folder of illustrations into a data set worth training on.

  python -m mangacolor_jax.data.clean --input data/raw --output data/clean \
      [--min_side 64] [--near_duplicate_distance 6] [--max_line_density 0.3] \
      [--min_character_area 0.2] [--max_per_tag 0 --balance_tags ...]

Reads every JPEG / PNG / WebP / GIF / BMP / TIFF under `--input` (recursively; hidden files
and folders are skipped) and never modifies or deletes anything there. If `--input` holds a
crawl manifest (`manifest.jsonl` of `mangacolor_jax.data.crawl`), each image keeps its id,
tags and rating; otherwise its id is its path.

Each kept image is written to `--output/images/<id>.png` as 8-bit RGB: EXIF orientation
applied, transparency composited on white (the paper of a drawing), palette, CMYK, 16-bit,
float, bilevel and grayscale inputs converted. A file is dropped, for the first reason that
applies, in this order:

  undecodable          zero bytes, truncated, not an image (an HTML page named .png), or a
                       colour mode PIL cannot convert
  decompression_bomb   more than --max_pixels pixels (checked from the header, before
                       decoding)
  too_small            shorter side under --min_side
  exact_duplicate      same pixels as an earlier file (SHA-256 of the decoded RGB, so a
                       lossless re-encode counts), whatever the format
  too_intricate        line density over --max_line_density: the share of line pixels in
                       the dilation-difference line art (`lineart.dilation_difference`,
                       gain 2.5: pixels whose local contrast is over 0.2) of the image
                       shrunk so its shorter side is at most --analysis_side. Dense
                       strands, frills, hatching and screentone score high: the series'
                       "too intricate to learn from". Not XDoG's ink share: XDoG fills
                       dark areas with ink, so on the development faces it ranked black
                       hair, not intricate drawing, and a cut on it dropped dark-haired
                       characters as a class
  small_character      the character covers less than --min_character_area of the image:
                       where the image's border is a flat colour (the background), the
                       bounding box of the pixels that differ from it (rows and columns with
                       at least 2 % such pixels, which ignores specks and signatures) over
                       the image area. A busy border means no flat background to measure
                       against; such images are kept
  near_duplicate       perceptual hash (64-bit DCT pHash) within --near_duplicate_distance
                       bits of an image kept already; the larger image is kept
  balance              with --max_per_tag N: more than N images already kept for one of its
                       capped tags (--balance_tags, or the character tags the crawl recorded)

Re-running replaces `--output` as a whole (it is built beside it and swapped in), so a
report always describes the images next to it. Only a folder that clean made may be
replaced, and only while it holds nothing but what clean wrote there: its marker
(`.mangacolor_jax.json`) lists those files, and a folder with any other file is refused
(`mangacolor_jax.utils.files`). The report: `report.json` and `report.md`
(counts per reason, the settings, percentiles and a histogram of line density and character
area so a threshold can be chosen from the data), `line_density.png` (that histogram, with
the threshold), `dropped.jsonl` (each dropped file, why, and the numbers behind it),
`manifest.jsonl` (each kept image: id, file, source, size, sha256, phash, line density,
character area, tags), and contact sheets in `sheets/`: kept images, each reason's dropped
images, and the kept images of highest line density (what a lower threshold would drop next).
"""

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
from typing import Dict, Iterable, List, Optional, Sequence, Tuple
import warnings

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageOps

from mangacolor_jax.utils import files

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
REASONS = ("undecodable", "decompression_bomb", "too_small", "exact_duplicate",
           "too_intricate", "small_character", "near_duplicate", "balance")
MANIFEST = "manifest.jsonl"
REPORT = "report.json"
IMAGES = "images"
COMMAND = "clean"
_THUMB = 80  # contact-sheet cell side, pixels
_SHEET_MAX = 100  # images per contact sheet at most
_INK = 0.5  # line-art values below this count as line
_GAIN = 2.5  # dilation-difference gain of the line-density measure (mid training range)


class Rejected(Exception):
  """An input that cannot go into the data set, with the reason (a key of REASONS)."""

  def __init__(self, reason: str, detail: str):
    super().__init__(f"{reason}: {detail}")
    self.reason, self.detail = reason, detail


# ----------------------------------------------------------------------------------------
# Decoding.


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


# ----------------------------------------------------------------------------------------
# Measurements.


def _dct_matrix(n: int) -> np.ndarray:
  k = np.arange(n)[:, None]
  return np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n))


_DCT32 = _dct_matrix(32)


def phash(rgb: np.ndarray) -> int:
  """64-bit perceptual hash: signs of the 8x8 lowest DCT frequencies of a 32x32 gray
  thumbnail against their median (the `imagehash.phash` recipe)."""
  gray = Image.fromarray(rgb).convert("L").resize((32, 32), Image.Resampling.LANCZOS)
  dct = _DCT32 @ np.asarray(gray, np.float64) @ _DCT32.T
  low = dct[:8, :8]
  bits = (low > np.median(low)).ravel()
  return int(np.packbits(bits).view(">u8")[0])


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Bit distances between uint64 hashes (broadcasting)."""
  return np.bitwise_count(np.bitwise_xor(a, b))


def _shrink(rgb: np.ndarray, side: int) -> np.ndarray:
  """Resized (antialiased) so that the shorter side is at most `side`; never enlarged."""
  h, w = rgb.shape[:2]
  if min(h, w) <= side:
    return rgb
  s = side / min(h, w)
  size = (max(1, round(w * s)), max(1, round(h * s)))
  return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


_LINEART_FN = None


def line_density(rgb: np.ndarray, analysis_side: int) -> float:
  """Share of line pixels in the dilation-difference line art (see the module docstring)."""
  global _LINEART_FN
  if _LINEART_FN is None:
    # TensorFlow only when measuring: the rest of the module stays light.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from mangacolor_jax.input_pipeline import lineart  # pylint: disable=g-import-not-at-top

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    def ink_share(image):
      art = lineart.dilation_difference(tf.cast(image, tf.float32) / 255.0, _GAIN)
      return tf.reduce_mean(tf.cast(art < _INK, tf.float32))

    _LINEART_FN = ink_share
  return float(_LINEART_FN(_shrink(rgb, analysis_side)))


def character_area(rgb: np.ndarray, tolerance: float = 0.1, border: float = 0.04,
                   min_flat: float = 0.6, line_share: float = 0.02) -> Tuple[float, bool]:
  """(area share of the character's bounding box, whether the background is flat).

  The background colour is the median of a frame `border` of the side wide. When fewer than
  `min_flat` of the frame's pixels are within `tolerance` (max over channels, [0, 1] scale)
  of it, there is no flat background to measure against: (1.0, False). Otherwise the
  foreground is every pixel farther than `tolerance` from it, and its bounding box spans the
  rows and columns with at least `line_share` foreground pixels.
  """
  small = _shrink(rgb, 128).astype(np.float32) / 255.0
  h, w = small.shape[:2]
  b = max(1, int(round(border * min(h, w))))
  frame = np.concatenate([small[:b].reshape(-1, 3), small[-b:].reshape(-1, 3),
                          small[:, :b].reshape(-1, 3), small[:, -b:].reshape(-1, 3)])
  background = np.median(frame, axis=0)
  if np.mean(np.abs(frame - background).max(-1) <= tolerance) < min_flat:
    return 1.0, False
  fg = np.abs(small - background).max(-1) > tolerance
  rows = np.nonzero(fg.mean(1) >= line_share)[0]
  cols = np.nonzero(fg.mean(0) >= line_share)[0]
  if not rows.size or not cols.size:
    return 0.0, True
  return float((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1) / (h * w)), True


def colour_thumbnail(rgb: np.ndarray) -> np.ndarray:
  """float32 [8, 8, 3] in [0, 1]: box-filtered colours, the second near-duplicate test."""
  small = Image.fromarray(rgb).resize((8, 8), Image.Resampling.BOX)
  return np.asarray(small, np.float32) / 255.0


def near_duplicate_pairs(hashes: np.ndarray, colours: np.ndarray, max_distance: int,
                         max_colour: float, block: int = 1024) -> List[Tuple[int, int]]:
  """Pairs (i < j) within `max_distance` pHash bits and `max_colour` mean colour distance.

  pHash alone is not enough on small faces: at 64 px it puts different characters with
  the same pose within a few bits; requiring the colours to match too leaves the true near
  copies (the same drawing with another expression, glasses on or off). All pairs are
  compared, in blocks (n^2 / 2 popcounts: about a second for 10^4 images).

  Args:
    hashes: uint64 [n] pHashes.
    colours: float32 [n, 8, 8, 3] colour thumbnails.
    max_distance: largest pHash distance of a pair, in bits.
    max_colour: largest mean absolute colour difference of a pair, [0, 1] scale.
    block: rows compared at once.

  Returns:
    The pairs, sorted.
  """
  hashes = np.asarray(hashes, np.uint64)
  pairs = []
  for start in range(0, len(hashes), block):
    d = hamming(hashes[start:start + block, None], hashes[None, :])
    ii, jj = np.nonzero(d <= max_distance)
    ii = ii + start
    keep = ii < jj
    ii, jj = ii[keep], jj[keep]
    if ii.size:
      keep = np.abs(colours[ii] - colours[jj]).mean(axis=(1, 2, 3)) <= max_colour
      pairs.extend(zip(ii[keep].tolist(), jj[keep].tolist()))
  return sorted(pairs)


# ----------------------------------------------------------------------------------------
# The clean.


@dataclasses.dataclass
class Options:
  """The settings of a clean (the flags)."""
  min_side: int = 64
  max_pixels: int = 50_000_000
  near_duplicate_distance: int = 8
  near_duplicate_colour: float = 0.06
  max_line_density: float = 0.35
  analysis_side: int = 256
  min_character_area: float = 0.2
  background_tolerance: float = 0.1
  max_per_tag: int = 0
  balance_tags: Tuple[str, ...] = ()
  workers: int = 0  # 0: one per CPU (at most 8)


@dataclasses.dataclass
class Item:
  """One input file and what the clean found out about it."""
  source: str  # path relative to --input
  id: str
  meta: dict
  reason: str = ""
  detail: str = ""
  width: int = 0
  height: int = 0
  sha256: str = ""
  phash: int = 0
  colour: Optional[np.ndarray] = None
  line_density: float = float("nan")
  character_area: float = float("nan")
  flat_background: bool = False
  twin: str = ""  # the kept image a near duplicate copies

  def drop(self, reason: str, detail: str) -> None:
    self.reason, self.detail = reason, detail


def list_inputs(input_dir: str) -> Tuple[List[str], int]:
  """(sorted relative paths of image files, number of other files) under `input_dir`."""
  found, other = [], 0
  for root, dirs, files in os.walk(input_dir, followlinks=True):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    for name in files:
      if name.startswith("."):
        continue
      if name.lower().endswith(IMAGE_EXTENSIONS):
        found.append(os.path.relpath(os.path.join(root, name), input_dir))
      else:
        other += 1
  return sorted(found), other


def _safe_id(text: str) -> str:
  return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip(".") or "_"


def _read_manifest(input_dir: str) -> Dict[str, dict]:
  """Crawl (or clean) manifest entries by their file's relative path; {} without one."""
  path = os.path.join(input_dir, MANIFEST)
  if not os.path.exists(path):
    return {}
  entries = {}
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        entry = json.loads(line)
        entries[os.path.normpath(entry["file"])] = entry
      except (ValueError, KeyError, TypeError):
        logging.warning("%s:%d is not a manifest entry; ignored", path, number)
  return entries


def make_items(input_dir: str) -> Tuple[List[Item], int]:
  """The candidates, with ids (manifest id, else the path) unique and file-name safe.

  With a manifest (a crawl's or a clean's) the candidates are exactly its files: a clean's
  contact sheets are not data. Without one, every image file under `input_dir`.

  Returns:
    (items, number of other files: non-images, or files a manifest does not list).
  """
  paths, other = list_inputs(input_dir)
  manifest = _read_manifest(input_dir)
  if manifest:
    listed = [f for f in paths if os.path.normpath(f) in manifest]
    other += len(paths) - len(listed)
    missing = len(manifest) - len(listed)
    if missing:
      logging.warning("%s: %d files of its manifest are missing", input_dir, missing)
    paths = listed
  items, taken = [], set()
  for rel in paths:
    meta = manifest.get(os.path.normpath(rel), {})
    stem = os.path.splitext(rel)[0]
    base = _safe_id(str(meta.get("id") or stem.replace(os.sep, "__")))
    image_id = base
    if image_id in taken:  # a.jpg beside a.png
      image_id = _safe_id(base + "_" + os.path.splitext(rel)[1].lstrip("."))
    suffix = 2
    while image_id in taken:
      image_id, suffix = f"{base}_{suffix}", suffix + 1
    taken.add(image_id)
    items.append(Item(source=rel, id=image_id, meta=meta))
  return items, other


def _write_png(path: str, rgb: np.ndarray) -> None:
  tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
  Image.fromarray(rgb).save(tmp, format="PNG")
  os.replace(tmp, path)


def _analyse(item: Item, input_dir: str, images_dir: str, opts: Options) -> None:
  """Decodes and measures one file; stages its PNG unless it is rejected outright."""
  try:
    with open(os.path.join(input_dir, item.source), "rb") as f:
      data = f.read()
  except OSError as e:  # unreadable (permissions, a dangling link): not data
    item.drop("undecodable", f"cannot read: {e}")
    return
  try:
    rgb = decode(data, opts.max_pixels)
  except Rejected as e:
    item.drop(e.reason, e.detail)
    return
  item.height, item.width = rgb.shape[:2]
  if min(item.height, item.width) < opts.min_side:
    item.drop("too_small", f"{item.width}x{item.height}, shorter side < {opts.min_side}")
    return
  item.sha256 = hashlib.sha256(f"{item.height}x{item.width}:".encode() +
                               rgb.tobytes()).hexdigest()
  item.phash = phash(rgb)
  item.colour = colour_thumbnail(rgb)
  item.line_density = line_density(rgb, opts.analysis_side)
  item.character_area, item.flat_background = character_area(
      rgb, tolerance=opts.background_tolerance)
  _write_png(os.path.join(images_dir, item.id + ".png"), rgb)


def decide(items: Sequence[Item], opts: Options) -> None:
  """Sets the reason of every item that the per-image checks did not already reject.

  Runs the checks that compare images (duplicates, balance) and the thresholds, in the
  order of `REASONS`, over `items` in their (sorted) order.
  """
  first_by_sha = {}
  for item in items:
    if item.reason:
      continue
    if item.sha256 in first_by_sha:
      item.drop("exact_duplicate", f"same pixels as {first_by_sha[item.sha256]}")
      continue
    first_by_sha[item.sha256] = item.id
    if item.line_density > opts.max_line_density:
      item.drop("too_intricate",
                f"line density {item.line_density:.3f} > {opts.max_line_density}")
    elif item.character_area < opts.min_character_area:
      item.drop("small_character",
                f"character box {item.character_area:.2f} of the image < "
                f"{opts.min_character_area}")
  # Near duplicates: the larger image of a pair is kept (then the first id).
  live = sorted((i for i in items if not i.reason), key=lambda i: (-i.width * i.height, i.id))
  if live:
    pairs = near_duplicate_pairs(np.array([i.phash for i in live], np.uint64),
                                 np.stack([i.colour for i in live]),
                                 opts.near_duplicate_distance, opts.near_duplicate_colour)
    partners: Dict[int, List[int]] = {}
    for a, b in pairs:
      partners.setdefault(b, []).append(a)
    for j, item in enumerate(live):
      kept_twin = next((live[a] for a in partners.get(j, []) if not live[a].reason), None)
      if kept_twin is not None:
        d = int(hamming(np.uint64(item.phash), np.uint64(kept_twin.phash)))
        item.twin = kept_twin.id
        item.drop("near_duplicate", f"near copy of {kept_twin.id} (pHash distance {d})")
  if opts.max_per_tag > 0:
    _balance(items, opts)


def _balance(items: Sequence[Item], opts: Options) -> None:
  capped = set(opts.balance_tags)
  use_characters = not capped
  if use_characters and not any(i.meta.get("character_tags") for i in items):
    raise ValueError("--max_per_tag needs --balance_tags: the input's manifest records no "
                     "character tags (Safebooru does not give tag categories; Danbooru does)")
  counts: Dict[str, int] = {}
  # In a hashed order, so that the cap keeps a sample rather than the newest posts.
  order = sorted((i for i in items if not i.reason),
                 key=lambda i: hashlib.sha256(i.id.encode()).hexdigest())
  for item in order:
    tags = item.meta.get("character_tags", []) if use_characters else [
        t for t in item.meta.get("tags", []) if t in capped]
    full = [t for t in tags if counts.get(t, 0) >= opts.max_per_tag]
    if full:
      item.drop("balance", f"already {opts.max_per_tag} images of {full[0]}")
      continue
    for t in tags:
      counts[t] = counts.get(t, 0) + 1


# ----------------------------------------------------------------------------------------
# Report: contact sheets, histogram, JSON and Markdown.


def _font():
  from PIL import ImageFont  # pylint: disable=g-import-not-at-top
  return ImageFont.load_default()


def contact_sheet(cells: Sequence[Tuple[Sequence[Optional[np.ndarray]], str]],
                  columns: int = 10) -> np.ndarray:
  """A uint8 sheet: each cell one or two thumbnails (None: a grey 'no image') and a caption."""
  width = max([len(images) for images, _ in cells] + [1])
  cell_w, cell_h = _THUMB * width + 4, _THUMB + 16
  rows = max(1, math.ceil(len(cells) / columns))
  sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
  draw = ImageDraw.Draw(sheet)
  font = _font()
  for n, (images, caption) in enumerate(cells):
    x0, y0 = (n % columns) * cell_w, (n // columns) * cell_h
    for k, image in enumerate(images):
      x = x0 + 2 + k * _THUMB
      if image is None:
        draw.rectangle([x, y0 + 2, x + _THUMB - 3, y0 + _THUMB - 1], fill=(200, 200, 200))
        draw.line([x, y0 + 2, x + _THUMB - 3, y0 + _THUMB - 1], fill=(150, 0, 0), width=2)
        continue
      thumb = Image.fromarray(image)
      thumb.thumbnail((_THUMB - 2, _THUMB - 2), Image.Resampling.LANCZOS)
      sheet.paste(thumb, (x + (_THUMB - thumb.width) // 2, y0 + 2 + (_THUMB - thumb.height) // 2))
    draw.text((x0 + 2, y0 + _THUMB + 2), caption[:cell_w // 6], fill=(0, 0, 0), font=font)
  return np.asarray(sheet)


def histogram_plot(values: np.ndarray, threshold: float, label: str, bins: int = 50,
                   upper: Optional[float] = None) -> np.ndarray:
  """A uint8 bar chart of `values` with a red line at `threshold`."""
  values = np.asarray(values, np.float64)
  upper = upper or max(threshold * 1.2, float(values.max()) if values.size else 1.0)
  counts, edges = np.histogram(values, bins=bins, range=(0.0, upper))
  w, h, margin = 640, 240, 30
  image = Image.new("RGB", (w, h), "white")
  draw = ImageDraw.Draw(image)
  font = _font()
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


def _summary(values: Iterable[float]) -> dict:
  v = np.array([x for x in values if np.isfinite(x)], np.float64)
  if not v.size:
    return {"count": 0}
  pct = (1, 5, 25, 50, 75, 95, 99)
  counts, edges = np.histogram(v, bins=20)
  return {"count": int(v.size), "mean": round(float(v.mean()), 4),
          "percentiles": {f"p{p}": round(float(np.percentile(v, p)), 4) for p in pct},
          "histogram": {"edges": [round(float(e), 4) for e in edges],
                        "counts": counts.tolist()}}


def _sheet_sample(items: Sequence[Item], k: int = _SHEET_MAX) -> List[Item]:
  """Up to k items spread evenly over the list (deterministic)."""
  if len(items) <= k:
    return list(items)
  return [items[int(i * len(items) / k)] for i in range(k)]


def _pixels(path: str, max_pixels: int) -> Optional[np.ndarray]:
  try:
    with open(path, "rb") as f:
      return _shrink(decode(f.read(), max_pixels), _THUMB * 2)
  except (Rejected, OSError):
    return None


def _save_png(path: str, image: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  _write_png(path, image)


def write_report(items: Sequence[Item], input_dir: str, out: str, opts: Options,
                 other_files: int) -> dict:
  """Writes manifest.jsonl, dropped.jsonl, report.json/.md, the histogram and the sheets."""
  kept = [i for i in items if not i.reason]
  dropped = {r: [i for i in items if i.reason == r] for r in REASONS}
  by_id = {i.id: i for i in items}
  staged = lambda i: os.path.join(out, IMAGES, i.id + ".png")
  source = lambda i: os.path.join(input_dir, i.source)
  sheets = {}

  def sheet(name, cells):
    if cells:
      _save_png(os.path.join(out, "sheets", name + ".png"), contact_sheet(cells))
      sheets[name] = f"sheets/{name}.png"

  sheet("kept", [([_pixels(staged(i), opts.max_pixels)], i.id)
                 for i in _sheet_sample(kept)])
  densest = sorted(kept, key=lambda i: -i.line_density)[:50]
  sheet("kept_densest", [([_pixels(staged(i), opts.max_pixels)], f"{i.line_density:.3f}")
                         for i in densest])
  for reason, group in dropped.items():
    cells = []
    for i in _sheet_sample(group):
      images = [_pixels(source(i), opts.max_pixels) if reason not in (
          "undecodable", "decompression_bomb") else None]
      caption = i.id
      if reason == "near_duplicate":
        images.append(_pixels(staged(by_id[i.twin]), opts.max_pixels))
        caption = f"{i.id} ~ {i.twin}"
      elif reason == "too_intricate":
        caption = f"{i.line_density:.3f} {i.id}"
      elif reason == "small_character":
        caption = f"{i.character_area:.2f} {i.id}"
      cells.append((images, caption))
    sheet(f"dropped_{reason}", cells)

  # Distributions over distinct images (exact duplicates would count twice).
  measured = [i for i in items if i.sha256 and i.reason != "exact_duplicate"]
  _save_png(os.path.join(out, "line_density.png"), histogram_plot(
      np.array([i.line_density for i in measured]), opts.max_line_density,
      "line density (line share of the dilation-difference line art)"))

  with open(os.path.join(out, MANIFEST), "w", encoding="utf-8") as f:
    for i in kept:
      entry = {k: v for k, v in i.meta.items() if k not in ("file", "id", "width", "height")}
      entry.update(id=i.id, file=f"{IMAGES}/{i.id}.png", source=i.source, width=i.width,
                   height=i.height, sha256=i.sha256, phash=f"{i.phash:016x}",
                   line_density=round(i.line_density, 4),
                   character_area=round(i.character_area, 4),
                   tags=i.meta.get("tags", []))
      f.write(json.dumps(entry, sort_keys=True) + "\n")
  with open(os.path.join(out, "dropped.jsonl"), "w", encoding="utf-8") as f:
    for i in items:
      if i.reason:
        f.write(json.dumps({"source": i.source, "id": i.id, "reason": i.reason,
                            "detail": i.detail, "width": i.width, "height": i.height,
                            "line_density": None if math.isnan(i.line_density) else round(
                                i.line_density, 4),
                            "character_area": None if math.isnan(i.character_area) else
                            round(i.character_area, 4)}, sort_keys=True) + "\n")
  report = {
      "input": os.path.abspath(input_dir),
      "settings": {k: list(v) if isinstance(v, tuple) else v
                   for k, v in dataclasses.asdict(opts).items()},
      "counts": {"files": len(items), "kept": len(kept),
                 "dropped": {r: len(g) for r, g in dropped.items()},
                 "ignored_non_image_files": other_files},
      "line_density": _summary(i.line_density for i in measured),
      "character_area_flat_background": _summary(
          i.character_area for i in measured if i.flat_background),
      "flat_background_share": round(
          sum(i.flat_background for i in measured) / max(1, len(measured)), 4),
      "sheets": sheets,
      "histogram": "line_density.png",
  }
  with open(os.path.join(out, REPORT), "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2, sort_keys=True)
    f.write("\n")
  lines = [f"# Clean of {report['input']}", "",
           f"{len(items)} image files: **{len(kept)} kept**, {len(items) - len(kept)} "
           f"dropped ({other_files} other files ignored).", "",
           "| reason | dropped | sheet |", "| --- | --- | --- |"]
  for r in REASONS:
    name = f"dropped_{r}"
    lines.append(f"| {r} | {len(dropped[r])} | "
                 f"{'[' + name + '](sheets/' + name + '.png)' if name in sheets else ''} |")
  ld = report["line_density"].get("percentiles", {})
  lines += ["", f"Kept: [sheets/kept.png](sheets/kept.png); densest kept (what a lower "
            f"--max_line_density drops next): [sheets/kept_densest.png]"
            f"(sheets/kept_densest.png).", "",
            f"Line density (threshold {opts.max_line_density}): "
            + ", ".join(f"{k} {v}" for k, v in ld.items())
            + " -- [histogram](line_density.png).", "",
            "Settings: " + ", ".join(f"--{k}={v}" for k, v in report["settings"].items())]
  with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  return report


def _stage_dir(input_dir: str, output: str) -> str:
  """A new empty folder beside `output`, after checking that replacing `output` is safe.

  `output` may be replaced only when it is missing, empty, or an earlier clean's output
  holding nothing but the files that clean wrote (its marker lists them).
  """
  in_abs, out_abs = os.path.realpath(input_dir), os.path.realpath(output)
  if not os.path.isdir(in_abs):
    raise ValueError(f"--input={input_dir}: {in_abs} is not a folder")
  if out_abs == in_abs or out_abs.startswith(in_abs + os.sep) or in_abs.startswith(
      out_abs + os.sep):
    raise ValueError(f"--output={output} must be outside --input={input_dir} (and not "
                     "contain it): the input is never written to")
  if os.path.lexists(out_abs):
    if not os.path.isdir(out_abs):
      raise files.OutputError(f"--output={output} exists and is not a folder")
    if os.listdir(out_abs):
      marker = files.read_marker(out_abs)
      if marker is None or marker["command"] != COMMAND:
        raise files.OutputError(
            f"--output={output} is not empty and is not the output of an earlier clean "
            f"(no clean {files.MARKER}): give a new or empty folder; clean replaces its "
            "output as a whole and never deletes what it did not write")
      foreign = files.foreign_files(out_abs, marker)
      if foreign:
        raise files.OutputError(
            f"--output={output} holds {len(foreign)} file(s) that clean did not write "
            f"(e.g. {foreign[0]}); move them out, or give a new folder: clean replaces "
            "its output as a whole")
  parent = os.path.dirname(out_abs)
  os.makedirs(parent, exist_ok=True)
  return tempfile.mkdtemp(prefix=f".{os.path.basename(out_abs)}.partial-", dir=parent)


def clean(input_dir: str, output: str, opts: Optional[Options] = None) -> dict:
  """Cleans `input_dir` into `output` (replaced as a whole); returns the report.

  Raises:
    ValueError: bad folders (see `_stage_dir`) or settings.
  """
  opts = opts or Options()
  if not 0.0 < opts.max_line_density <= 1.0:
    raise ValueError(f"--max_line_density={opts.max_line_density} must be in (0, 1]")
  if not 0.0 <= opts.min_character_area <= 1.0:
    raise ValueError(f"--min_character_area={opts.min_character_area} must be in [0, 1]")
  stage = _stage_dir(input_dir, output)
  try:
    os.makedirs(os.path.join(stage, IMAGES))
    items, other = make_items(input_dir)
    logging.info("%s: %d image files to check.", input_dir, len(items))
    workers = opts.workers or min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      futures = [pool.submit(_analyse, i, input_dir, os.path.join(stage, IMAGES), opts)
                 for i in items]
      for n, future in enumerate(futures, 1):
        future.result()
        if n % 1000 == 0:
          logging.info("checked %d / %d", n, len(items))
    decide(items, opts)
    report = write_report(items, input_dir, stage, opts, other)
    for i in items:  # staged images of files dropped by the later checks
      path = os.path.join(stage, IMAGES, i.id + ".png")
      if i.reason and os.path.exists(path):
        os.remove(path)
    files.write_marker(stage, COMMAND, files.list_files(stage))
    out_abs = os.path.realpath(output)
    if os.path.exists(out_abs):
      old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_abs)}.old-",
                             dir=os.path.dirname(out_abs))
      os.replace(out_abs, os.path.join(old, "x"))
      os.replace(stage, out_abs)
      shutil.rmtree(old)
    else:
      os.replace(stage, out_abs)
  except BaseException:
    shutil.rmtree(stage, ignore_errors=True)
    raise
  report["output"] = os.path.abspath(output)
  return report


FLAGS = flags.FLAGS


def define_flags():
  """The command's flags; defined only when it runs, so that the module imports cleanly
  beside the other commands (several define --input / --output)."""
  flags.DEFINE_string("input", None, "Folder of images: a crawl's --out (its manifest's "
                      "files), or any folder (every image file in it).")
  flags.DEFINE_string("output", None, "Folder for the cleaned data set (replaced as a whole).")
  defaults = Options()
  flags.DEFINE_integer("min_side", defaults.min_side, "Drop images whose shorter side is smaller.")
  flags.DEFINE_integer("max_pixels", defaults.max_pixels, "Drop larger images (decompression "
                       "bombs) before decoding them.")
  flags.DEFINE_integer("near_duplicate_distance", defaults.near_duplicate_distance,
                       "pHash bits within which two images can be near copies (even: pHashes "
                       "have 32 ones, so distances are even).")
  flags.DEFINE_float("near_duplicate_colour", defaults.near_duplicate_colour,
                     "...and the largest mean colour difference (8x8 thumbnails, [0, 1]).")
  flags.DEFINE_float("max_line_density", defaults.max_line_density,
                     "Drop images whose line art has a larger share of line pixels (see the "
                     "report's histogram to choose).")
  flags.DEFINE_integer("analysis_side", defaults.analysis_side,
                       "Line density is measured with the shorter side shrunk to this (never "
                       "enlarged): use about the training resolution.")
  flags.DEFINE_float("min_character_area", defaults.min_character_area,
                     "Drop images on a flat background whose character's bounding box covers "
                     "less of the image.")
  flags.DEFINE_float("background_tolerance", defaults.background_tolerance,
                     "Colour distance ([0, 1], max over channels) that still counts as "
                     "background.")
  flags.DEFINE_integer("max_per_tag", defaults.max_per_tag, "Balance: at most this many images per "
                       "capped tag (0: no cap).")
  flags.DEFINE_list("balance_tags", [], "Tags to cap (default: the character tags of the "
                    "crawl manifest).")
  flags.DEFINE_integer("workers", defaults.workers, "Threads (0: one per CPU, at most 8).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  for name in ("input", "output"):
    if not FLAGS[name].value:
      raise app.UsageError(f"--{name} is required")
  opts = Options(min_side=FLAGS.min_side, max_pixels=FLAGS.max_pixels,
                 near_duplicate_distance=FLAGS.near_duplicate_distance,
                 near_duplicate_colour=FLAGS.near_duplicate_colour,
                 max_line_density=FLAGS.max_line_density, analysis_side=FLAGS.analysis_side,
                 min_character_area=FLAGS.min_character_area,
                 background_tolerance=FLAGS.background_tolerance,
                 max_per_tag=FLAGS.max_per_tag, balance_tags=tuple(FLAGS.balance_tags),
                 workers=FLAGS.workers)
  try:
    report = clean(FLAGS.input, FLAGS.output, opts)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(json.dumps({"output": report["output"], **report["counts"]}, sort_keys=True))


if __name__ == "__main__":
  define_flags()
  app.run(main)
