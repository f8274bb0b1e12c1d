r"""Command line: split a cleaned folder and build the TFDS data set that training reads.

  python -m mangacolor_jax.data.prepare --input data/clean --output data/tfds \
      [--split 70/20/10] [--seed 0] [--cluster_distance 10] [--cluster_colour 0.08]

Then train with `--config.data.source=tfds --config.data.tfds_dir=data/tfds` (see
configs/anime_faces_tfds.py).

`--input` is the output of `mangacolor_jax.data.clean` (its manifest gives ids, tags and
pHashes) or any folder of images (ids from the paths, hashes computed). It is only read.

The split is deterministic: a function of the images, `--split` and `--seed` only.
Near-duplicate clusters never straddle splits: images within `--cluster_distance` pHash bits
and `--cluster_colour` mean colour difference are linked (the clean's near-duplicate test,
looser by default so that pairs just outside the clean's thresholds are caught too), linked
images form clusters (connected components), and whole clusters are dealt out: ordered by a
hash of (seed, the cluster's smallest id), and each goes to the split in whose share of the
ordered images its middle falls, which gives the requested shares to within a cluster.

`--output` (a folder for this data set alone) gets the TFDS data set
`mangacolor_images/1.0.0/` (TFRecord shards of PNG images, ids and tags: see
`tfds_builder`), `splits.json` (the ids of each split and the clusters of more than one
image) and `prepare_report.json` (split sizes, cluster statistics, the settings and a
fingerprint of the inputs). The whole folder is built in a temporary folder beside `--output` and
swapped in when complete: the report is never ahead of the data set. Re-running with the
same inputs and settings does nothing (once the data set is checked to load with the
report's split sizes); with different ones it stops unless `--overwrite` is given. Only a
folder that prepare made, holding nothing but what it wrote there (its marker,
`.mangacolor_jax.json`, lists those files), is ever replaced.
"""

import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
from typing import Dict, List, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image

from mangacolor_jax.data import decoding
from mangacolor_jax.data import inputs
from mangacolor_jax.data import similarity
from mangacolor_jax.utils import files

SPLITS = ("train", "validation", "test")
SPLITS_FILE = "splits.json"
REPORT = "prepare_report.json"
COMMAND = "prepare"


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


def _file_sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def load_records(input_dir: str) -> List[dict]:
  """One record per image under `input_dir`: id, path, tags, file sha256, pHash, and how
  the builder gets its pixels (the file itself if it is an RGB PNG, else converted)."""
  if not os.path.isdir(input_dir):
    raise ValueError(f"--input={input_dir}: {os.path.abspath(input_dir)} is not a folder")
  items, _ = inputs.make_items(input_dir)
  if not items:
    raise ValueError(f"--input={input_dir}: no images in {os.path.abspath(input_dir)}")
  records = []
  for item in items:
    path = os.path.join(input_dir, item.source)
    with Image.open(path) as im:
      as_is = (im.format == "PNG" and im.mode == "RGB" and "transparency" not in im.info)
    phash = item.meta.get("phash")
    records.append({
        "id": item.id, "path": path, "tags": list(item.meta.get("tags", [])),
        "sha256": _file_sha256(path),
        "phash": int(phash, 16) if isinstance(phash, str) else None, "as_is": as_is})
  return records


