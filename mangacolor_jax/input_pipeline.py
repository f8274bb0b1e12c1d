"""tf.data input pipeline: (line art, colour target) pairs for training and evaluation.

Sources (`config.data.source`):

* ``synthetic``: one procedurally drawn character (`synthetic.render`), no files. The train
  split is renderer indices [0, num_train), the validation split [num_train, num_train +
  num_val), both from `SYNTHETIC_DATA_SEED`, which does not depend on `config.seed`: every
  run sees the same validation images.
* ``folder``: every JPEG/PNG/WebP under `config.data.image_dir` (recursive), any size and
  aspect, gray and RGBA too (alpha is composited on white). A fixed share
  (`config.data.val_fraction`) is held out by `split_files`, again independent of the seed.
* ``tfds``: the TFDS data set `python -m mangacolor_jax.data.prepare` builds in
  `config.data.tfds_dir` (`tfds.builder(config.data.tfds_name, data_dir=...)`): training
  reads split `config.data.tfds_train_split` ("train"), evaluation
  `config.data.tfds_eval_split` ("validation"; "test" for the final numbers). Each split is
  read once, undecoded (`tfds.decode.SkipDecoding`), into host memory as a list of encoded
  images ordered by id; example i is then item i of that list, decoded in the map like a
  folder's file. That random access is what keeps this source's guarantees identical to
  the folder's: the same permutation and per-example randomness, and a resume that skips
  by arithmetic, before anything is decoded (TFRecord shards can only be read in order, so
  streaming them would mean reading -- and with a shuffle buffer, decoding -- everything
  skipped). The cost is host memory of about the split's encoded size per process: the
  prepare report gives it (`bytes`): 52 MB for the 5.5k 64x64 faces of the development
  set; at their compression, 100k 256-px PNGs would take about 15 GB.

Training batches are reproducible bit for bit from (config, seed, start_index), whatever the
parallelism: example number g of the run (counted over global batches) is fully determined by
g -- which image (a stateless permutation per epoch, `tf.random.experimental.index_shuffle`)
and every random augmentation and line-art choice (stateless ops keyed by (seed, g)). So
resuming at step s is `start_index = s * config.batch_size`, which costs nothing (no element
is produced and thrown away), and a process of a multi-process run takes its slice of every
global batch: the union over processes is the single-process batch.

Training augmentation (`config.data.augment`): a random crop with the output's aspect
(`crop_scale`, at a random position: the shift), an optional small rotation
(`max_rotation` degrees, zoomed so no corner is left empty; 0 by default), a flip, and
colour jitter of the target (`color_jitter`: hue, saturation, brightness); the line art is
extracted after all of them, so the pair stays consistent.

Use from JAX:

  ds = input_pipeline.create_train_dataset(config, seed=data_seed, start_index=step * bs,
                                           process_index=jax.process_index(),
                                           process_count=jax.process_count())
  for batch in ds.as_numpy_iterator():  # dict of numpy arrays, never ends
    batch["lineart"]  # float32 [b, H, W, 1] in [-1, 1], -1 = ink
    batch["target"]   # float32 [b, H, W, 3] in [-1, 1]

  for batch in input_pipeline.create_eval_dataset(config).as_numpy_iterator():  # finite
    batch["valid"]    # float32 [b], 0 for the padding of the last batch: mask metrics
    batch["name"]     # bytes [b], file base name (b"" for padding)

Each process gets b = config.batch_size // process_count examples per batch; place them with
`jax.make_array_from_process_local_data`. TensorFlow is kept off the GPUs at import so that it
does not take accelerator memory from JAX.
"""

import functools
import hashlib
import math
import os
from typing import List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from mangacolor_jax import lineart
from mangacolor_jax import synthetic

try:
  tf.config.set_visible_devices([], "GPU")
except (RuntimeError, ValueError) as e:  # TF already initialised its devices.
  logging.warning("Could not hide GPUs from TensorFlow: %s", e)

