"""The training and evaluation datasets: (line art, colour target) pairs, by tf.data.

Sources (`config.data.source`, one class each in `sources.py`):

* ``synthetic``: one procedurally drawn character (`synthetic.render`), no files. The train
  split is renderer indices [0, num_train), the validation split [num_train, num_train +
  num_val), both from `SYNTHETIC_DATA_SEED`, which does not depend on `config.seed`: every
  run sees the same validation images.
* ``folder``: every JPEG/PNG/WebP under `config.data.image_dir` (recursive), any size and
  aspect, gray and RGBA too (alpha is composited on white). A fixed share
  (`config.data.val_fraction`) is held out by `files.split_files`, again independent of the seed.
* ``tfds``: the TFDS data set `python -m mangacolor_jax.data.prepare` builds in
  `config.data.tfds_dir` (`tfds.builder("mangacolor_images", data_dir=...)`): training
  reads split `config.data.tfds_train_split` ("train"), evaluation
  `config.data.tfds_eval_split` ("validation"; "test" for the final numbers). prepare
  stores each split as ArrayRecord shards in id order, so example i is record i, read from
  disk when the map asks for it (undecoded, `tfds.decode.SkipDecoding`) and decoded like a
  folder's file. That random access keeps this source's guarantees identical to the
  folder's -- the same permutation and per-example randomness, a resume that skips by
  arithmetic before anything is read, each process reading only its examples -- with host
  memory flat in the data set's size (a TFRecord stream could only skip by reading, and
  with a shuffle buffer decoding, everything skipped). `config.data.tfds_in_memory` reads
  each split whole into host memory first instead (the same examples; the only way for
  data sets stored as TFRecord).

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
extracted after all of them, so the pair stays consistent, then optionally made heavier
(`line_weight`: `lineart.thicken` by a random share, as pens of other widths draw) and
lighter or darker (`line_tone`: `lineart.tone` by a random power, as other pencils and
scans give).

Use from JAX:

  ds = datasets.create_train_dataset(config, seed=data_seed, start_index=step * bs,
                                           process_index=jax.process_index(),
                                           process_count=jax.process_count())
  for batch in ds.as_numpy_iterator():  # dict of numpy arrays, never ends
    batch["lineart"]  # float32 [b, H, W, 1] in [-1, 1], -1 = ink
    batch["target"]   # float32 [b, H, W, 3] in [-1, 1]

  for batch in datasets.create_eval_dataset(config).as_numpy_iterator():  # finite
    batch["valid"]    # float32 [b], 0 for the padding of the last batch: mask metrics
    batch["name"]     # bytes [b], file path in its folder (b"" for padding)

Each process gets b = config.batch_size // process_count examples per batch; place them with
`jax.make_array_from_process_local_data`. TensorFlow is kept off the GPUs (`tf_cpu`) so that
it does not take accelerator memory from JAX.
"""

import math
from typing import Optional

import numpy as np

from mangacolor_jax.input_pipeline import config_check
from mangacolor_jax.input_pipeline import lineart
from mangacolor_jax.input_pipeline import ops
from mangacolor_jax.input_pipeline import sources
from mangacolor_jax.input_pipeline.tf_cpu import tf

# Salts that keep the permutation and the per-example randomness of one seed apart.
_SHUFFLE_SALT = 0x5F1E
_SAMPLE_SALT = 0xA6
# Separate from the six per-example keys so that turning rotation on changes nothing else.
_ROTATION_SALT = 0x207
_LINE_WEIGHT_SALT = 0x3E1  # likewise for config.data.line_weight
_LINE_TONE_SALT = 0x70E  # and for config.data.line_tone
_INT64_MAX = np.iinfo(np.int64).max


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


def _augment(image: tf.Tensor, data, hw, keys: tf.Tensor, rotation_key: tf.Tensor,
             max_rotation: float, fast_upscale: bool) -> tf.Tensor:
  """A training example's target: random crop (the shift), rotation, flip, colour jitter."""
  lo_scale, hi_scale = (float(v) for v in data.crop_scale)
  u = tf.random.stateless_uniform([3], keys[0])
  scale = lo_scale + (hi_scale - lo_scale) * u[0]
  target = ops.crop_resize(image, hw, scale, u[1:], fast_upscale)
  if max_rotation > 0:
    target = ops.rotate(target, tf.random.stateless_uniform(
        [], rotation_key, -max_rotation, max_rotation))
  if data.flip:
    target = tf.image.stateless_random_flip_left_right(target, keys[1])
  if data.color_jitter > 0:
    target = ops.color_jitter(target, float(data.color_jitter), keys[2:5])
  return target


