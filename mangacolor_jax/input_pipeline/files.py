"""Image files of a folder source: listing them and the fixed train/validation split."""

import hashlib
import os
from typing import List, Sequence, Tuple

import numpy as np

SUPPORTED_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
# Key of the train/validation file split; changing it reshuffles every folder's split.
_SPLIT_KEY = b"mangacolor_jax/split/v1:"
# Key of the test split (`hold_out_test`), drawn before the validation split.
_TEST_KEY = b"mangacolor_jax/test/v1:"


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


def _hash_split(files: Sequence[str], count: int, key: bytes) -> Tuple[List[str], List[str]]:
  """(the rest, `count` files) of a sorted list, the `count` chosen by a keyed hash of the
  base names (see `split_files`; equal hashes, the same base name in two folders, in path
  order), each sorted. A million files take about 2 s."""
  digests = np.array([hashlib.sha1(key + f.rsplit(os.sep, 1)[-1].encode(
      "utf-8", "surrogateescape")).digest() for f in files], dtype="S20")
  chosen = np.zeros(len(files), bool)
  chosen[np.argsort(digests, kind="stable")[:count]] = True
  return ([f for f, c in zip(files, chosen) if not c], [f for f, c in zip(files, chosen) if c])


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
  return _hash_split(files, n_val, _SPLIT_KEY)


def hold_out_test(files: Sequence[str], test_fraction: float) -> Tuple[List[str], List[str]]:
  """(the rest, the test split): `test_fraction` of the files (rounded), chosen like
  `split_files` but by a key of its own, before the train/validation split, so that
  neither training nor validation ever reads a test image. 0 holds out nothing."""
  files = sorted(files)
  return _hash_split(files, int(round(len(files) * test_fraction)), _TEST_KEY)