def find_clusters(records: Sequence[dict], max_distance: int,
                  max_colour: float) -> List[List[int]]:
  """Near-duplicate clusters (lists of record indices), singletons included.

  Only the images in a pHash-close pair are decoded for the colour test (plus those whose
  pHash the input manifest does not give).
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
  return clusters_of(len(records), pairs)


def fingerprint(records: Sequence[dict], settings: dict) -> str:
  h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
  for r in sorted(records, key=lambda r: r["id"]):
    h.update(json.dumps([r["id"], r["sha256"], r["tags"]]).encode())
  return h.hexdigest()


def _report(output: str) -> dict | None:
  try:
    with open(os.path.join(output, REPORT), encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _complete(output: str, report: dict) -> bool:
  """Whether `output` holds the whole data set its report describes: a report is trusted
  only together with every file of every split, with the report's example counts."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.data import tfds_builder  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(tfds_builder.NAME, data_dir=output)
    splits = builder.info.splits if builder.is_prepared() else {}
    found = {s: splits[s].num_examples if s in splits else 0 for s in SPLITS}
    missing = [str(p) for s in SPLITS if s in splits for p in splits[s].filepaths
               if not os.path.exists(p)]
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("%s: the data set does not load (%s); building it again", output, e)
    return False
  if found != report.get("splits") or missing:
    logging.warning("%s: the data set has splits %s and lacks %d of its files, its report "
                    "says %s; building it again", output, found, len(missing),
                    report.get("splits"))
    return False
  return True


def _check_output(input_dir: str, output: str) -> dict | None:
  """Checks that `output` may be (re)built; returns its prepare marker, if any."""
  in_abs, out_abs = os.path.realpath(input_dir), os.path.realpath(output)
  if out_abs == in_abs or out_abs.startswith(in_abs + os.sep) or in_abs.startswith(
      out_abs + os.sep):
    raise ValueError(f"--output={output} must be outside --input={input_dir} (and not "
                     "contain it): the input is never written to")
  if not os.path.lexists(out_abs):
    return None
  if not os.path.isdir(out_abs):
    raise files.OutputError(f"--output={output} exists and is not a folder")
  if not os.listdir(out_abs):
    return None
  marker = files.read_marker(out_abs)
  if marker is None or marker["command"] != COMMAND:
    raise files.OutputError(
        f"--output={output} is not empty and is not a data set that prepare built (no "
        f"prepare {files.MARKER}): give a new or empty folder (it is for this data set "
        "alone)")
  foreign = files.foreign_files(out_abs, marker)
  if foreign:
    raise files.OutputError(
        f"--output={output} holds {len(foreign)} file(s) that prepare did not write (e.g. "
        f"{foreign[0]}); move them out, or give a new folder: prepare replaces its output "
        "as a whole")
  return marker


