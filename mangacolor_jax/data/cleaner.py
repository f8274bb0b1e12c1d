"""The clean: every image of a folder decoded, measured, checked, and kept or dropped.

`clean(input_dir, output, Options(...))` builds `output` anew: the kept images as RGB PNGs
in `output/images/`, and the report (`clean_report`). See `mangacolor_jax.data.clean` for
the command and the checks, in the order of `inputs.REASONS`.
"""

import concurrent.futures
import dataclasses
import hashlib
import os
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from mangacolor_jax.data import clean_report
from mangacolor_jax.data import decoding
from mangacolor_jax.data import inputs
from mangacolor_jax.data import measures
from mangacolor_jax.data import similarity
from mangacolor_jax.data import staging
from mangacolor_jax.utils import files

COMMAND = "clean"


@dataclasses.dataclass
class Options:
  """The settings of a clean (the flags)."""
  min_side: int = 64
  max_pixels: int = decoding.MAX_PIXELS
  near_duplicate_distance: int = 8
  near_duplicate_colour: float = 0.06
  max_line_density: float = 0.35
  analysis_side: int = 256
  min_character_area: float = 0.2
  background_tolerance: float = 0.1
  max_per_tag: int = 0
  balance_tags: Tuple[str, ...] = ()
  workers: int = 0  # 0: one per CPU (at most 8)


def _analyse(item: inputs.Item, input_dir: str, images_dir: str, opts: Options) -> None:
  """Decodes and measures one file; stages its PNG unless it is rejected outright."""
  try:
    with open(os.path.join(input_dir, item.source), "rb") as f:
      data = f.read()
  except OSError as e:  # unreadable (permissions, a dangling link): not data
    item.drop("undecodable", f"cannot read: {e}")
    return
  try:
    rgb = decoding.decode(data, opts.max_pixels)
  except decoding.Rejected as e:
    item.drop(e.reason, e.detail)
    return
  item.height, item.width = rgb.shape[:2]
  if min(item.height, item.width) < opts.min_side:
    item.drop("too_small", f"{item.width}x{item.height}, shorter side < {opts.min_side}")
    return
  item.sha256 = hashlib.sha256(f"{item.height}x{item.width}:".encode() +
                               rgb.tobytes()).hexdigest()
  item.phash = similarity.phash(rgb)
  item.colour = similarity.colour_thumbnail(rgb)
  item.line_density = measures.line_density(rgb, opts.analysis_side)
  item.character_area, item.flat_background = measures.character_area(
      rgb, tolerance=opts.background_tolerance)
  files.save_image(os.path.join(images_dir, item.id + ".png"), rgb)


def decide(items: Sequence[inputs.Item], opts: Options) -> None:
  """Sets the reason of every item that the per-image checks did not already reject.

  Runs the checks that compare images (duplicates, balance) and the thresholds, in the
  order of `inputs.REASONS`, over `items` in their (sorted) order.
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
  _drop_near_duplicates(items, opts)
  if opts.max_per_tag > 0:
    _balance(items, opts)


def _drop_near_duplicates(items: Sequence[inputs.Item], opts: Options) -> None:
  """Of each near-duplicate pair the larger image is kept (then the first id)."""
  live = sorted((i for i in items if not i.reason), key=lambda i: (-i.width * i.height, i.id))
  if not live:
    return
  pairs = similarity.near_duplicate_pairs(
      np.array([i.phash for i in live], np.uint64), np.stack([i.colour for i in live]),
      opts.near_duplicate_distance, opts.near_duplicate_colour)
  partners: Dict[int, List[int]] = {}
  for a, b in pairs:
    partners.setdefault(b, []).append(a)
  for j, item in enumerate(live):
    kept_twin = next((live[a] for a in partners.get(j, []) if not live[a].reason), None)
    if kept_twin is not None:
      d = int(similarity.hamming(np.uint64(item.phash), np.uint64(kept_twin.phash)))
      item.twin = kept_twin.id
      item.drop("near_duplicate", f"near copy of {kept_twin.id} (pHash distance {d})")


def _balance(items: Sequence[inputs.Item], opts: Options) -> None:
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


def _check(input_dir: str, output: str, opts: Options) -> None:
  """Refuses bad settings and folders before any work."""
  if not 0.0 < opts.max_line_density <= 1.0:
    raise ValueError(f"--max_line_density={opts.max_line_density} must be in (0, 1]")
  if not 0.0 <= opts.min_character_area <= 1.0:
    raise ValueError(f"--min_character_area={opts.min_character_area} must be in [0, 1]")
  in_abs = os.path.realpath(input_dir)
  if not os.path.isdir(in_abs):
    raise ValueError(f"--input={input_dir}: {in_abs} is not a folder")
  staging.check_replaceable(
      input_dir, output, COMMAND,
      f"is not the output of an earlier clean (no clean {files.MARKER}): give a new or empty "
      "folder; clean replaces its output as a whole and never deletes what it did not write")


def clean(input_dir: str, output: str, opts: Optional[Options] = None) -> dict:
  """Cleans `input_dir` into `output` (replaced as a whole); returns the report.

  Raises:
    ValueError: bad folders (see `staging.check_replaceable`) or settings.
  """
  opts = opts or Options()
  _check(input_dir, output, opts)
  with staging.build_beside(output, COMMAND) as stage:
    images_dir = os.path.join(stage, clean_report.IMAGES)
    os.makedirs(images_dir)
    items, other = inputs.make_items(input_dir)
    logging.info("%s: %d image files to check.", input_dir, len(items))
    workers = opts.workers or min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      futures = [pool.submit(_analyse, i, input_dir, images_dir, opts) for i in items]
      for n, future in enumerate(futures, 1):
        future.result()
        if n % 1000 == 0:
          logging.info("checked %d / %d", n, len(items))
    decide(items, opts)
    report = clean_report.write_report(items, input_dir, stage, opts, other)
    for i in items:  # staged images of files dropped by the later checks
      path = os.path.join(images_dir, i.id + ".png")
      if i.reason and os.path.exists(path):
        os.remove(path)
  report["output"] = os.path.abspath(output)
  return report
