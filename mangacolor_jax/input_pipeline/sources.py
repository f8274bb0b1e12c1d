"""Where the colour images of a split come from: one class per `config.data.source`.

A source has `size` items; `load(i)` gives item i as float32 [h, w, 3] RGB in [0, 1] and
`name(i)` its name, both TensorFlow ops on a scalar index tensor, for use inside
`Dataset.map`. `create_source(config, split)` picks the class.
"""

from concurrent import futures
import os
import sys
from typing import List, Optional

from absl import logging
import numpy as np
from PIL import Image

from mangacolor_jax.input_pipeline import config_check
from mangacolor_jax.input_pipeline import files
from mangacolor_jax.input_pipeline import ops
from mangacolor_jax.input_pipeline import synthetic
from mangacolor_jax.input_pipeline import tfds_data
from mangacolor_jax.input_pipeline.tf_cpu import tf

# Renderer seed of the synthetic data set. Fixed (not config.seed) so that the validation
# images, and so the validation metrics, are comparable between runs.
SYNTHETIC_DATA_SEED = 20180101


class SyntheticSource:
  """The procedural character (`synthetic.render`): train items are renderer indices
  [0, num_train), validation items the next num_val, test items the num_val after those,
  at the output size."""
  decodes_files = False

  def __init__(self, config, split: str):
    data = config.data
    self.hw = config_check.image_hw(config)
    if split == "train":
      self.first, self.size = 0, int(data.num_train)
    elif split == "test":
      self.first, self.size = int(data.num_train) + int(data.num_val), int(data.num_val)
    else:
      self.first = int(data.num_train)
      self.size = min(int(data.num_val), int(data.max_val_images))

  def load(self, i: tf.Tensor) -> tf.Tensor:
    h, w = self.hw
    first = self.first
    image = tf.numpy_function(
        lambda j: synthetic.render(SYNTHETIC_DATA_SEED, first + int(j), h, w), [i],
        tf.uint8, stateful=False)
    image = tf.ensure_shape(image, [h, w, 3])
    return tf.cast(image, tf.float32) * (1.0 / 255.0)

  def name(self, i: tf.Tensor) -> tf.Tensor:
    """synthetic_{index:05d}.png"""
    number = tf.strings.as_string(tf.cast(i, tf.int64) + self.first, width=5, fill="0")
    return tf.strings.join(["synthetic_", number, ".png"])


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _decodes(path: str) -> bool:
  """Whether the stream's decoder will read the file. A PNG is checked without inflating
  its pixels (PIL's `verify`: every chunk present, its CRC right, up to the end marker),
  3x faster than decoding it; other files are decoded by the stream's decoder."""
  try:
    with open(path, "rb") as f:
      is_png = f.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE
    if is_png:
      with Image.open(path) as im:
        im.verify()
      return True
    tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)
    return True
  except (tf.errors.OpError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
    return False


def drop_undecodable(paths: List[str]) -> tuple[List[str], List[str]]:
  """(the files that decode, those that do not), each in the given order.

  Every file is checked once (`_decodes`) before the stream is built: a file that fails
  later would be dropped from the stream and shift every later example, which breaks
  exact resume (it restarts at step * batch_size) and ends an evaluation.
  """
  with futures.ThreadPoolExecutor(8) as pool:
    ok = list(pool.map(_decodes, paths))
  return ([p for p, k in zip(paths, ok) if k], [p for p, k in zip(paths, ok) if not k])


# Folders with at most this many files are checked whole at start-up (`file_check="auto"`).
FULL_CHECK_MAX_FILES = 20_000
# How far past a broken file the lazy check looks for one that is whole (`_read_whole`).
_LAZY_TRIES = 8
_TAIL = 64  # bytes at a file's end searched for its end marker


def _bytes(data: bytes) -> tf.Tensor:
  return tf.constant(list(data), tf.uint8)


def _find(tail: tf.Tensor, marker: bytes) -> tf.Tensor:
  """Whether the byte string `marker` occurs in the bytes `tail` (uint8 [_TAIL])."""
  k = len(marker)
  hits = tf.equal(tail[:_TAIL - k + 1], marker[0])
  for j in range(1, k):
    hits = tf.logical_and(hits, tf.equal(tail[j:_TAIL - k + 1 + j], marker[j]))
  return tf.reduce_any(hits)


def looks_whole(contents: tf.Tensor) -> tf.Tensor:
  """Whether encoded bytes look like a whole image, from their first and last bytes alone:
  a PNG signature and its IEND chunk, a JPEG's start and end markers (EOI), or a RIFF/WEBP
  header whose size the file fills. What fails is empty, not an image (an HTML page saved
  as .jpg) or cut short, as interrupted downloads are. No control flow: a few dozen small
  ops, cheap beside decoding."""
  n = tf.cast(tf.strings.length(contents), tf.int64)
  padded = tf.strings.join([b"\0" * _TAIL, contents, b"\0" * 12])
  head = tf.io.decode_raw(tf.strings.substr(padded, _TAIL, 12), tf.uint8)
  tail = tf.io.decode_raw(tf.strings.substr(padded, tf.strings.length(padded) - 12 - _TAIL,
                                            _TAIL), tf.uint8)
  starts = lambda data, at=0: tf.reduce_all(tf.equal(head[at:at + len(data)], _bytes(data)))
  riff_size = tf.reduce_sum(tf.cast(head[4:8], tf.int64) * [1, 2**8, 2**16, 2**24])
  png = tf.logical_and(starts(_PNG_SIGNATURE), _find(tail, b"IEND"))
  jpeg = tf.logical_and(starts(b"\xff\xd8\xff"), _find(tail, b"\xff\xd9"))
  webp = tf.logical_and(tf.logical_and(starts(b"RIFF"), starts(b"WEBP", 8)),
                        n >= riff_size + 8)
  return tf.logical_and(n >= 12, tf.logical_or(png, tf.logical_or(jpeg, webp)))


def relative_paths(paths: List[str], root: str) -> List[str]:
  """`os.path.relpath(p, root)` of each path, by slicing where a path starts with the root
  as `files.list_images` joins it (40x faster: a million paths in a second)."""
  prefix = os.path.join(root, "")
  return [p[len(prefix):] if p.startswith(prefix) else os.path.relpath(p, root)
          for p in paths]


class FolderSource:
  """Image files, decoded when loaded; named by their paths relative to the folder `root`
  (so sub/a.png and a.png keep apart).

  Broken files never end a run, and those the check finds never shift its stream (exact
  resume counts examples). How they are found (`check`):
  - "decode": every file is checked when the source is made (`drop_undecodable`), and
    those that fail are left out (`skipped`, each named in a warning). O(files) at
    start-up: about 3,200 PNGs or 1,200-1,600 JPEGs a second on 2 cores.
  - "lazy": nothing is read at start-up. When the stream reads a file whose first and last
    bytes are not those of a whole image (`looks_whole`), it takes the next file of the
    list instead (up to `_LAZY_TRIES`), a function of the files alone, so a resumed run
    reads what the uninterrupted one read; each such file is named on stderr when met.
    A file that looks whole but still fails to decode is dropped from the stream with a
    warning. For folders of millions of files.
  """
  decodes_files = True

  def __init__(self, paths: List[str], root: str, check: str = "decode"):
    self.skipped = []
    if check == "decode":
      paths, self.skipped = drop_undecodable(paths)
      for path in self.skipped:
        logging.warning("skipping %s: it does not decode as an image", path)
    if not paths:
      raise ValueError(f"no image in {root} decodes: {len(self.skipped)} files fail")
    self.check = check
    self.files = paths
    self.size = len(paths)
    self._paths = tf.constant(paths)
    self._names = tf.constant(relative_paths(paths, root))

  def _read(self, i: tf.Tensor) -> tf.Tensor:
    return tf.io.read_file(tf.gather(self._paths, i))

  def _read_whole(self, i: tf.Tensor) -> tf.Tensor:
    """The bytes of file i, or of the first file after it that looks whole."""
    def broken(j, contents, tries):
      return tf.logical_and(tries < _LAZY_TRIES, tf.logical_not(looks_whole(contents)))

    def next_file(j, contents, tries):
      tf.print("warning: skipping", tf.gather(self._paths, j),
               "(not a whole image); the next file is read in its place",
               output_stream=sys.stderr)
      j = (j + 1) % self.size
      return j, self._read(j), tries + 1

    i = tf.cast(i, tf.int64)
    contents = self._read(i)
    return tf.cond(looks_whole(contents), lambda: contents, lambda: tf.while_loop(
        broken, next_file, (i, contents, tf.constant(0)))[1])

  def load(self, i: tf.Tensor) -> tf.Tensor:
    return ops.decode_rgb(self._read_whole(i) if self.check == "lazy" else self._read(i))

  def name(self, i: tf.Tensor) -> tf.Tensor:
    return tf.gather(self._names, i)


class TfdsSource:
  """A split of the prepared TFDS data set in id order (record i is the i-th id), decoded
  when loaded; named by its ids. Records are read from disk one by one as the pipeline
  asks for them (`tfds_data.open_split`), or, with `config.data.tfds_in_memory`, the split
  is held encoded in host memory (`tfds_data.load_split`). Both give the same examples."""
  decodes_files = True

  def __init__(self, config, split: str):
    tfds_dir, name, train_split, eval_split = tfds_data.fields(config)
    split_name = {"train": train_split, "val": eval_split, "test": "test"}[split]
    if config.data.tfds_in_memory:
      encoded, ids = tfds_data.load_split(tfds_dir, name, split_name)
      self._image = encoded.__getitem__
      self._id = lambda j: ids[j].encode("utf-8")
      size = len(encoded)
    else:
      records = tfds_data.open_split(tfds_dir, name, split_name)
      self._image = lambda j: records[j]["image"]
      self._id = lambda j: records[j]["id"]
      size = len(records)
    self.size = min(size, int(config.data.max_val_images)) if split == "val" else size

  def _bytes(self, read, i: tf.Tensor) -> tf.Tensor:
    # A Python call under the GIL (a list lookup, or one record read from disk: about
    # 0.1 ms): the bytes are not put in the graph, where a large constant would hit the
    # 2 GB GraphDef limit.
    contents = tf.numpy_function(lambda j: np.array(read(int(j)), dtype=object), [i],
                                 tf.string, stateful=False)
    return tf.ensure_shape(contents, [])

  def load(self, i: tf.Tensor) -> tf.Tensor:
    return ops.decode_rgb(self._bytes(self._image, i))

  def name(self, i: tf.Tensor) -> tf.Tensor:
    return self._bytes(self._id, i)


def create_source(config, split: str, image_dir: Optional[str] = None):
  """The source of `split` of `config.data.source`, or, with `image_dir`, every image of
  that folder (no split, no cap).

  Splits: "train", "val" (at most `config.data.max_val_images`) and "test" (all of it:
  what training and validation never read; a folder's `config.data.test_fraction`, the
  TFDS data set's "test" split).
  """
  data = config.data
  if image_dir is not None:
    return FolderSource(config_check.check_folder(image_dir, "image_dir"), image_dir)
  if data.source == "tfds":
    return TfdsSource(config, split)
  if data.source == "synthetic":
    return SyntheticSource(config, split)
  rest, test = files.hold_out_test(files.list_images(os.path.expanduser(data.image_dir)),
                                   data.test_fraction)
  train, val = files.split_files(rest, data.val_fraction)
  logging.info("Folder %s: %d train, %d validation and %d test files (%s split).",
               data.image_dir, len(train), len(val), len(test), split)
  chosen = {"train": train, "val": val[:int(data.max_val_images)], "test": test}[split]
  if not chosen:
    raise ValueError(f"config.data.test_fraction={data.test_fraction}: the folder "
                     f"{data.image_dir} has no {split} split")
  return FolderSource(chosen, os.path.expanduser(data.image_dir),
                      file_check(data.file_check, split, len(chosen)))


def file_check(setting: str, split: str, count: int) -> str:
  """How a folder split's files are checked (`FolderSource`): evaluation splits always
  whole at start-up (they are small, and each image is scored once by name); the training
  split as `config.data.file_check` says, "auto" whole up to FULL_CHECK_MAX_FILES files."""
  if split != "train" or setting == "decode":
    return "decode"
  if setting == "lazy" or count > FULL_CHECK_MAX_FILES:
    if setting == "auto":
      logging.info("%d training files: each is checked when first read (file_check=lazy), "
                   "not all at start-up", count)
    return "lazy"
  return "decode"
