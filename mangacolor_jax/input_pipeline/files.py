"""Image files of a folder source: listing them and the fixed train/validation split."""

import hashlib
import os
from typing import List, Sequence, Tuple

SUPPORTED_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
# Key of the train/validation file split; changing it reshuffles every folder's split.
_SPLIT_KEY = b"mangacolor_jax/split/v1:"


def list_images(image_dir: str) -> List[str]:
  """Sorted paths of the supported images under `image_dir`, searched recursively.

  Extensions are matched case-insensitively; hidden files and folders (names starting with
  ".", e.g. macOS "._x.jpg" resource forks, which are not images) are skipped.
  """
  found = []
  for root, dirs, files in os.walk(image_dir, followlinks=True):
    dirs[:] = [d for d in dirs if not d.startswith(".")]
    for name in files:
      if not name.startswith(".") and name.lower().endswith(SUPPORTED_EXTENSIONS):
        found.append(os.path.join(root, name))
  return sorted(found)


def split_files(files: Sequence[str], val_fraction: float) -> Tuple[List[str], List[str]]:
  """Fixed train/validation split of a file list.

  The order that decides the split is a keyed hash of each file's base name: the same for
  every seed, every run and wherever the folder lives, and a file mostly keeps its side when
  files are added to the folder (a seeded permutation of the list would reshuffle all of
  them).

  Args:
    files: image paths.
    val_fraction: share of the files to hold out; rounded, at least 1 file.

  Returns:
    (train, val), each sorted.
  """
  files = sorted(files)
  if not files:
    return [], []
  n_val = min(len(files), max(1, int(round(len(files) * val_fraction))))

  def key(i):
    name = os.path.basename(files[i]).encode("utf-8", "surrogateescape")
    return hashlib.sha1(_SPLIT_KEY + name).digest(), files[i]

  val_ids = set(sorted(range(len(files)), key=key)[:n_val])
  train = [f for i, f in enumerate(files) if i not in val_ids]
  val = [f for i, f in enumerate(files) if i in val_ids]
  return train, val
