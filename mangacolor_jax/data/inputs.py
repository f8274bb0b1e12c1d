"""The images of an input folder, one `Item` each, with an id and its manifest's metadata.

`make_items` lists the candidates of a folder -- a crawl's, a clean's, or any folder of
images -- under ids that are unique and safe as file names. The clean and prepare both use
it, so an image keeps its id from the crawl to the data set. The clean fills in the rest
of each `Item`: what it measured and, for a dropped image, one of `REASONS`.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Tuple

from absl import logging
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
MANIFEST = "manifest.jsonl"  # a crawl's or a clean's, one JSON entry per image
# Why the clean drops an image, in the order it checks (the first that applies).
REASONS = ("undecodable", "decompression_bomb", "too_small", "exact_duplicate",
           "too_intricate", "small_character", "near_duplicate", "balance")


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