SOURCES = ("synthetic", "folder", "tfds")
# The builder `mangacolor_jax.data.prepare` writes (mangacolor_jax.data.tfds_builder.NAME).
TFDS_NAME = "mangacolor_images"
SUPPORTED_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
# Renderer seed of the synthetic data set. Fixed (not config.seed) so that the validation
# images, and so the validation metrics, are comparable between runs.
SYNTHETIC_DATA_SEED = 20180101
# Key of the train/validation file split; changing it reshuffles every folder's split.
_SPLIT_KEY = b"mangacolor_jax/split/v1:"
# Salts that keep the permutation and the per-example randomness of one seed apart.
_SHUFFLE_SALT = 0x5F1E
_SAMPLE_SALT = 0xA6
# Separate from the six per-example keys so that turning rotation on changes nothing else.
_ROTATION_SALT = 0x207
_MIN_SIDE = 16
_FILES_TO_PROBE = 8
_INT64_MAX = np.iinfo(np.int64).max


# ----------------------------------------------------------------------------------------
# Configuration checks.


def image_hw(config) -> Tuple[int, int]:
  """(height, width): `config.data.image_size`, and `image_width` when it is > 0.

  Raises:
    ValueError: if a side is not a positive int of at least 16.
  """
  height = config.data.image_size
  width = config.data.get("image_width", 0) or height
  for field, v in (("image_size", height), ("image_width", width)):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < _MIN_SIDE:
      raise ValueError(f"config.data.{field}={v!r} must be an int of at least {_MIN_SIDE}")
  return int(height), int(width)


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

  def key(i):
    name = os.path.basename(files[i]).encode("utf-8", "surrogateescape")
    return hashlib.sha1(_SPLIT_KEY + name).digest(), files[i]

  val_ids = set(sorted(range(len(files)), key=key)[:n_val])
  train = [f for i, f in enumerate(files) if i not in val_ids]
  val = [f for i, f in enumerate(files) if i in val_ids]
  return train, val


def _check_range(value, field: str, low: float, high: float = math.inf) -> Tuple[float, float]:
  """Checks a (lo, hi) pair with low <= lo <= hi <= high."""
  try:
    lo, hi = (float(v) for v in value)
  except (TypeError, ValueError):
    raise ValueError(f"{field} must be a (low, high) pair of numbers, got {value!r}") from None
  if not low <= lo <= hi <= high:
    raise ValueError(f"{field}={value!r} must satisfy {low} <= low <= high <= {high}")
  return lo, hi


def _check_folder(image_dir: str, field: str) -> List[str]:
  """Lists a folder's images; raises ValueError naming `field` unless some decode."""
  if not image_dir:
    raise ValueError(f"{field} is empty: set it to a folder of JPEG/PNG/WebP images")
  path = os.path.expanduser(str(image_dir))
  if not os.path.exists(path):
    raise ValueError(f"{field}={image_dir!r}: folder {os.path.abspath(path)} does not exist")
  if not os.path.isdir(path):
    raise ValueError(f"{field}={image_dir!r}: {os.path.abspath(path)} is not a folder")
  files = list_images(path)
  if not files:
    raise ValueError(
        f"{field}={image_dir!r}: no {'/'.join(SUPPORTED_EXTENSIONS)} files in "
        f"{os.path.abspath(path)} or its subfolders")
  # A folder of files with image names that are not images (an HTML error page saved as
  # .jpg by a crawler, a truncated download) must fail now, not hours into training.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  probe = files[::max(1, len(files) // _FILES_TO_PROBE)][:_FILES_TO_PROBE]
  bad = []
  for f in probe:
    try:
      with Image.open(f) as im:
        im.load()
    except Exception as e:  # pylint: disable=broad-except
      bad.append(f"{os.path.basename(f)} ({type(e).__name__})")
  if len(bad) == len(probe):
    raise ValueError(
        f"{field}={image_dir!r}: none of the {len(probe)} files checked in "
        f"{os.path.abspath(path)} decodes as an image: {', '.join(bad)}")
  if bad:
    logging.warning("%d of %d files checked in %s do not decode (training skips such "
                    "files): %s", len(bad), len(probe), path, ", ".join(bad))
  return files


