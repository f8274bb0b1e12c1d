"""TFDS builder of a colorization data set made by `python -m mangacolor_jax.data.prepare`.

Build it with that command (it decides the splits and calls `download_and_prepare` here,
from Python: no `tfds` command line, no apache_beam). Load it anywhere with

  import tensorflow_datasets as tfds
  from mangacolor_jax.input_pipeline import tfds_builder  # registers the builder (optional)
  records = tfds.builder(tfds_builder.NAME, data_dir=DATA_DIR).as_data_source("train")
  records[0]  # {"image": uint8 [H, W, 3], "id": bytes, "tags": [bytes]}, read from disk

Without the import TFDS still loads it, read-only, from the files in DATA_DIR.

Each example: "image" (uint8 [H, W, 3] RGB, stored as PNG at its own size), "id" (the
image's id from the crawl or the clean), "tags" (its tags, possibly none). Splits: "train",
"validation" and "test" (a split with no images is not written).

prepare stores it as ArrayRecord shards of 64-256 MB (`SHARD_BYTES`), written in the order
of the ids (`disable_shuffling`): record i of a split is its i-th id, and training reads
any record from disk without reading the others (`builder.as_data_source`), so a split
larger than memory trains with the same shuffle and resume as a small one. Data sets that
earlier versions stored as TFRecord still load, read whole into memory.
"""

from typing import Dict, List, Optional

import tensorflow_datasets as tfds

NAME = "mangacolor_images"
FILE_FORMAT = "array_record"
# (min, max) bytes per shard: few enough files to open, small enough to write and copy.
SHARD_BYTES = (64 << 20, 256 << 20)


class MangacolorImages(tfds.core.GeneratorBasedBuilder):
  """Colour illustrations for line-art colorization, with ids and tags."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Colour image, id and tags per example."}

  def __init__(self, *, records: Optional[Dict[str, List[dict]]] = None, **kwargs):
    """Args:
      records: only to build: split name -> [{"image": path of an RGB PNG, uint8
        [H, W, 3] array, or a function returning one, "id": str, "tags": [str]}].
        Loading needs none.
      **kwargs: for `tfds.core.GeneratorBasedBuilder` (data_dir, file_format, ...).
    """
    self._records = records
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=("Colour illustrations cleaned and split by mangacolor_jax "
                     "(python -m mangacolor_jax.data.prepare). Line art is made from them "
                     "during training."),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            "id": tfds.features.Text(),
            "tags": tfds.features.Sequence(tfds.features.Text()),
        }),
        homepage="https://pypi.org/project/mangacolor_jax",
        # Records in the order of the examples' keys (prepare sorts them by id), not hashed.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is local
    if self._records is None:
      raise ValueError(f"{NAME} is built by `python -m mangacolor_jax.data.prepare`, which "
                       "passes the split records; it cannot be downloaded")
    return {split: self._generate_examples(records)
            for split, records in self._records.items() if records}

  def _generate_examples(self, records):
    # Integer keys: with shuffling off, TFDS writes the records in the order of their keys.
    for key, record in enumerate(records):
      image = record["image"]
      yield key, {"image": image() if callable(image) else image,
                           "id": record["id"], "tags": list(record["tags"])}
