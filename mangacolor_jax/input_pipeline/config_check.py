"""Checks of `config.data` (and the files it names), run before any long work.

Light on purpose (no TensorFlow): the training state reads `image_hw` from here.
"""

import math
import os
from typing import List, Tuple

from absl import logging
import numpy as np
from PIL import Image

from mangacolor_jax.input_pipeline import files

SOURCES = ("synthetic", "folder", "tfds")
# Line-art extractors (`lineart.py`), chosen at random per training example.
EXTRACTORS = ("xdog", "dilate")
# Where the line art is made (`training.inputs`): by the input pipeline, or on the mesh.
LINEART_PLACES = ("host", "device")
# How a folder source finds broken training files (input_pipeline/sources.FolderSource).
FILE_CHECKS = ("auto", "decode", "lazy")
_MIN_SIDE = 16
_FILES_TO_PROBE = 8


def image_hw(config) -> Tuple[int, int]:
  """(height, width): `config.data.image_size`, and `image_width` when it is > 0.

  Raises:
    ValueError: if a side is not a positive int of at least 16.
  """
  height = config.data.image_size
  width = config.data.image_width or height
  for field, v in (("image_size", height), ("image_width", width)):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < _MIN_SIDE:
      raise ValueError(f"config.data.{field}={v!r} must be an int of at least {_MIN_SIDE}")
  return int(height), int(width)


def _check_range(value, field: str, low: float, high: float = math.inf) -> Tuple[float, float]:
  """Checks a (lo, hi) pair with low <= lo <= hi <= high."""
  try:
    lo, hi = (float(v) for v in value)
  except (TypeError, ValueError):
    raise ValueError(f"{field} must be a (low, high) pair of numbers, got {value!r}") from None
  if not low <= lo <= hi <= high:
    raise ValueError(f"{field}={value!r} must satisfy {low} <= low <= high <= {high}")
  return lo, hi


def check_folder(image_dir: str, field: str) -> List[str]:
  """Lists a folder's images; raises ValueError naming `field` unless some decode."""
  if not image_dir:
    raise ValueError(f"{field} is empty: set it to a folder of JPEG/PNG/WebP images")
  path = os.path.expanduser(str(image_dir))
  if not os.path.exists(path):
    raise ValueError(f"{field}={image_dir!r}: folder {os.path.abspath(path)} does not exist")
  if not os.path.isdir(path):
    raise ValueError(f"{field}={image_dir!r}: {os.path.abspath(path)} is not a folder")
  found = files.list_images(path)
  if not found:
    raise ValueError(
        f"{field}={image_dir!r}: no {'/'.join(files.SUPPORTED_EXTENSIONS)} files in "
        f"{os.path.abspath(path)} or its subfolders")
  # A folder of files with image names that are not images (an HTML error page saved as
  # .jpg by a crawler, a truncated download) must fail now, not hours into training.
  probe = found[::max(1, len(found) // _FILES_TO_PROBE)][:_FILES_TO_PROBE]
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
  return found


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
  unknown = [e for e in extractors if e not in EXTRACTORS]
  if unknown or not extractors:
    raise ValueError(f"config.data.extractors={data.extractors!r}: unknown {unknown}; "
                     f"valid names: {EXTRACTORS}")
  if data.lineart_on not in LINEART_PLACES:
    raise ValueError(f"config.data.lineart_on={data.lineart_on!r} is not one of "
                     f"{LINEART_PLACES}")
  if data.lineart_on == "device" and data.lineart_upscale not in (1, 2):
    raise ValueError(f"config.data.lineart_upscale={data.lineart_upscale!r}: line art on "
                     "the device is made at 1x or 2x")
  _check_range(data.xdog_sigma, "config.data.xdog_sigma", 1e-3)
  _check_range(data.dilate_gain, "config.data.dilate_gain", 0.0)
  _check_range(data.crop_scale, "config.data.crop_scale", 1e-3, 1.0)
  if not isinstance(data.lineart_upscale, (int, np.integer)) or data.lineart_upscale < 1:
    raise ValueError(
        f"config.data.lineart_upscale={data.lineart_upscale!r} must be a positive int")
  if not 0.0 <= data.line_weight <= 1.0:
    raise ValueError(f"config.data.line_weight={data.line_weight!r} must be in [0, 1]")
  if not 0.0 <= data.line_tone <= 2.0:
    raise ValueError(f"config.data.line_tone={data.line_tone!r} must be in [0, 2]")
  if not data.color_jitter >= 0:
    raise ValueError(f"config.data.color_jitter={data.color_jitter!r} must be >= 0")
  if data.max_val_images < 1:
    raise ValueError(
        f"config.data.max_val_images={data.max_val_images!r}: the validation set would be "
        "empty")
  max_rotation = data.max_rotation
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
    _check_folder_source(data)


def _check_folder_source(data) -> None:
  """The fields of a folder source, and its folder: at least 2 images, some decoding."""
  if data.file_check not in FILE_CHECKS:
    raise ValueError(f"config.data.file_check={data.file_check!r} is not one of "
                     f"{FILE_CHECKS}")
  if not 0.0 < data.val_fraction < 1.0:
    raise ValueError(f"config.data.val_fraction={data.val_fraction!r} must be in (0, 1)")
  if not 0.0 <= data.test_fraction < 1.0 - data.val_fraction:
    raise ValueError(f"config.data.test_fraction={data.test_fraction!r} must be in "
                     f"[0, 1 - config.data.val_fraction)")
  found = check_folder(data.image_dir, "config.data.image_dir")
  if len(found) < 2:
    raise ValueError(
        f"config.data.image_dir={data.image_dir!r} holds {len(found)} image: need at "
        "least 2, one for training and one for validation")


def _check_tfds(config) -> None:
  # TensorFlow Datasets only for a tfds source: the rest of this module stays light.
  from mangacolor_jax.input_pipeline import tfds_data  # pylint: disable=g-import-not-at-top
  tfds_dir, name, train_split, eval_split = tfds_data.fields(config)
  builder = tfds_data.open_builder(tfds_dir, name)
  for field, split in (("tfds_train_split", train_split), ("tfds_eval_split", eval_split)):
    try:
      count = builder.info.splits[split].num_examples
    except (KeyError, ValueError):
      raise ValueError(f"config.data.{field}={split!r}: data set {name!r} in {tfds_dir} has "
                       f"splits {sorted(builder.info.splits.keys())}") from None
    if count < 1:
      raise ValueError(f"config.data.{field}={split!r}: split {split!r} of {tfds_dir} is "
                       "empty")
  if not config.data.tfds_in_memory:
    tfds_data.open_split(tfds_dir, name, train_split)  # raises for a TFRecord data set
  features = builder.info.features
  if "image" not in features:
    raise ValueError(f"config.data.tfds_dir={tfds_dir!r}: the data set has no 'image' feature "
                     f"(it has {sorted(features.keys())})")