def validate_data_config(config) -> None:
  """Checks `config.data` (and the folder it names) before any long work.

  Raises:
    ValueError: naming the offending field: unknown source or extractor, bad image size
      or ranges, a missing or empty folder, a folder where no checked file decodes, a
      missing TFDS data set or split, or a split that would be empty.
  """
  data = config.data
  if data.source not in SOURCES:
    raise ValueError(f"config.data.source={data.source!r} is not one of {SOURCES}")
  image_hw(config)
  extractors = tuple(data.extractors) if not isinstance(data.extractors, str) else (
      data.extractors,)
  unknown = [e for e in extractors if e not in lineart.EXTRACTORS]
  if unknown or not extractors:
    raise ValueError(f"config.data.extractors={data.extractors!r}: unknown {unknown}; "
                     f"valid names: {lineart.EXTRACTORS}")
  _check_range(data.xdog_sigma, "config.data.xdog_sigma", 1e-3)
  _check_range(data.dilate_gain, "config.data.dilate_gain", 0.0)
  _check_range(data.crop_scale, "config.data.crop_scale", 1e-3, 1.0)
  if not isinstance(data.lineart_upscale, (int, np.integer)) or data.lineart_upscale < 1:
    raise ValueError(
        f"config.data.lineart_upscale={data.lineart_upscale!r} must be a positive int")
  if not data.color_jitter >= 0:
    raise ValueError(f"config.data.color_jitter={data.color_jitter!r} must be >= 0")
  if data.max_val_images < 1:
    raise ValueError(
        f"config.data.max_val_images={data.max_val_images!r}: the validation set would be "
        "empty")
  max_rotation = data.get("max_rotation", 0.0)
  if not 0.0 <= max_rotation <= 45.0:
    raise ValueError(f"config.data.max_rotation={max_rotation!r} must be in [0, 45] degrees")
  if data.source == "tfds":
    _check_tfds(config)
  elif data.source == "synthetic":
    if data.num_train < 1:
      raise ValueError(f"config.data.num_train={data.num_train!r} must be >= 1")
    if data.num_val < 1:
      raise ValueError(
          f"config.data.num_val={data.num_val!r}: the validation split would be empty")
  else:
    if not 0.0 < data.val_fraction < 1.0:
      raise ValueError(f"config.data.val_fraction={data.val_fraction!r} must be in (0, 1)")
    files = _check_folder(data.image_dir, "config.data.image_dir")
    if len(files) < 2:
      raise ValueError(
          f"config.data.image_dir={data.image_dir!r} holds {len(files)} image: need at "
          "least 2, one for training and one for validation")


def _tfds_fields(config) -> Tuple[str, str, str, str]:
  """(tfds_dir, tfds_name, train split, eval split) with their defaults."""
  data = config.data
  return (os.path.expanduser(str(data.get("tfds_dir", "") or "")),
          str(data.get("tfds_name", TFDS_NAME)), str(data.get("tfds_train_split", "train")),
          str(data.get("tfds_eval_split", "validation")))


