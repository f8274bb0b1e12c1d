"""How prepare deals images out to train, validation and test: whole clusters at a time.

Near-duplicate images are linked (`find_clusters`) so that a near copy of a training image
never lands in the test split; the clusters are then dealt out in a seeded order to the
requested shares (`assign_splits`).
"""

import hashlib
from typing import Dict, List, Sequence, Tuple

import numpy as np

from mangacolor_jax.data import decoding
from mangacolor_jax.data import similarity

SPLITS = ("train", "validation", "test")


def parse_split(text: str) -> Tuple[float, float, float]:
  """'70/20/10' -> (0.7, 0.2, 0.1); any positive total is normalised.

  Raises:
    ValueError: naming --split, unless it is three numbers >= 0 with train and validation
      > 0.
  """
  try:
    parts = [float(p) for p in text.split("/")]
  except ValueError:
    parts = []
  if len(parts) != 3 or min(parts) < 0 or parts[0] <= 0 or parts[1] <= 0:
    raise ValueError(f"--split={text!r} must be train/validation/test shares such as "
                     "70/20/10 (train and validation > 0, test >= 0)")
  total = sum(parts)
  return tuple(p / total for p in parts)  # type: ignore[return-value]


def find_clusters(records: Sequence[dict], max_distance: int,
                  max_colour: float) -> List[List[int]]:
  """Near-duplicate clusters (lists of record indices), singletons included.

  Only the images in a pHash-close pair are decoded for the colour test (plus those whose
  pHash the input manifest does not give).

  Args:
    records: prepare's records ("path" and "phash", None where the manifest gave none:
      it is computed and stored).
    max_distance: largest pHash distance of a linked pair, in bits.
    max_colour: largest mean colour difference of a linked pair, [0, 1] scale.
  """
  for r in records:
    if r["phash"] is None:
      r["phash"] = similarity.phash(decoding.read_rgb(r["path"]))
  hashes = np.array([r["phash"] for r in records], np.uint64)
  # Stage 1 on hashes alone (colour test off), stage 2 on the colours of those pairs.
  candidates = similarity.near_duplicate_pairs(
      hashes, np.zeros((len(records), 1, 1, 1), np.float32), max_distance, 1.0)
  colours: Dict[int, np.ndarray] = {}
  for i in sorted({i for pair in candidates for i in pair}):
    colours[i] = similarity.colour_thumbnail(decoding.read_rgb(records[i]["path"]))
  pairs = [(a, b) for a, b in candidates
           if float(np.abs(colours[a] - colours[b]).mean()) <= max_colour]
  return similarity.clusters_of(len(records), pairs)


def assign_splits(ids: Sequence[str], clusters: Sequence[Sequence[int]],
                  fractions: Sequence[float], seed: int) -> List[str]:
  """The split (a name of SPLITS) of each image; whole clusters go to one split.

  Args:
    ids: image ids (unique).
    clusters: a partition of range(len(ids)).
    fractions: shares of train, validation, test (summing to 1).
    seed: the shuffle.

  Returns:
    One split name per id.
  """
  def key(cluster):
    first = min(ids[i] for i in cluster)
    return hashlib.sha256(f"mangacolor_jax/prepare/v1:{seed}:{first}".encode()).digest()

  n = len(ids)
  bounds = np.cumsum(fractions) * n
  out = [""] * n
  position = 0
  for cluster in sorted(clusters, key=key):
    middle = position + len(cluster) / 2
    split = SPLITS[min(int(np.searchsorted(bounds, middle, side="right")), len(SPLITS) - 1)]
    for i in cluster:
      out[i] = split
    position += len(cluster)
  return out