def prepare(input_dir: str, output: str, *, split: str = "70/20/10", seed: int = 0,
            cluster_distance: int = 10, cluster_colour: float = 0.08,
            overwrite: bool = False) -> dict:
  """Splits `input_dir` and builds the TFDS data set in `output`; returns the report.

  The whole of `output` is built in a folder beside it and swapped in when complete, so
  `output` always holds a whole data set (the old one or the new one) with its report.

  Raises:
    ValueError: naming the flag: bad --split, --input without images, a validation split
      that would be empty, or an --output holding something else.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.data import tfds_builder  # pylint: disable=g-import-not-at-top

  fractions = parse_split(split)
  marker = _check_output(input_dir, output)
  records = load_records(input_dir)
  settings = {"split": [round(f, 6) for f in fractions], "seed": seed,
              "cluster_distance": cluster_distance, "cluster_colour": cluster_colour,
              "builder": tfds_builder.NAME, "version": str(tfds_builder.MangacolorImages.VERSION)}
  print_ = fingerprint(records, settings)
  if marker is not None:
    old = _report(output)
    if old is not None and old.get("fingerprint") != print_ and not overwrite:
      raise ValueError(f"--output={output} holds a data set built from other images or "
                       "settings; pass --overwrite to replace it")
    if old is not None and old.get("fingerprint") == print_ and _complete(output, old):
      logging.info("%s is up to date (same images and settings); nothing to do.", output)
      return old

  clusters = find_clusters(records, cluster_distance, cluster_colour)
  ids = [r["id"] for r in records]
  assignment = assign_splits(ids, clusters, fractions, seed)
  by_split = {s: [records[i] for i in range(len(records)) if assignment[i] == s]
              for s in SPLITS}
  for s in ("train", "validation"):
    if not by_split[s]:
      raise ValueError(f"--split={split}: the {s} split would be empty ({len(records)} "
                       f"images in {len(clusters)} clusters); add images or change --split")

  def image_of(r):
    # Converted one at a time as the builder writes, not all held in memory.
    return r["path"] if r["as_is"] else functools.partial(decoding.read_rgb, r["path"])

  builder_records = {s: [{"image": image_of(r), "id": r["id"], "tags": r["tags"]}
                         for r in sorted(rs, key=lambda r: r["id"])]
                     for s, rs in by_split.items()}
  out_abs = os.path.realpath(output)
  os.makedirs(os.path.dirname(out_abs), exist_ok=True)
  stage = tempfile.mkdtemp(prefix=f".{os.path.basename(out_abs)}.partial-",
                           dir=os.path.dirname(out_abs))
  try:
    tfds.disable_progress_bar()
    builder = tfds_builder.MangacolorImages(records=builder_records, data_dir=stage,
                                            file_format="tfrecord")
    builder.download_and_prepare()
    # Load what was written, as training will.
    info = tfds.builder(tfds_builder.NAME, data_dir=stage).info
    sizes = {s: info.splits[s].num_examples if s in info.splits else 0 for s in SPLITS}
    expected = {s: len(rs) for s, rs in by_split.items()}
    if sizes != expected:
      raise RuntimeError(f"{output}: the built splits have {sizes} examples, expected "
                         f"{expected}")
    big = [c for c in clusters if len(c) > 1]
    files.write_json(os.path.join(stage, SPLITS_FILE), {
        "splits": {s: sorted(r["id"] for r in rs) for s, rs in by_split.items()},
        "clusters": [sorted(ids[i] for i in c) for c in big]})
    report = {
        "input": os.path.abspath(input_dir), "data_dir": os.path.abspath(output),
        "name": tfds_builder.NAME, "version": settings["version"], "settings": settings,
        "fingerprint": print_, "images": len(records), "splits": sizes,
        "split_shares": {s: round(n / len(records), 4) for s, n in sizes.items()},
        "clusters": len(clusters), "clusters_of_several": len(big),
        "images_in_clusters_of_several": sum(len(c) for c in big),
        "largest_cluster": max(len(c) for c in clusters),
        "bytes": {s: int(info.splits[s].num_bytes) for s in SPLITS if s in info.splits},
    }
    files.write_json(os.path.join(stage, REPORT), report)
    files.write_marker(stage, COMMAND, files.list_files(stage))
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
  logging.info("prepared %s: %s", output, json.dumps(report["splits"]))
  return report


FLAGS = flags.FLAGS


def define_flags():
  """The command's flags; defined only when it runs, so that the module imports cleanly
  beside the other commands (several define --input / --output)."""
  flags.DEFINE_string("input", None, "Cleaned folder (the --output of the clean command).")
  flags.DEFINE_string("output", None, "Folder for the TFDS data set (config.data.tfds_dir).")
  flags.DEFINE_string("split", "70/20/10", "train/validation/test shares.")
  flags.DEFINE_integer("seed", 0, "Seed of the split.")
  flags.DEFINE_integer("cluster_distance", 10, "pHash bits within which images are linked "
                       "into one near-duplicate cluster.")
  flags.DEFINE_float("cluster_colour", 0.08, "...and the largest mean colour difference (8x8 "
                     "thumbnails, [0, 1]).")
  flags.DEFINE_bool("overwrite", False, "Replace a data set built from other images or "
                    "settings.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  for name in ("input", "output"):
    if not FLAGS[name].value:
      raise app.UsageError(f"--{name} is required")
  try:
    report = prepare(FLAGS.input, FLAGS.output, split=FLAGS.split, seed=FLAGS.seed,
                     cluster_distance=FLAGS.cluster_distance,
                     cluster_colour=FLAGS.cluster_colour, overwrite=FLAGS.overwrite)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(json.dumps({k: report[k] for k in ("data_dir", "images", "splits", "clusters",
                                           "largest_cluster")}, sort_keys=True))


if __name__ == "__main__":
  define_flags()
  app.run(main)