def _tfds_builder(tfds_dir: str, name: str):
  """The prepared builder in `tfds_dir`; raises ValueError naming config.data.tfds_dir."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # Registers the builder, so that TFDS checks its version; without it TFDS would still
  # load the files read-only.
  from mangacolor_jax.data import tfds_builder  # pylint: disable=g-import-not-at-top,unused-import

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
    raise ValueError(f"config.data.tfds_dir={tfds_dir!r}, config.data.tfds_name={name!r}: "
                     f"{type(e).__name__}: {e}") from None
  if not prepared:
    raise ValueError(f"config.data.tfds_dir={tfds_dir!r}: no prepared data set {name!r} "
                     f"(looked in {os.path.join(os.path.abspath(tfds_dir), name)}); {how}")
  return builder


def _check_tfds(config) -> None:
  tfds_dir, name, train_split, eval_split = _tfds_fields(config)
  builder = _tfds_builder(tfds_dir, name)
  for field, split in (("tfds_train_split", train_split), ("tfds_eval_split", eval_split)):
    try:
      count = builder.info.splits[split].num_examples
    except (KeyError, ValueError):
      raise ValueError(f"config.data.{field}={split!r}: data set {name!r} in {tfds_dir} has "
                       f"splits {sorted(builder.info.splits.keys())}") from None
    if count < 1:
      raise ValueError(f"config.data.{field}={split!r}: split {split!r} of {tfds_dir} is "
                       "empty")
  features = builder.info.features
  if "image" not in features:
    raise ValueError(f"config.data.tfds_name={name!r}: the data set has no 'image' feature "
                     f"(it has {sorted(features.keys())})")


def _load_tfds_split(tfds_dir: str, name: str, split: str) -> Tuple[Tuple[bytes, ...],
                                                                   Tuple[str, ...]]:
  """(encoded images, ids) of a split, ordered by id; read once per process and split.

  The cache key holds the time the data set was written, so a data set rebuilt in place
  (prepare --overwrite) is read again.
  """
  builder = _tfds_builder(tfds_dir, name)
  info = os.path.join(str(builder.data_dir), "dataset_info.json")
  stamp = os.stat(info).st_mtime_ns if os.path.exists(info) else 0
  return _read_tfds_split(tfds_dir, name, split, stamp)


@functools.lru_cache(maxsize=4)
def _read_tfds_split(tfds_dir: str, name: str, split: str,
                     stamp: int) -> Tuple[Tuple[bytes, ...], Tuple[str, ...]]:
  del stamp  # only part of the cache key
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = _tfds_builder(tfds_dir, name)
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


# ----------------------------------------------------------------------------------------
# Per-example ops (TensorFlow, graph mode inside Dataset.map).


def _to_int64_seed(seed: int) -> int:
  """Folds any python int into the int64 range."""
  return (int(seed) + 2**63) % 2**64 - 2**63


def _decode_rgb(contents: tf.Tensor) -> tf.Tensor:
  """Decodes JPEG/PNG/WebP (and GIF/BMP) bytes to float32 [h, w, 3] RGB in [0, 1].

  Gray images are replicated to RGB and transparency is composited on white (the paper of
  a drawing). TF 2.21's decode_image reads WebP itself, so no PIL fallback is needed.
  """
  # uint8 first: the WebP decoder supports no other dtype (16-bit PNGs are scaled down).
  image = tf.io.decode_image(contents, channels=0, expand_animations=False)
  image = tf.image.convert_image_dtype(image, tf.float32)
  channels = tf.shape(image)[-1]
  rgb = tf.cond(channels >= 3, lambda: image[..., :3],
                lambda: tf.tile(image[..., :1], [1, 1, 3]))
  alpha = tf.cond(tf.equal(channels % 2, 0), lambda: image[..., -1:],
                  lambda: tf.ones_like(image[..., :1]))
  return rgb * alpha + (1.0 - alpha)


def _crop_resize(image: tf.Tensor, hw: Tuple[int, int], scale: tf.Tensor,
                 offset: tf.Tensor) -> tf.Tensor:
  """Crops a region with the output's aspect ratio, then resizes it to `hw`.

  Never squashes: the crop has the output's aspect, with area `scale` times that of the
  largest such crop, at relative position `offset` ([2] in [0, 1], 0.5 = centred).
  """
  h, w = hw
  shape = tf.shape(image)
  ih, iw = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  aspect = w / h
  ch = tf.minimum(ih, iw / aspect) * tf.sqrt(scale)
  cw = ch * aspect
  ch = tf.clip_by_value(tf.round(ch), 1.0, ih)
  cw = tf.clip_by_value(tf.round(cw), 1.0, iw)
  y0 = tf.round((ih - ch) * offset[0])
  x0 = tf.round((iw - cw) * offset[1])
  box = tf.cast(tf.stack([y0, x0, ch, cw]), tf.int32)
  crop = tf.slice(image, [box[0], box[1], 0], [box[2], box[3], 3])
  # Antialiased bilinear: large illustrations are shrunk a lot and must not alias.
  out = tf.image.resize(crop, [h, w], method="bilinear", antialias=True)
  return tf.clip_by_value(out, 0.0, 1.0)


def _color_jitter(image: tf.Tensor, strength: float, seeds: tf.Tensor) -> tf.Tensor:
  """Hue, saturation and brightness jitter, all scaled by `strength` (1 is strong)."""
  image = tf.image.stateless_random_hue(image, min(0.5, 0.08 * strength), seeds[0])
  image = tf.image.stateless_random_saturation(
      image, max(0.0, 1.0 - 0.3 * strength), 1.0 + 0.3 * strength, seeds[1])
  image = tf.image.stateless_random_brightness(image, 0.15 * strength, seeds[2])
  return tf.clip_by_value(image, 0.0, 1.0)


def _rotate(image: tf.Tensor, angle: tf.Tensor) -> tf.Tensor:
  """Rotates [h, w, 3] by `angle` radians about its centre, zoomed in just enough (by about
  |cos| + |sin| * aspect) that no corner falls outside the image: nothing is invented."""
  h, w = image.shape[0], image.shape[1]
  c, s = tf.cos(angle), tf.sin(angle)
  # Pixel centres span [0, w - 1] x [0, h - 1]: that box, rotated, must fit in itself.
  ry = max(h - 1, 1) / max(w - 1, 1)
  zoom = tf.maximum(tf.abs(c) + tf.abs(s) * ry, tf.abs(c) + tf.abs(s) / ry)
  a0, a1, b0, b1 = c / zoom, -s / zoom, s / zoom, c / zoom
  cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
  # Maps output pixel (x, y) to the input point it samples. The zoom keeps every sample
  # inside the image, so the white fill never shows (beyond float rounding).
  transform = tf.stack([a0, a1, cx - a0 * cx - a1 * cy, b0, b1, cy - b0 * cx - b1 * cy,
                        0.0, 0.0])
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=tf.cast(transform, tf.float32)[None],
      output_shape=tf.constant([h, w], tf.int32), fill_value=tf.constant(1.0),
      interpolation="BILINEAR", fill_mode="CONSTANT")
  return tf.clip_by_value(out[0], 0.0, 1.0)


class _Source:
  """Loads item i of one split (a renderer index, a file or a TFDS example) as float32 RGB
  in [0, 1]."""

  def __init__(self, config, split: str, image_dir: Optional[str] = None):
    data = config.data
    self.hw = image_hw(config)
    if image_dir is not None:
      self.files = _check_folder(image_dir, "image_dir")
      self.kind = "folder"
    elif data.source == "tfds":
      self.kind = "tfds"
      tfds_dir, name, train_split, eval_split = _tfds_fields(config)
      encoded, ids = _load_tfds_split(tfds_dir, name,
                                      train_split if split == "train" else eval_split)
      if split != "train":
        encoded, ids = encoded[:int(data.max_val_images)], ids[:int(data.max_val_images)]
      self._encoded = encoded
      self.size = len(encoded)
      self._names = tf.constant(list(ids))
    elif data.source == "synthetic":
      self.kind = "synthetic"
      if split == "train":
        self.first, self.size = 0, int(data.num_train)
      else:
        self.first = int(data.num_train)
        self.size = min(int(data.num_val), int(data.max_val_images))
    else:
      self.kind = "folder"
      train, val = split_files(list_images(os.path.expanduser(data.image_dir)),
                               data.val_fraction)
      self.files = train if split == "train" else val[:int(data.max_val_images)]
      logging.info("Folder %s: %d train and %d validation files (%s split).", data.image_dir,
                   len(train), len(val), split)
    if self.kind == "folder":
      self.size = len(self.files)
      self._paths = tf.constant(self.files)
      self._names = tf.constant([os.path.basename(f) for f in self.files])

  def load(self, i: tf.Tensor) -> tf.Tensor:
    """float32 [h, w, 3] (synthetic: the output size) image of item `i`."""
    if self.kind == "synthetic":
      h, w = self.hw
      first = self.first
      image = tf.numpy_function(
          lambda j: synthetic.render(SYNTHETIC_DATA_SEED, first + int(j), h, w), [i],
          tf.uint8, stateful=False)
      image = tf.ensure_shape(image, [h, w, 3])
      return tf.cast(image, tf.float32) * (1.0 / 255.0)
    if self.kind == "tfds":
      encoded = self._encoded
      # A Python list lookup (microseconds under the GIL): the bytes are not put in the
      # graph, where a large constant would hit the 2 GB GraphDef limit.
      contents = tf.numpy_function(lambda j: np.array(encoded[int(j)], dtype=object), [i],
                                   tf.string, stateful=False)
      return _decode_rgb(tf.ensure_shape(contents, []))
    return _decode_rgb(tf.io.read_file(tf.gather(self._paths, i)))

  def name(self, i: tf.Tensor) -> tf.Tensor:
    """File base name of item `i` (synthetic: synthetic_{index:05d}.png; tfds: its id)."""
    if self.kind == "synthetic":
      number = tf.strings.as_string(tf.cast(i, tf.int64) + self.first, width=5, fill="0")
      return tf.strings.join(["synthetic_", number, ".png"])
    return tf.gather(self._names, i)


def _batch_split(config, process_index: int, process_count: int) -> int:
  """Per-process batch size; raises ValueError if the global batch does not divide."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} not in [0, {process_count})")
  if config.batch_size % process_count:
    raise ValueError(f"config.batch_size={config.batch_size} does not divide over "
                     f"{process_count} processes")
  return config.batch_size // process_count


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  return options


