"""Prepare as a library: a folder of images split and built into the TFDS data set.

`prepare(input_dir, output, ...)` reads a clean's output (or any folder of images), deals
the images out to splits (`splitting`) and builds `output` anew with `tfds_builder`: the
data set, `splits.json` and `prepare_report.json`. See `mangacolor_jax.data.prepare` for the
command and what it promises.
"""

import functools
import hashlib
import json
import os
from typing import Dict, List, Optional, Sequence

from absl import logging
from PIL import Image

from mangacolor_jax.data import decoding
from mangacolor_jax.data import inputs
from mangacolor_jax.data import splitting
from mangacolor_jax.data import staging
from mangacolor_jax.utils import files

SPLITS_FILE = "splits.json"
REPORT = "prepare_report.json"
COMMAND = "prepare"


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


def fingerprint(records: Sequence[dict], settings: dict) -> str:
  h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
  for r in sorted(records, key=lambda r: r["id"]):
    h.update(json.dumps([r["id"], r["sha256"], r["tags"]]).encode())
  return h.hexdigest()


def _sizes(splits) -> Dict[str, int]:
  """Examples per split name of SPLITS (0 for a split that was not written)."""
  return {s: splits[s].num_examples if s in splits else 0 for s in splitting.SPLITS}


def _report(output: str) -> dict | None:
  try:
    with open(os.path.join(output, REPORT), encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _complete(output: str, report: dict) -> bool:
  """Whether `output` holds the whole data set its report describes: a report is trusted
  only together with every file of every split, with the report's example counts."""
  # TensorFlow Datasets only to load a data set: it takes seconds to import.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.input_pipeline import tfds_builder  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(tfds_builder.NAME, data_dir=output)
    splits = builder.info.splits if builder.is_prepared() else {}
    found = _sizes(splits)
    missing = [str(p) for s in splitting.SPLITS if s in splits for p in splits[s].filepaths
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


def _up_to_date(output: str, print_: str, overwrite: bool) -> Optional[dict]:
  """The report of the data set in `output` if it is whole and built from the same images
  and settings (fingerprint `print_`); None when it is to be built (again).

  Raises:
    ValueError: when it was built from others and `overwrite` is off.
  """
  old = _report(output)
  if old is not None and old.get("fingerprint") != print_ and not overwrite:
    raise ValueError(f"--output={output} holds a data set built from other images or "
                     "settings; pass --overwrite to replace it")
  if old is not None and old.get("fingerprint") == print_ and _complete(output, old):
    logging.info("%s is up to date (same images and settings); nothing to do.", output)
    return old
  return None


def _by_split(records: Sequence[dict], clusters: Sequence[Sequence[int]],
              fractions: Sequence[float], seed: int, split: str) -> Dict[str, List[dict]]:
  """The records of each split (`splitting.assign_splits`).

  Raises:
    ValueError: when the train or the validation split would be empty.
  """
  assignment = splitting.assign_splits([r["id"] for r in records], clusters, fractions, seed)
  by_split = {s: [records[i] for i in range(len(records)) if assignment[i] == s]
              for s in splitting.SPLITS}
  for s in ("train", "validation"):
    if not by_split[s]:
      raise ValueError(f"--split={split}: the {s} split would be empty ({len(records)} "
                       f"images in {len(clusters)} clusters); add images or change --split")
  return by_split


def _builder_records(by_split: Dict[str, List[dict]]) -> Dict[str, List[dict]]:
  """`tfds_builder.MangacolorImages`'s records, sorted by id in each split."""
  def image_of(r):
    # Converted one at a time as the builder writes, not all held in memory.
    return r["path"] if r["as_is"] else functools.partial(decoding.read_rgb, r["path"])

  return {s: [{"image": image_of(r), "id": r["id"], "tags": r["tags"]}
              for r in sorted(rs, key=lambda r: r["id"])]
          for s, rs in by_split.items()}


def _statistics(records: Sequence[dict], clusters: Sequence[Sequence[int]], info) -> dict:
  """The report's numbers: images, split sizes and shares, clusters, bytes."""
  sizes = _sizes(info.splits)
  big = [c for c in clusters if len(c) > 1]
  return {
      "images": len(records), "splits": sizes,
      "split_shares": {s: round(n / len(records), 4) for s, n in sizes.items()},
      "clusters": len(clusters), "clusters_of_several": len(big),
      "images_in_clusters_of_several": sum(len(c) for c in big),
      "largest_cluster": max(len(c) for c in clusters),
      "bytes": {s: int(info.splits[s].num_bytes) for s in splitting.SPLITS
                if s in info.splits},
  }


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
  # TensorFlow Datasets only to build a data set: it takes seconds to import.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.input_pipeline import tfds_builder  # pylint: disable=g-import-not-at-top

  fractions = splitting.parse_split(split)
  marker = staging.check_replaceable(
      input_dir, output, COMMAND,
      f"is not a data set that prepare built (no prepare {files.MARKER}): give a new or "
      "empty folder (it is for this data set alone)")
  records = load_records(input_dir)
  settings = {"split": [round(f, 6) for f in fractions], "seed": seed,
              "cluster_distance": cluster_distance, "cluster_colour": cluster_colour,
              "builder": tfds_builder.NAME, "version": str(tfds_builder.MangacolorImages.VERSION),
              "file_format": tfds_builder.FILE_FORMAT}
  print_ = fingerprint(records, settings)
  old = _up_to_date(output, print_, overwrite) if marker is not None else None
  if old is not None:
    return old
  clusters = splitting.find_clusters(records, cluster_distance, cluster_colour)
  by_split = _by_split(records, clusters, fractions, seed, split)
  with staging.build_beside(output, COMMAND) as stage:
    tfds.disable_progress_bar()
    builder = tfds_builder.MangacolorImages(records=_builder_records(by_split), data_dir=stage,
                                            file_format=tfds_builder.FILE_FORMAT)
    low, high = tfds_builder.SHARD_BYTES
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        min_shard_size=low, max_shard_size=high))
    # Load what was written, as training will.
    info = tfds.builder(tfds_builder.NAME, data_dir=stage).info
    expected = {s: len(rs) for s, rs in by_split.items()}
    if _sizes(info.splits) != expected:
      raise RuntimeError(f"{output}: the built splits have {_sizes(info.splits)} examples, "
                         f"expected {expected}")
    files.write_json(os.path.join(stage, SPLITS_FILE), {
        "splits": {s: sorted(r["id"] for r in rs) for s, rs in by_split.items()},
        "clusters": [sorted(records[i]["id"] for i in c) for c in clusters if len(c) > 1]})
    report = {"input": os.path.abspath(input_dir), "data_dir": os.path.abspath(output),
              "name": tfds_builder.NAME, "version": settings["version"], "settings": settings,
              "fingerprint": print_, **_statistics(records, clusters, info)}
    files.write_json(os.path.join(stage, REPORT), report)
  logging.info("prepared %s: %s", output, json.dumps(report["splits"]))
  return report
