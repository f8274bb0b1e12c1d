"""Reading the TFDS data set that `python -m mangacolor_jax.data.prepare` builds.

Two ways, `config.data.tfds_in_memory`: False (the default) reads each record from disk
when the pipeline asks for it (`open_split`: ArrayRecord's random access, host memory flat
in the data set's size); True reads a split whole into host memory once (`load_split`: for
small sets, and the only way for data sets stored as TFRecord by earlier versions).
"""

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


def random_access(builder) -> bool:
  """Whether the data set's records can be read one by one (ArrayRecord)."""
  formats = builder.info.available_file_formats()
  return bool(formats & set(tfds.core.FileFormat.with_random_access()))


def open_split(tfds_dir: str, name: str, split: str):
  """The split as a sequence of records ({"image": encoded bytes, "id": bytes, ...}) read
  from disk on indexing; record i is the split's i-th id (prepare writes them in order).

  Raises:
    ValueError: naming config.data.tfds_in_memory, for a data set stored as TFRecord.
  """
  builder = open_builder(tfds_dir, name)
  if not random_access(builder):
    raise ValueError(
        f"config.data.tfds_in_memory=False: the data set in {tfds_dir} is stored as "
        f"{builder.info.file_format.value}, which cannot be read record by record: set "
        "config.data.tfds_in_memory=True (the split is then held in host memory) or build "
        "it again with python -m mangacolor_jax.data.prepare --overwrite (ArrayRecord)")
  return builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})


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
  if random_access(builder):
    records = open_split(tfds_dir, name, split)
    encoded, ids = [], []
    for i in range(len(records)):
      record = records[i]
      encoded.append(record["image"])
      ids.append(record["id"].decode("utf-8"))
    _log_in_memory(tfds_dir, name, split, encoded)
    return tuple(encoded), tuple(ids)
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
  _log_in_memory(tfds_dir, name, split, encoded)
  return tuple(encoded), tuple(ids)


def _log_in_memory(tfds_dir, name, split, encoded) -> None:
  logging.info("TFDS %s/%s split %s: %d images, %.1f MB encoded, in memory.", tfds_dir, name,
               split, len(encoded), sum(map(len, encoded)) / 1e6)
