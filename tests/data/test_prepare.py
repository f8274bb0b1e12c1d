"""Tests of `mangacolor_jax.data.prepare`: the split and the TFDS build / load round trip."""

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from PIL import ImageDraw
import pytest
import tensorflow_datasets as tfds

from mangacolor_jax.data import cleaner
from mangacolor_jax.data import preparer
from mangacolor_jax.data import similarity
from mangacolor_jax.data import splitting
from mangacolor_jax.input_pipeline import tfds_builder
from mangacolor_jax.utils import files


def drawing(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
  """A distinct flat-colour picture of outlined ellipses."""
  rng = np.random.default_rng(seed)
  image = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(150, 256, 3)))
  draw = ImageDraw.Draw(image)
  for _ in range(5):
    cx, cy, rx, ry = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h, 0.3 * w, 0.3 * h
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry],
                 fill=tuple(int(c) for c in rng.integers(0, 256, 3)), outline=(20, 20, 20),
                 width=2)
  return np.asarray(image)


def make_folder(root: Path, singles: int = 24, clusters: int = 4):
  """Singletons plus clusters of 3 near copies (brightness +-3); a manifest with tags.

  Returns ({id: expected RGB}, [set of ids of each cluster]).
  """
  root.mkdir(parents=True)
  expected, groups, lines = {}, [], []
  for i in range(singles + clusters):
    base = drawing(i)
    copies = [base] if i < singles else [base, np.clip(base.astype(int) + 3, 0, 255),
                                         np.clip(base.astype(int) - 3, 0, 255)]
    group = set()
    for k, image in enumerate(copies):
      image_id = f"img{i:02d}_{k}"
      image = image.astype(np.uint8)
      if i == 0:  # a JPEG: converted to PNG on the way in
        Image.fromarray(image).save(root / f"{image_id}.jpg", quality=95)
        image = np.asarray(Image.open(root / f"{image_id}.jpg").convert("RGB"))
        name = f"{image_id}.jpg"
      else:
        Image.fromarray(image).save(root / f"{image_id}.png")
        name = f"{image_id}.png"
      expected[image_id] = image
      group.add(image_id)
      lines.append(json.dumps({"id": image_id, "file": name, "tags": ["1girl", f"t{i % 3}"]}))
    if len(copies) > 1:
      groups.append(group)
  (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
  return expected, groups


def _load(data_dir, split):
  """The split's records by id, read as training reads them (ArrayRecord, record by
  record), after checking that they are stored in id order."""
  records = tfds.builder(tfds_builder.NAME, data_dir=str(data_dir)).as_data_source(split)
  ids = [records[i]["id"].decode() for i in range(len(records))]
  assert ids == sorted(ids), f"the {split} split is not stored in id order"
  return {i: records[k] for k, i in enumerate(ids)}


def test_parse_split():
  assert splitting.parse_split("70/20/10") == pytest.approx((0.7, 0.2, 0.1))
  assert splitting.parse_split("7/2/1") == pytest.approx((0.7, 0.2, 0.1))
  assert splitting.parse_split("80/20/0") == pytest.approx((0.8, 0.2, 0.0))
  for bad in ("70/30", "0/50/50", "a/b/c", "70/0/30", "70/-20/50"):
    with pytest.raises(ValueError, match="--split"):
      splitting.parse_split(bad)


def test_assign_splits_is_deterministic_balanced_and_keeps_clusters_whole():
  rng = np.random.default_rng(0)
  ids = [f"id{i:04d}" for i in range(1000)]
  order = rng.permutation(1000)
  clusters, start = [], 0
  while start < 1000:  # clusters of 1 to 6 images over a shuffled order
    size = int(rng.integers(1, 7))
    clusters.append(sorted(order[start:start + size].tolist()))
    start += size
  fractions = (0.7, 0.2, 0.1)
  a = splitting.assign_splits(ids, clusters, fractions, seed=0)
  assert a == splitting.assign_splits(ids, clusters, fractions, seed=0)
  for cluster in clusters:
    assert len({a[i] for i in cluster}) == 1
  for split, share in zip(splitting.SPLITS, fractions):
    assert abs(a.count(split) - share * 1000) <= 6  # within one cluster
  assert splitting.assign_splits(ids, clusters, fractions, seed=1) != a
  # The same images listed in another order get the same splits.
  perm = rng.permutation(1000)
  inverse = np.argsort(perm)
  shuffled = splitting.assign_splits([ids[p] for p in perm],
                                     [sorted(int(inverse[i]) for i in c) for c in clusters],
                                     fractions, seed=0)
  assert [shuffled[int(inverse[i])] for i in range(1000)] == a


def test_clusters_of():
  assert similarity.clusters_of(6, [(0, 1), (1, 2), (4, 5)]) == [[0, 1, 2], [3], [4, 5]]


def test_prepare_round_trip_without_leakage(tmp_path):
  expected, groups = make_folder(tmp_path / "clean")
  before = {p: p.stat().st_mtime_ns for p in (tmp_path / "clean").iterdir()}
  data_dir = tmp_path / "tfds"
  report = preparer.prepare(str(tmp_path / "clean"), str(data_dir), seed=3)
  assert {p: p.stat().st_mtime_ns for p in (tmp_path / "clean").iterdir()} == before
  splits = json.loads((data_dir / preparer.SPLITS_FILE).read_text())["splits"]
  assert sum(report["splits"].values()) == len(expected) == report["images"]
  seen = {}
  for split in splitting.SPLITS:
    loaded = _load(data_dir, split)
    assert sorted(loaded) == splits[split] and len(loaded) == report["splits"][split]
    for image_id, ex in loaded.items():
      np.testing.assert_array_equal(ex["image"], expected[image_id], err_msg=image_id)
      i = int(image_id[3:5])
      assert [t.decode() for t in ex["tags"]] == ["1girl", f"t{i % 3}"]
      seen[image_id] = split
  assert sorted(seen) == sorted(expected)
  for group in groups:  # near copies are never in two splits
    assert len({seen[i] for i in group}) == 1, group
  assert report["clusters_of_several"] == len(groups) and report["largest_cluster"] == 3

  # Same inputs and settings: nothing is rebuilt.
  shard = next((data_dir / tfds_builder.NAME / "1.0.0").glob("*train.array_record*"))
  mtime = shard.stat().st_mtime_ns
  assert preparer.prepare(str(tmp_path / "clean"), str(data_dir), seed=3) == report
  assert shard.stat().st_mtime_ns == mtime
  # Other settings: refused, unless --overwrite.
  with pytest.raises(ValueError, match="--overwrite"):
    preparer.prepare(str(tmp_path / "clean"), str(data_dir), seed=4)
  again = preparer.prepare(str(tmp_path / "clean"), str(data_dir), seed=4, overwrite=True)
  assert again["fingerprint"] != report["fingerprint"]
  assert sum(len(_load(data_dir, s)) for s in splitting.SPLITS) == len(expected)
  assert not [p for p in os.listdir(data_dir)  # no staging left
              if p.startswith(".") and p != files.MARKER]
  # A folder that holds something else is not touched.
  foreign = tmp_path / "foreign"
  foreign.mkdir()
  (foreign / "notes.txt").write_text("mine")
  with pytest.raises(ValueError, match="not empty"):
    preparer.prepare(str(tmp_path / "clean"), str(foreign))
  with pytest.raises(ValueError, match="validation split would be empty"):
    preparer.prepare(str(tmp_path / "clean"), str(tmp_path / "x"), split="99.9/0.01/0.09")


def test_clean_then_prepare_on_real_faces(ci_faces, tmp_path):
  report = cleaner.clean(str(ci_faces), str(tmp_path / "clean"), cleaner.Options(workers=2))
  kept = report["counts"]["kept"]
  assert kept >= 60  # 64 distinct real faces: at most a few dropped
  prepared = preparer.prepare(str(tmp_path / "clean"), str(tmp_path / "tfds"))
  assert sum(prepared["splits"].values()) == kept
  assert abs(prepared["splits"]["train"] - 0.7 * kept) <= 3
  train = _load(tmp_path / "tfds", "train")
  some = next(iter(train.values()))
  assert some["image"].shape == (64, 64, 3) and some["image"].dtype == np.uint8
  with Image.open(tmp_path / "clean" / "images" / f"{some['id'].decode()}.png") as im:
    np.testing.assert_array_equal(some["image"], np.asarray(im))