def _train_example_fn(config, source, seed: int, lineart_on_device: bool = False):
  """g -> training example number g of the run: which image (a stateless permutation per
  epoch) and every random choice (stateless ops keyed by (seed, g)). On the device path
  the example carries its line-art draw instead of the line art (`_device_draw`)."""
  data = config.data
  n = source.size
  hw = config_check.image_hw(config)
  shuffle_key = tf.constant([seed, _SHUFFLE_SALT], tf.int64)
  sample_key = tf.constant([seed, _SAMPLE_SALT], tf.int64)
  extractors = tuple(data.extractors) if not isinstance(data.extractors, str) else (
      data.extractors,)
  max_rotation = math.radians(float(data.max_rotation))

  def make_example(g):
    epoch, position = g // n, g % n
    index = tf.random.experimental.index_shuffle(
        position, tf.random.experimental.stateless_fold_in(shuffle_key, epoch),
        max_index=n - 1)
    keys = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(sample_key, g), num=6)
    image = source.load(index)
    if data.augment:
      rotation_key = tf.random.experimental.stateless_fold_in(
          tf.random.experimental.stateless_fold_in(sample_key, g), _ROTATION_SALT)
      target = _augment(image, data, hw, keys, rotation_key, max_rotation,
                        lineart_on_device)
    else:
      target = ops.crop_resize(image, hw, tf.constant(1.0), tf.constant([0.5, 0.5]),
                               lineart_on_device)
    weight = None
    if data.line_weight > 0:
      weight = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(
          tf.random.experimental.stateless_fold_in(sample_key, g), _LINE_WEIGHT_SALT),
                                           0.0, float(data.line_weight))
    gamma = None
    if data.line_tone > 0:  # a power log-uniform in [exp(-line_tone), exp(line_tone)]
      gamma = tf.exp(tf.random.stateless_uniform(
          [], tf.random.experimental.stateless_fold_in(
              tf.random.experimental.stateless_fold_in(sample_key, g), _LINE_TONE_SALT),
          -float(data.line_tone), float(data.line_tone)))
    if lineart_on_device:
      choice, param = lineart.random_choice(keys[5], extractors, tuple(data.xdog_sigma),
                                            tuple(data.dilate_gain))
      kinds = tf.constant([config_check.EXTRACTORS.index(e) for e in extractors], tf.int32)
      example = _device_draw(target * 2.0 - 1.0, tf.gather(kinds, choice), param)
      if weight is not None:
        example["lineart_weight"] = weight
      if gamma is not None:
        example["lineart_gamma"] = gamma
      return example
    art = lineart.random_lineart(
        target, keys[5], extractors=extractors, xdog_sigma=tuple(data.xdog_sigma),
        dilate_gain=tuple(data.dilate_gain), upscale=int(data.lineart_upscale))
    if weight is not None:
      art = lineart.thicken(art, weight)
    if gamma is not None:
      art = lineart.tone(art, gamma)
    return {"lineart": art * 2.0 - 1.0, "target": target * 2.0 - 1.0}

  return make_example


def _device_draw(target: tf.Tensor, kind, param) -> dict:
  """An example for line art made on the device (`nn.lineart.lineart`): the target and
  the draw of its extractor (an index into EXTRACTORS) and parameter."""
  return {"target": target, "lineart_kind": tf.cast(kind, tf.int32),
          "lineart_param": tf.cast(param, tf.float32)}