# ----------------------------------------------------------------------------------------
# Datasets.


def create_train_dataset(config,
                         *,
                         seed: int,
                         start_index: int = 0,
                         process_index: int = 0,
                         process_count: int = 1) -> tf.data.Dataset:
  """Infinite, shuffled, augmented training batches for this process.

  Args:
    config: the run's ConfigDict (`batch_size` and `data` are read).
    seed: seed of the order, augmentations and line-art choices.
    start_index: number of examples (global, over all processes) already consumed: pass
      step * config.batch_size to resume a run exactly where it stopped.
    process_index: this process's index (jax.process_index()).
    process_count: number of processes (jax.process_count()).

  Returns:
    A dataset of dicts {"lineart": float32 [b, H, W, 1], "target": float32 [b, H, W, 3]},
    both in [-1, 1], with b = config.batch_size // process_count.

  Raises:
    ValueError: for a bad config (see `validate_data_config`), a batch that does not divide
      over the processes, or a multi-process start_index that is not a whole number of
      global batches.
  """
  validate_data_config(config)
  data = config.data
  per_process = _batch_split(config, process_index, process_count)
  global_batch = config.batch_size
  if start_index < 0 or (process_count > 1 and start_index % global_batch):
    raise ValueError(f"start_index={start_index} must be >= 0 and, with several processes, "
                     f"a multiple of config.batch_size={global_batch}")
  source = _Source(config, "train")
  n = source.size
  hw = image_hw(config)
  seed = _to_int64_seed(seed)
  shuffle_key = tf.constant([seed, _SHUFFLE_SALT], tf.int64)
  sample_key = tf.constant([seed, _SAMPLE_SALT], tf.int64)
  extractors = tuple(data.extractors) if not isinstance(data.extractors, str) else (
      data.extractors,)
  lo_scale, hi_scale = (float(v) for v in data.crop_scale)
  max_rotation = math.radians(float(data.get("max_rotation", 0.0)))

  def example_number(local):
    # Local counter -> global example number g: this process's slice of each global batch.
    return (local // per_process) * global_batch + process_index * per_process + (
        local % per_process)

  def make_example(g):
    epoch, position = g // n, g % n
    index = tf.random.experimental.index_shuffle(
        position, tf.random.experimental.stateless_fold_in(shuffle_key, epoch),
        max_index=n - 1)
    keys = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(sample_key, g), num=6)
    image = source.load(index)
    if data.augment:
      u = tf.random.stateless_uniform([3], keys[0])
      scale = lo_scale + (hi_scale - lo_scale) * u[0]
      target = _crop_resize(image, hw, scale, u[1:])
      if max_rotation > 0:
        rotation_key = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(sample_key, g), _ROTATION_SALT)
        target = _rotate(target, tf.random.stateless_uniform(
            [], rotation_key, -max_rotation, max_rotation))
      if data.flip:
        target = tf.image.stateless_random_flip_left_right(target, keys[1])
      if data.color_jitter > 0:
        target = _color_jitter(target, float(data.color_jitter), keys[2:5])
    else:
      target = _crop_resize(image, hw, tf.constant(1.0), tf.constant([0.5, 0.5]))
    art = lineart.random_lineart(
        target, keys[5], extractors=extractors, xdog_sigma=tuple(data.xdog_sigma),
        dilate_gain=tuple(data.dilate_gain), upscale=int(data.lineart_upscale))
    return {"lineart": art * 2.0 - 1.0, "target": target * 2.0 - 1.0}

  # Skipping is arithmetic: the stream starts at this process's first example after
  # start_index, and nothing before it is ever made.
  first_local = (start_index // global_batch) * per_process + start_index % global_batch
  ds = tf.data.Dataset.range(first_local, _INT64_MAX)
  ds = ds.map(lambda local: make_example(example_number(local)),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if source.kind in ("folder", "tfds"):
    # A file that does not decode is dropped (with a warning) rather than ending a long
    # run; which files those are is fixed, so the stream stays reproducible.
    ds = ds.ignore_errors(log_warning=True)
  ds = ds.batch(per_process, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return ds.with_options(_options())


def count_eval_images(config, image_dir: Optional[str] = None) -> int:
  """Number of real (not padding) images `create_eval_dataset` yields over all processes."""
  if image_dir is not None:
    return len(_check_folder(image_dir, "image_dir"))
  validate_data_config(config)
  return _Source(config, "val").size


def create_eval_dataset(config,
                        *,
                        image_dir: Optional[str] = None,
                        process_index: int = 0,
                        process_count: int = 1) -> tf.data.Dataset:
  """Finite, deterministic evaluation batches for this process.

  The validation split (at most `config.data.max_val_images` images) or, with `image_dir`,
  every image of that folder (no split, no cap: the evaluate command). No augmentation:
  a centred crop with the output's aspect, resized, and `lineart.fixed_lineart`. The last
  global batch is padded to full size; padding has valid = 0, zero images and name b"".

  Args:
    config: the run's ConfigDict.
    image_dir: optional folder to evaluate instead of the configured source.
    process_index: this process's index.
    process_count: number of processes.

  Returns:
    A dataset of dicts {"lineart": float32 [b, H, W, 1], "target": float32 [b, H, W, 3]
    (both in [-1, 1]), "valid": float32 [b], "name": string [b]}, with
    b = config.batch_size // process_count.
  """
  validate_data_config(config)
  per_process = _batch_split(config, process_index, process_count)
  global_batch = config.batch_size
  source = _Source(config, "val", image_dir=image_dir)
  n = source.size
  hw = image_hw(config)
  upscale = int(config.data.lineart_upscale)
  num_batches = -(-n // global_batch)

  def make_example(local):
    g = (local // per_process) * global_batch + process_index * per_process + (
        local % per_process)
    valid = g < n
    index = tf.minimum(g, n - 1)

    def real():
      target = _crop_resize(source.load(index), hw, tf.constant(1.0),
                            tf.constant([0.5, 0.5]))
      return lineart.fixed_lineart(target, upscale=upscale) * 2.0 - 1.0, target * 2.0 - 1.0

    def padding():
      return tf.zeros(list(hw) + [1]), tf.zeros(list(hw) + [3])

    art, target = tf.cond(valid, real, padding)
    return {
        "lineart": tf.ensure_shape(art, list(hw) + [1]),
        "target": tf.ensure_shape(target, list(hw) + [3]),
        "valid": tf.cast(valid, tf.float32),
        "name": tf.where(valid, source.name(index), ""),
    }

  ds = tf.data.Dataset.range(num_batches * per_process)
  ds = ds.map(make_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(per_process, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  options = _options()
  # Without tf.data's autotuner (AUTOTUNE above then means one worker per core): with it,
  # starting an evaluation pass stalled for ~16 s in about half of the passes at 256x256
  # on 2 cores, for no faster input (docs/performance.md, row 49).
  options.autotune.enabled = False
  return ds.with_options(options)
