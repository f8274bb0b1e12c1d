"""Reading the TFDS data set that `python -m mangacolor_jax.data.prepare` builds."""

import functools
import os
from typing import Tuple

from absl import logging
import tensorflow_datasets as tfds

from mangacolor_jax.input_pipeline import tf_cpu  # pylint: disable=unused-import
# Importing the builder registers it, so that TFDS checks the data set's version.
from mangacolor_jax.input_pipeline import tfds_builder


def fields(config) -> Tuple[str, str, str, str]:
  """(tfds_dir, the data set's name, train split, eval split) of `config.data`."""
  data = config.data
  return (os.path.expanduser(str(data.tfds_dir)), tfds_builder.NAME,
          str(data.tfds_train_split), str(data.tfds_eval_split))


def open_builder(tfds_dir: str, name: str):
  """The prepared builder in `tfds_dir`; raises ValueError naming config.data.tfds_dir."""
  how = "build one with python -m mangacolor_jax.data.prepare --input CLEAN --output DIR"
  if not tfds_dir:
    raise ValueError(f"config.data.tfds_dir is empty: set it to a prepared folder ({how})")
  if not os.path.isdir(tfds_dir):
    raise ValueError(f"config.data.tfds_dir={tfds_dir!r}: folder {os.path.abspath(tfds_dir)} "
                     "does not exist")
  try:
    builder = tfds.builder(name, data_dir=tfds_dir)
    prepared = builder.is_prepared()
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"config.data.tfds_dir={tfds_dir!r}: {type(e).__name__}: {e}") from None
  if not prepared:
    raise ValueError(f"config.data.tfds_dir={tfds_dir!r}: no prepared data set {name!r} "
                     f"(looked in {os.path.join(os.path.abspath(tfds_dir), name)}); {how}")
  return builder


def load_split(tfds_dir: str, name: str,
               split: str) -> Tuple[Tuple[bytes, ...], Tuple[str, ...]]:
  """(encoded images, ids) of a split, ordered by id; read once per process and split.

  The cache key holds the time the data set was written, so a data set rebuilt in place
  (prepare --overwrite) is read again.
  """
  builder = open_builder(tfds_dir, name)
  info = os.path.join(str(builder.data_dir), "dataset_info.json")
  stamp = os.stat(info).st_mtime_ns if os.path.exists(info) else 0
  return _read_tfds_split(tfds_dir, name, split, stamp)



@functools.lru_cache(maxsize=4)
def _read_tfds_split(tfds_dir: str, name: str, split: str,
                     stamp: int) -> Tuple[Tuple[bytes, ...], Tuple[str, ...]]:
  del stamp  # only part of the cache key
  builder = open_builder(tfds_dir, name)
  has_id = "id" in builder.info.features
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={"image": tfds.decode.SkipDecoding()})
  ds = ds.map(lambda ex: (ex["image"], ex["id"] if has_id else ""))
  encoded, ids = [], []
  for images, names in ds.batch(1024).as_numpy_iterator():
    encoded.extend(images.tolist())
    ids.extend(n.decode("utf-8") for n in names.tolist())
  if has_id:
    # By id, so that example i does not depend on how TFDS sharded or interleaved the files.
    order = sorted(range(len(ids)), key=ids.__getitem__)
    encoded, ids = [encoded[i] for i in order], [ids[i] for i in order]
  else:
    ids = [f"{split}_{i:07d}" for i in range(len(encoded))]
  logging.info("TFDS %s/%s split %s: %d images, %.1f MB encoded, in memory.", tfds_dir, name,
               split, len(encoded), sum(map(len, encoded)) / 1e6)
  return tuple(encoded), tuple(ids)