def create_train_dataset(config,
                         *,
                         seed: int,
                         start_index: int = 0,
                         process_index: int = 0,
                         process_count: int = 1,
                         lineart_on_device: bool = False) -> tf.data.Dataset:
  """Infinite, shuffled, augmented training batches for this process.

  Args:
    config: the run's ConfigDict (`batch_size` and `data` are read).
    seed: seed of the order, augmentations and line-art choices.
    start_index: number of examples (global, over all processes) already consumed: pass
      step * config.batch_size to resume a run exactly where it stopped.
    process_index: this process's index (jax.process_index()).
    process_count: number of processes (jax.process_count()).
    lineart_on_device: leave the line art to the accelerator: each example then carries
      "lineart_kind" (int32) and "lineart_param" (float32), the draw the CPU path would
      make its line art from, instead of "lineart" (`training.inputs` completes it).

  Returns:
    A dataset of dicts {"lineart": float32 [b, H, W, 1], "target": float32 [b, H, W, 3]},
    both in [-1, 1], with b = config.batch_size // process_count.

  Raises:
    ValueError: for a bad config (see `validate_data_config`), a batch that does not divide
      over the processes, or a multi-process start_index that is not a whole number of
      global batches.
  """
  config_check.validate_data_config(config)
  per_process = _batch_split(config, process_index, process_count)
  global_batch = config.batch_size
  if start_index < 0 or (process_count > 1 and start_index % global_batch):
    raise ValueError(f"start_index={start_index} must be >= 0 and, with several processes, "
                     f"a multiple of config.batch_size={global_batch}")
  source = sources.create_source(config, "train")
  make_example = _train_example_fn(config, source, ops.to_int64_seed(seed),
                                   lineart_on_device)

  def example_number(local):
    # Local counter -> global example number g: this process's slice of each global batch.
    return (local // per_process) * global_batch + process_index * per_process + (
        local % per_process)

  # Skipping is arithmetic: the stream starts at this process's first example after
  # start_index, and nothing before it is ever made.
  first_local = (start_index // global_batch) * per_process + start_index % global_batch
  ds = tf.data.Dataset.range(first_local, _INT64_MAX)
  ds = ds.map(lambda local: make_example(example_number(local)),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if source.decodes_files:
    # Files that do not decode were left out when the source was made; one that stops
    # decoding during the run (rewritten under it) is dropped here rather than ending it.
    ds = ds.ignore_errors(log_warning=True)
  ds = ds.batch(per_process, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return ds.with_options(_options())


def _eval_example_fn(config, source, per_process: int, process_index: int,
                     lineart_on_device: bool):
  """local -> this process's evaluation example number `local`: a centred crop and the
  fixed line art of its image, or padding past the end (valid = 0)."""
  global_batch = config.batch_size
  n = source.size
  hw = config_check.image_hw(config)
  upscale = int(config.data.lineart_upscale)

  def make_example(local):
    g = (local // per_process) * global_batch + process_index * per_process + (
        local % per_process)
    valid = g < n
    index = tf.minimum(g, n - 1)

    def real():
      target = ops.crop_resize(source.load(index), hw, tf.constant(1.0),
                               tf.constant([0.5, 0.5]), lineart_on_device)
      if lineart_on_device:
        return tf.zeros(list(hw) + [1]), target * 2.0 - 1.0
      return lineart.fixed_lineart(target, upscale=upscale) * 2.0 - 1.0, target * 2.0 - 1.0

    def padding():
      return tf.zeros(list(hw) + [1]), tf.zeros(list(hw) + [3])

    art, target = tf.cond(valid, real, padding)
    example = {
        "lineart": tf.ensure_shape(art, list(hw) + [1]),
        "target": tf.ensure_shape(target, list(hw) + [3]),
        "valid": tf.cast(valid, tf.float32),
        "name": tf.where(valid, source.name(index), ""),
    }
    if lineart_on_device:
      del example["lineart"]
      example.update(_device_draw(example["target"], config_check.EXTRACTORS.index("xdog"),
                                  lineart.EVAL_SIGMA))
    return example

  return make_example


def count_eval_images(config, image_dir: Optional[str] = None) -> int:
  """Number of real (not padding) images `create_eval_dataset` yields over all processes."""
  if image_dir is None:
    config_check.validate_data_config(config)
  return sources.create_source(config, "val", image_dir=image_dir).size


def create_eval_dataset(config,
                        *,
                        image_dir: Optional[str] = None,
                        split: str = "val",
                        process_index: int = 0,
                        process_count: int = 1,
                        lineart_on_device: bool = False) -> tf.data.Dataset:
  """Finite, deterministic evaluation batches for this process.

  The validation split (at most `config.data.max_val_images` images) or, with `image_dir`,
  every image of that folder (no split, no cap: the evaluate command). No augmentation:
  a centred crop with the output's aspect, resized, and `lineart.fixed_lineart`. The last
  global batch is padded to full size; padding has valid = 0, zero images and name b"".

  Args:
    config: the run's ConfigDict.
    image_dir: optional folder to evaluate instead of the configured source.
    split: "val", or "test" (`sources.create_source`): the images neither training nor
      validation reads, for final numbers.
    process_index: this process's index.
    process_count: number of processes.
    lineart_on_device: as in `create_train_dataset` (the draw: XDoG at sigma 0.4).

  Returns:
    A dataset of dicts {"lineart": float32 [b, H, W, 1], "target": float32 [b, H, W, 3]
    (both in [-1, 1]), "valid": float32 [b], "name": string [b]}, with
    b = config.batch_size // process_count.
  """
  config_check.validate_data_config(config)
  per_process = _batch_split(config, process_index, process_count)
  source = sources.create_source(config, split, image_dir=image_dir)
  num_batches = -(-source.size // config.batch_size)
  make_example = _eval_example_fn(config, source, per_process, process_index,
                                  lineart_on_device)
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
