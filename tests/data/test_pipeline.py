"""Tests of the input pipeline's `tfds` source (config.data.source = "tfds") and of the
rotation augmentation: the same guarantees as the folder source."""

import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image
from PIL import ImageDraw
import pytest
import tensorflow as tf

from mangacolor_jax.input_pipeline import config_check as data_check
from mangacolor_jax.input_pipeline import datasets
from mangacolor_jax.input_pipeline import ops
from mangacolor_jax.data import preparer

_REPO = Path(__file__).resolve().parents[2]
_HW = (32, 48)  # H != W


def _drawing(seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  image = Image.new("RGB", (64, 48), tuple(int(c) for c in rng.integers(150, 256, 3)))
  draw = ImageDraw.Draw(image)
  for _ in range(5):
    cx, cy = rng.uniform(5, 60), rng.uniform(5, 44)
    draw.ellipse([cx - 18, cy - 14, cx + 18, cy + 14], outline=(20, 20, 20), width=2,
                 fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
  return np.asarray(image)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A prepared TFDS data set of 30 distinct pictures (21 / 6 / 3)."""
  root = tmp_path_factory.mktemp("tfds_source")
  for i in range(30):
    Image.fromarray(_drawing(i)).save(root / f"p{i:02d}.png")
  out = root.parent / (root.name + "_prepared")
  preparer.prepare(str(root), str(out))
  return out


def _config(data_dir, **data):
  spec = importlib.util.spec_from_file_location("default_config", _REPO / "configs/default.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.batch_size = 4
  config.data.image_size, config.data.image_width = _HW
  config.data.max_val_images = 5
  config.data.source = "tfds"
  config.data.tfds_dir = str(data_dir)
  for key, value in data.items():
    setattr(config.data, key, value)
  return config


def _take(ds, n):
  it = ds.as_numpy_iterator()
  return [next(it) for _ in range(n)]


def _equal(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_tfds_train_is_deterministic_resumable_and_splits_over_processes(data_dir):
  config = _config(data_dir, color_jitter=0.5, max_rotation=8.0)
  first = _take(datasets.create_train_dataset(config, seed=5), 3)
  for batch in first:
    assert batch["lineart"].shape == (4,) + _HW + (1,)
    assert batch["target"].shape == (4,) + _HW + (3,)
    assert batch["target"].min() >= -1 and batch["target"].max() <= 1
  assert not np.array_equal(first[0]["target"], first[1]["target"])
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  again = _take(datasets.create_train_dataset(config, seed=5).with_options(options), 3)
  assert all(_equal(a, b) for a, b in zip(first, again))
  resumed = _take(datasets.create_train_dataset(config, seed=5, start_index=8), 1)[0]
  assert _equal(first[2], resumed)
  other = _take(datasets.create_train_dataset(config, seed=6), 1)[0]
  assert not np.array_equal(first[0]["target"], other["target"])
  parts = [_take(datasets.create_train_dataset(
      config, seed=5, start_index=4, process_index=p, process_count=2), 2) for p in range(2)]
  for step in range(2):
    for key in first[0]:
      np.testing.assert_array_equal(
          np.concatenate([parts[0][step][key], parts[1][step][key]]), first[step + 1][key])


def test_tfds_epoch_is_the_train_split_and_eval_reads_validation(data_dir):
  splits = json.loads((data_dir / preparer.SPLITS_FILE).read_text())["splits"]
  n_train = len(splits["train"])
  config = _config(data_dir, augment=False, extractors=("dilate",))
  config.batch_size = n_train
  epoch = _take(datasets.create_train_dataset(config, seed=0), 1)[0]["target"]
  # The eval pipeline over the train split gives the same un-augmented targets, by id.
  as_eval = _config(data_dir, tfds_eval_split="train", max_val_images=1000)
  as_eval.batch_size = n_train
  ref = _take(datasets.create_eval_dataset(as_eval), 1)[0]
  assert [n.decode() for n in ref["name"]] == splits["train"]
  matches = [int(np.argmin(np.abs(ref["target"] - t).max(axis=(1, 2, 3)))) for t in epoch]
  assert sorted(matches) == list(range(n_train))  # every image once: a permutation
  np.testing.assert_allclose(epoch, ref["target"][matches], atol=1e-6)
  # Each id comes with its own pixels (the centred crop of that picture).
  for name, target in zip(ref["name"], ref["target"]):
    picture = tf.constant(_drawing(int(name.decode()[1:])) / 255.0, tf.float32)
    crop = ops.crop_resize(  # pylint: disable=protected-access
        picture, _HW, tf.constant(1.0), tf.constant([0.5, 0.5]))
    np.testing.assert_allclose(target, crop.numpy() * 2 - 1, atol=1e-5, err_msg=name)
  # Validation: the first max_val_images ids, padded to whole batches.
  config = _config(data_dir)
  assert datasets.count_eval_images(config) == 5
  batches = list(datasets.create_eval_dataset(config).as_numpy_iterator())
  names = [n.decode() for b in batches for n, v in zip(b["name"], b["valid"]) if v]
  assert names == splits["validation"][:5]
  assert batches[-1]["valid"].tolist() == [1, 0, 0, 0]


def test_records_read_from_disk_give_the_batches_of_the_split_in_memory(data_dir):
  """tfds_in_memory=False (records read one by one from disk) and True (the split read
  whole first) give the same training and evaluation batches."""
  for make in (lambda c: datasets.create_train_dataset(c, seed=3, start_index=4),
               datasets.create_eval_dataset):
    disk = _take(make(_config(data_dir, tfds_in_memory=False)), 2)
    memory = _take(make(_config(data_dir, tfds_in_memory=True)), 2)
    assert all(_equal(a, b) for a, b in zip(disk, memory))


def test_two_processes_read_each_training_image_once_per_epoch(data_dir):
  """Each process reads its own half of every global batch (from disk); over one epoch
  the two halves together are the train split, each image once."""
  n_train = len(json.loads((data_dir / preparer.SPLITS_FILE).read_text())["splits"]["train"])
  config = _config(data_dir, augment=False, extractors=("dilate",))
  config.batch_size = n_train
  whole = _take(datasets.create_train_dataset(config, seed=1), 1)[0]["target"]
  config.batch_size = 2
  steps = -(-n_train // 2)
  halves = [np.concatenate([b["target"] for b in _take(datasets.create_train_dataset(
      config, seed=1, process_index=p, process_count=2), steps)]) for p in range(2)]
  # Global example g = 2 * step + process; the epoch is g < n_train.
  read = np.stack([halves[g % 2][g // 2] for g in range(n_train)])
  matches = [int(np.argmin(np.abs(whole - t).max(axis=(1, 2, 3)))) for t in read]
  assert sorted(matches) == list(range(n_train))
  np.testing.assert_array_equal(read, whole)


def test_a_tfrecord_data_set_is_read_in_memory_only(tmp_path):
  """Data sets stored as TFRecord (earlier versions of prepare) cannot be read record by
  record: the error names config.data.tfds_in_memory, and with it set they train."""
  from mangacolor_jax.input_pipeline import tfds_builder  # pylint: disable=g-import-not-at-top
  records = {s: [{"image": _drawing(i), "id": f"p{i:02d}", "tags": []} for i in range(k)]
             for s, k in (("train", 6), ("validation", 2))}
  tfds_builder.MangacolorImages(records=records, data_dir=str(tmp_path),
                                file_format="tfrecord").download_and_prepare()
  with pytest.raises(ValueError, match="config.data.tfds_in_memory=False: .* stored as tfrecord"):
    data_check.validate_data_config(_config(tmp_path))
  config = _config(tmp_path, tfds_in_memory=True)
  data_check.validate_data_config(config)
  assert _take(datasets.create_train_dataset(config, seed=0), 1)[0]["target"].shape == (
      4,) + _HW + (3,)


@pytest.mark.parametrize("field, value, message", [
    ("tfds_dir", "", "config.data.tfds_dir is empty"),
    ("tfds_dir", "/nonexistent/tfds", "does not exist"),
    ("tfds_train_split", "training", "config.data.tfds_train_split"),
    ("tfds_eval_split", "val", "config.data.tfds_eval_split"),
    ("max_rotation", 90.0, "config.data.max_rotation"),
])
def test_tfds_config_errors_name_the_field(data_dir, field, value, message):
  config = _config(data_dir, **{field: value})
  with pytest.raises(ValueError, match=message):
    data_check.validate_data_config(config)


def test_tfds_dir_without_a_data_set(tmp_path, data_dir):
  with pytest.raises(ValueError, match="no prepared data set"):
    datasets.create_train_dataset(_config(tmp_path), seed=0)


# pylint: disable=protected-access
def test_rotation_zooms_so_no_corner_is_empty():
  flat = tf.fill([32, 48, 3], 0.3)
  for degrees in (-10.0, 4.0, 10.0):
    out = ops.rotate(flat, tf.constant(np.radians(degrees), tf.float32))
    np.testing.assert_allclose(out.numpy(), 0.3, atol=1e-5)
  ramp = tf.constant(np.random.default_rng(0).random((32, 48, 3)), tf.float32)
  same = ops.rotate(ramp, tf.constant(0.0))
  np.testing.assert_allclose(same.numpy(), ramp.numpy(), atol=1e-5)
  turned = ops.rotate(ramp, tf.constant(0.1)).numpy()
  assert np.abs(turned - ramp.numpy()).mean() > 0.05


def test_rotation_changes_only_what_it_should(data_dir):
  plain = _take(datasets.create_train_dataset(_config(data_dir), seed=1), 1)[0]
  turned = _take(datasets.create_train_dataset(
      _config(data_dir, max_rotation=10.0), seed=1), 1)[0]
  # Same images (same permutation and crops), rotated: close but not equal.
  assert not np.array_equal(plain["target"], turned["target"])
  assert np.abs(plain["target"] - turned["target"]).mean() < 0.5
