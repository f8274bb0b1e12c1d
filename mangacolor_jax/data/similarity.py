"""Telling near copies apart: perceptual hashes, colour thumbnails, pairs and clusters.

The clean drops the smaller image of a near-duplicate pair (`near_duplicate_pairs`);
prepare keeps whole clusters of them (`clusters_of`) in one split.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image


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


def clusters_of(n: int, pairs: Sequence[Tuple[int, int]]) -> List[List[int]]:
  """Connected components (sorted lists of indices) of the graph on range(n) with `pairs`."""
  parent = list(range(n))

  def root(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  for a, b in pairs:
    ra, rb = root(a), root(b)
    if ra != rb:
      parent[max(ra, rb)] = min(ra, rb)
  groups: Dict[int, List[int]] = {}
  for i in range(n):
    groups.setdefault(root(i), []).append(i)
  return sorted(groups.values())
