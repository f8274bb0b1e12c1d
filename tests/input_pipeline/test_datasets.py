"""Tests of the synthetic renderer, the line-art extractors and the tf.data pipeline."""

import importlib.util
import os
from pathlib import Path

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from mangacolor_jax.input_pipeline import config_check as data_check
from mangacolor_jax.input_pipeline import datasets
from mangacolor_jax.input_pipeline import files as ip_files
from mangacolor_jax.input_pipeline import sources
from mangacolor_jax.input_pipeline import lineart
from mangacolor_jax.input_pipeline import synthetic

_REPO = Path(__file__).resolve().parents[2]
_ANIME_FACES = Path(__file__).resolve().parents[3] / "shared/data/anime_faces"
_HW = (32, 48)  # H != W, so swapped axes fail


def _default_config():
  spec = importlib.util.spec_from_file_location("default_config", _REPO / "configs/default.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _config(**data):
  """Default config, shrunk for speed, with `data` fields overridden."""
  config = _default_config()
  config.batch_size = 4
  config.data.image_size, config.data.image_width = _HW
  config.data.num_train = 64
  config.data.num_val = 10
  config.data.max_val_images = 10
  for key, value in data.items():
    with config.ignore_type():
      setattr(config.data, key, value)
  return config


def _take(ds, n):
  it = ds.as_numpy_iterator()
  return [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ----------------------------------------------------------------------------------------
# synthetic


def test_synthetic_is_deterministic_and_non_square():
  a = synthetic.render(3, 7, 48, 64)
  assert a.shape == (48, 64, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, synthetic.render(3, 7, 48, 64))
  assert not np.array_equal(a, synthetic.render(3, 8, 48, 64))
  assert not np.array_equal(a, synthetic.render(4, 7, 48, 64))
  for hw in [(64, 40), (16, 16), (17, 33)]:
    assert synthetic.render(0, 0, *hw).shape == hw + (3,)
  with pytest.raises(ValueError):
    synthetic.render(0, 0, 15, 64)


def test_synthetic_draws_the_palette_with_outlines():
  image = synthetic.render_character(np.random.default_rng(0), 64, 64).astype(np.int32)
  for part in ("hair", "skin", "shirt", "iris", "background"):
    close = np.abs(image - np.array(synthetic.PALETTE[part])).max(-1) <= 8
    assert close.sum() >= 4, part
  assert (image.max(-1) < 80).sum() > 100  # black outlines


# ----------------------------------------------------------------------------------------
# lineart


def _square_image(hw=(48, 64), box=(16, 32, 20, 44)):
  image = np.ones(hw + (3,), np.float32)
  y0, y1, x0, x1 = box
  image[y0:y1, x0:x1] = 0.0
  return tf.constant(image), box


_EXTRACTORS = {
    "xdog": lambda im: lineart.xdog(im, 0.4),
    "xdog_native": lambda im: lineart.xdog(im, 0.8, upscale=1),
    "dilate": lambda im: lineart.dilation_difference(im, 2.5),
    "fixed": lineart.fixed_lineart,
    "random": lambda im: lineart.random_lineart(im, tf.constant([1, 2], tf.int64)),
}


@pytest.mark.parametrize("name", sorted(_EXTRACTORS))
def test_lineart_range_shape_and_white_paper(name):
  extract = _EXTRACTORS[name]
  rng = np.random.default_rng(0)
  out = extract(tf.constant(rng.random((40, 56, 3)), tf.float32)).numpy()
  assert out.shape == (40, 56, 1) and out.dtype == np.float32
  assert out.min() >= 0.0 and out.max() <= 1.0
  white = extract(tf.ones((40, 56, 3))).numpy()
  assert white.min() > 0.99


@pytest.mark.parametrize("name", ["xdog", "dilate"])
def test_lineart_inks_the_border_of_a_square(name):
  image, (y0, y1, x0, x1) = _square_image()
  out = _EXTRACTORS[name](image).numpy()[..., 0]
  # Each side of the square has ink within a pixel of its edge...
  for side in (out[y0 - 1:y0 + 1, x0 + 2:x1 - 2], out[y1 - 1:y1 + 1, x0 + 2:x1 - 2],
               out[y0 + 2:y1 - 2, x0 - 1:x0 + 1], out[y0 + 2:y1 - 2, x1 - 1:x1 + 1]):
    assert side.min(axis=side.shape.index(2)).max() < 0.5
  # ...and the paper a few pixels away is clean.
  far = np.ones_like(out, bool)
  far[y0 - 4:y1 + 4, x0 - 4:x1 + 4] = False
  assert out[far].min() > 0.99


def test_random_lineart_is_seeded_and_uses_every_extractor():
  image, (y0, y1, x0, x1) = _square_image()
  centre = []
  for s in range(12):
    seed = tf.constant([7, s], tf.int64)
    a = lineart.random_lineart(image, seed).numpy()
    np.testing.assert_array_equal(a, lineart.random_lineart(image, seed).numpy())
    centre.append(a[(y0 + y1) // 2, (x0 + x1) // 2, 0])
  # XDoG fills the black square with ink, dilation-difference leaves its inside as paper.
  assert min(centre) < 0.1 and max(centre) > 0.9
  with pytest.raises(ValueError, match="unknown"):
    lineart.random_lineart(image, tf.constant([0, 0]), extractors=("sketchkeras",))


def test_line_weight_makes_training_lines_heavier_and_changes_nothing_else():
  plain = _take(datasets.create_train_dataset(_config(), seed=2), 2)
  heavy = _take(datasets.create_train_dataset(_config(line_weight=1.0), seed=2), 2)
  for a, b in zip(plain, heavy):
    np.testing.assert_array_equal(a["target"], b["target"])  # the same examples
    assert np.all(b["lineart"] <= a["lineart"] + 1e-6)  # only ever more ink
    assert (b["lineart"] < 0).mean() > 1.2 * (a["lineart"] < 0).mean()
  with pytest.raises(ValueError, match="config.data.line_weight"):
    data_check.validate_data_config(_config(line_weight=1.5))


def test_line_tone_makes_training_lines_lighter_or_darker_and_changes_nothing_else():
  plain = _take(datasets.create_train_dataset(_config(), seed=2), 2)
  toned = _take(datasets.create_train_dataset(_config(line_tone=0.7), seed=2), 2)
  darker = lighter = 0
  for a, b in zip(plain, toned):
    np.testing.assert_array_equal(a["target"], b["target"])  # the same examples
    x, y = (a["lineart"] + 1) / 2, (b["lineart"] + 1) / 2
    np.testing.assert_allclose(y[x >= 1.0], 1.0)  # paper stays paper
    for xi, yi in zip(x, y):  # one power per example: the grey levels keep their order
      grey = (xi > 0.05) & (xi < 0.95)
      power = np.log(yi[grey]) / np.log(xi[grey])
      np.testing.assert_allclose(power, np.median(power), rtol=1e-3)
      darker += np.median(power) > 1.05
      lighter += np.median(power) < 0.95
  assert darker and lighter
  with pytest.raises(ValueError, match="config.data.line_tone"):
    data_check.validate_data_config(_config(line_tone=-0.1))


def test_the_folder_check_leaves_out_every_kind_of_broken_file(tmp_path):
  """The start-up check (`sources.drop_undecodable`, PNGs by chunk CRCs without inflating
  them) keeps what TensorFlow's decoder reads and leaves out what it cannot."""
  picture = Image.fromarray(synthetic.render(0, 1, 48, 64))
  picture.save(tmp_path / "good.png")
  picture.save(tmp_path / "good.jpg", quality=90)
  picture.save(tmp_path / "png_named.jpg", format="PNG")
  png, jpg = (tmp_path / "good.png").read_bytes(), (tmp_path / "good.jpg").read_bytes()
  broken = {"html.png": b"<html>not an image</html>", "empty.jpg": b"",
            "cut.png": png[:len(png) // 2], "cut.jpg": jpg[:len(jpg) // 2],
            # One byte of the compressed pixels changed: the chunk's CRC no longer holds.
            "flipped.png": png[:60] + bytes([png[60] ^ 0xFF]) + png[61:]}
  for name, data in broken.items():
    (tmp_path / name).write_bytes(data)
  paths = sorted(str(p) for p in tmp_path.iterdir())
  ok, bad = sources.drop_undecodable(paths)
  assert sorted(os.path.basename(p) for p in ok) == ["good.jpg", "good.png", "png_named.jpg"]
  assert sorted(os.path.basename(p) for p in bad) == sorted(broken)
  for path in bad:  # what the check leaves out, the stream's decoder cannot read either
    with pytest.raises(tf.errors.OpError):
      tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)


def _broken_and_good_files(folder):
  """Good images of each format and the broken files a real folder holds, by name."""
  picture = Image.fromarray(synthetic.render(0, 1, 48, 64))
  picture.save(folder / "good.png")
  picture.save(folder / "good.jpg", quality=90)
  picture.save(folder / "good.webp", quality=90)
  picture.save(folder / "png_named.jpg", format="PNG")
  png, jpg = (folder / "good.png").read_bytes(), (folder / "good.jpg").read_bytes()
  (folder / "trailing.jpg").write_bytes(jpg + b"\0" * 20)  # bytes after the end marker
  broken = {"html.png": b"<html>not an image</html>", "empty.jpg": b"",
            "cut.png": png[:len(png) // 2], "cut.jpg": jpg[:len(jpg) // 2],
            "cut.webp": (folder / "good.webp").read_bytes()[:200]}
  for name, data in broken.items():
    (folder / name).write_bytes(data)
  return broken


def test_the_lazy_check_tells_whole_files_from_cut_ones_by_their_ends(tmp_path):
  """`sources.looks_whole` reads a file's first and last bytes: it passes every good
  image and fails the empty, the non-image and the cut-short ones, which the decoder
  cannot read either."""
  broken = _broken_and_good_files(tmp_path)
  verdicts = {p.name: bool(sources.looks_whole(tf.io.read_file(str(p))))
              for p in tmp_path.iterdir()}
  assert verdicts == {name: name not in broken for name in verdicts}
  for name in broken:
    with pytest.raises(tf.errors.OpError):
      tf.io.decode_image(tf.io.read_file(str(tmp_path / name)), channels=0,
                         expand_animations=False)


def test_a_lazily_checked_folder_reads_no_broken_file_and_resumes_exactly(
    tmp_path, monkeypatch):
  """file_check=lazy: nothing is checked at start-up; a broken file met by the stream is
  replaced by the next file of the list, so the examples are a function of their number
  alone: a stream started at example 8 gives what the stream from 0 gave there, and
  the broken files' places are filled, not dropped."""
  for i in range(10):
    Image.fromarray(synthetic.render(3, i, 32, 48)).save(tmp_path / f"f{i:02d}.png")
  (tmp_path.parent / "kinds").mkdir()
  for i, data in enumerate(_broken_and_good_files(tmp_path.parent / "kinds").values()):
    (tmp_path / f"f{i:02d}b.png").write_bytes(data)  # right after a good file
  config = _config(source="folder", image_dir=str(tmp_path), val_fraction=0.1,
                   file_check="lazy", augment=False)
  source = sources.create_source(config, "train")
  assert source.check == "lazy" and source.size == 13  # 15 files, 2 for validation
  whole = _take(datasets.create_train_dataset(config, seed=1), 6)
  resumed = _take(datasets.create_train_dataset(config, seed=1, start_index=8), 4)
  for a, b in zip(whole[2:], resumed):
    _assert_batches_equal(a, b)
  # Every example of an epoch is one of the good images (the stream lost none).
  good = {np.asarray(Image.open(tmp_path / f"f{i:02d}.png")).tobytes() for i in range(10)}
  epoch = np.concatenate([b["target"] for b in whole])[:13]
  for target in epoch:
    image = np.round((target + 1.0) * 127.5).astype(np.uint8)
    assert image.tobytes() in good
  # auto: whole folders up to FULL_CHECK_MAX_FILES files, lazily above.
  monkeypatch.setattr(sources, "FULL_CHECK_MAX_FILES", 12)
  config.data.file_check = "auto"
  assert sources.create_source(config, "train").check == "lazy"
  assert sources.create_source(config, "val").check == "decode"
  monkeypatch.setattr(sources, "FULL_CHECK_MAX_FILES", 13)
  assert sources.create_source(config, "train").check == "decode"
  config.data.file_check = "later"
  with pytest.raises(ValueError, match="config.data.file_check='later'"):
    data_check.validate_data_config(config)


@pytest.mark.parametrize("root", ["data", "data/", "./data", "data//sub/..", "/abs/data"])
def test_relative_paths_are_relpaths(root):
  """The names of a folder's files (`sources.relative_paths`, by slicing) are exactly
  `os.path.relpath`'s, whatever way the root is written."""
  inner = ["a.png", "sub/b.jpg", "sub/deeper/c.webp"]
  paths = [os.path.join(root, p) for p in inner] + ["elsewhere/d.png"]
  assert sources.relative_paths(paths, root) == [os.path.relpath(p, root) for p in paths]


def test_to_lineart_numpy_accepts_gray_rgb_and_rgba():
  rgb = synthetic.render(0, 0, 32, 48)
  out = lineart.to_lineart_numpy(rgb)
  assert out.shape == (32, 48, 1) and out.dtype == np.float32
  assert out.min() < 0.1 and out.max() == 1.0
  assert lineart.to_lineart_numpy(rgb[..., 0]).shape == (32, 48, 1)
  transparent = np.zeros((32, 48, 4), np.uint8)  # black but fully transparent: white paper
  assert lineart.to_lineart_numpy(transparent).min() > 0.99


# ----------------------------------------------------------------------------------------
# Pipeline, synthetic source


def test_train_batches_shapes_range_and_change():
  batches = _take(datasets.create_train_dataset(_config(), seed=0), 2)
  for batch in batches:
    assert batch["lineart"].shape == (4,) + _HW + (1,)
    assert batch["target"].shape == (4,) + _HW + (3,)
    for value in batch.values():
      assert value.dtype == np.float32
      assert value.min() >= -1.0 and value.max() <= 1.0
    assert batch["lineart"].min() < -0.5 and batch["lineart"].max() == 1.0  # ink and paper
  assert not np.array_equal(batches[0]["target"], batches[1]["target"])


def test_train_is_deterministic_resumable_and_seeded():
  config = _config(color_jitter=0.5)
  first = _take(datasets.create_train_dataset(config, seed=5), 3)
  again = datasets.create_train_dataset(config, seed=5)
  # One private thread instead of many: parallelism must not change a bit.
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  for a, b in zip(first, _take(again.with_options(options), 3)):
    _assert_batches_equal(a, b)
  resumed = _take(datasets.create_train_dataset(config, seed=5, start_index=8), 1)[0]
  _assert_batches_equal(first[2], resumed)
  other = _take(datasets.create_train_dataset(config, seed=6), 1)[0]
  assert not np.array_equal(first[0]["target"], other["target"])


def test_train_epochs_cover_the_split_and_reshuffle():
  config = _config(augment=False, num_train=8, extractors=("dilate",))
  config.batch_size = 8
  targets = [b["target"] for b in _take(datasets.create_train_dataset(config, seed=0),
                                         2)]
  renders = np.stack([synthetic.render(sources.SYNTHETIC_DATA_SEED, i, *_HW)
                      for i in range(8)]).astype(np.float32) / 127.5 - 1.0

  def order(batch):
    return [int(np.argmin(np.abs(renders - t).max(axis=(1, 2, 3)))) for t in batch]

  epoch0, epoch1 = order(targets[0]), order(targets[1])
  assert sorted(epoch0) == list(range(8)) and sorted(epoch1) == list(range(8))
  assert epoch0 != epoch1
  np.testing.assert_allclose(targets[0], renders[epoch0], atol=1e-5)


def test_train_multi_process_slices_union_to_the_global_batch():
  config = _config()
  single = _take(datasets.create_train_dataset(config, seed=1, start_index=4), 2)
  parts = [_take(datasets.create_train_dataset(
      config, seed=1, start_index=4, process_index=p, process_count=2), 2) for p in range(2)]
  for step in range(2):
    assert parts[0][step]["target"].shape[0] == 2
    for key in single[step]:
      np.testing.assert_array_equal(
          np.concatenate([parts[0][step][key], parts[1][step][key]]), single[step][key])
  with pytest.raises(ValueError, match="batch_size"):
    datasets.create_train_dataset(config, seed=1, process_index=0, process_count=3)
  with pytest.raises(ValueError, match="start_index"):
    datasets.create_train_dataset(config, seed=1, start_index=2, process_index=0,
                                        process_count=2)


def test_eval_pads_the_last_batch_and_is_deterministic():
  config = _config()
  assert datasets.count_eval_images(config) == 10
  batches = list(datasets.create_eval_dataset(config).as_numpy_iterator())
  assert len(batches) == 3
  np.testing.assert_array_equal(batches[-1]["valid"], [1, 1, 0, 0])
  assert all(b["valid"].dtype == np.float32 for b in batches)
  assert batches[0]["name"][0] == b"synthetic_00064.png"  # first index after num_train
  assert batches[-1]["name"][-1] == b""
  assert batches[-1]["target"][-1].min() == batches[-1]["target"][-1].max() == 0.0
  for b in batches:
    assert b["lineart"].shape == (4,) + _HW + (1,)
    assert b["lineart"].min() >= -1.0 and b["target"].max() <= 1.0
  for a, b in zip(batches, datasets.create_eval_dataset(config).as_numpy_iterator()):
    _assert_batches_equal(a, b)
  # The validation set does not depend on the run's seed and is the renderer's output.
  expected = synthetic.render(sources.SYNTHETIC_DATA_SEED, 64, *_HW) / 127.5 - 1.0
  np.testing.assert_allclose(batches[0]["target"][0], expected, atol=1e-5)
  parts = [list(datasets.create_eval_dataset(config, process_index=p,
                                                   process_count=2).as_numpy_iterator())
           for p in range(2)]
  for step, batch in enumerate(batches):
    for key in batch:
      np.testing.assert_array_equal(
          np.concatenate([parts[0][step][key], parts[1][step][key]]), batch[key])


# ----------------------------------------------------------------------------------------
# Pipeline, folder source


def _write_images(folder: Path):
  """Writes images of several formats, sizes, aspects and modes; returns their names."""
  rng = np.random.default_rng(0)
  (folder / "sub").mkdir(parents=True)
  names = []

  def save(name, array, mode=None, **kwargs):
    Image.fromarray(array, mode).save(folder / name, **kwargs)
    names.append(Path(name).name)

  save("a.jpg", synthetic.render(0, 0, 40, 70))
  save("b.PNG", synthetic.render(0, 1, 90, 30))
  save("c.webp", synthetic.render(0, 2, 64, 64), lossless=True)
  save("sub/d.jpeg", synthetic.render(0, 3, 50, 50)[..., 0])  # grayscale
  rgba = np.concatenate([synthetic.render(0, 4, 33, 47), np.full((33, 47, 1), 255, np.uint8)],
                        -1)
  save("sub/e.png", rgba)
  save("f.webp", np.concatenate([synthetic.render(0, 5, 33, 47), rgba[..., 3:]], -1),
       lossless=True)
  clear = np.zeros((20, 30, 4), np.uint8)  # black, fully transparent
  save("g_clear.png", clear)
  save("h.png", (rng.random((24, 36, 3)) * 255).astype(np.uint8))
  (folder / "notes.txt").write_text("not an image")
  return names


def test_folder_source_reads_every_format(tmp_path):
  names = _write_images(tmp_path / "images")
  config = _config(source="folder", image_dir=str(tmp_path / "images"), val_fraction=0.25)
  files = ip_files.list_images(config.data.image_dir)
  assert sorted(os.path.basename(f) for f in files) == sorted(names)
  for batch in _take(datasets.create_train_dataset(config, seed=0), 3):
    assert batch["target"].shape == (4,) + _HW + (3,)
    assert batch["lineart"].min() >= -1.0 and batch["target"].max() <= 1.0
  assert datasets.count_eval_images(config) == 2
  # image_dir overrides the split: every image, by its path in the folder.
  folder = str(tmp_path / "images")
  assert datasets.count_eval_images(config, image_dir=folder) == len(names)
  got = {}
  for batch in datasets.create_eval_dataset(config, image_dir=folder).as_numpy_iterator():
    for name, valid, target in zip(batch["name"], batch["valid"], batch["target"]):
      if valid:
        got[name.decode()] = target
  assert sorted(got) == sorted(os.path.relpath(f, folder) for f in files)
  np.testing.assert_array_equal(got["g_clear.png"], 1.0)  # transparency is white paper
  gray = got[os.path.join("sub", "d.jpeg")]
  np.testing.assert_allclose(gray[..., 0], gray[..., 2], atol=1e-6)
  # Without augmentation an epoch of training targets is the train split, every file
  # decoded (training drops files that fail to decode, so check none was dropped).
  config.data.augment = False
  config.batch_size = 6
  train, _ = ip_files.split_files(files, 0.25)
  epoch = _take(datasets.create_train_dataset(config, seed=0), 1)[0]["target"]
  seen = sorted(name for t in epoch for name, e in got.items() if np.abs(t - e).max() < 1e-5)
  assert seen == sorted(os.path.relpath(f, folder) for f in train)


def test_split_files_is_fixed_and_disjoint():
  files = [f"/x/{i:03d}.png" for i in range(40)]
  train, val = ip_files.split_files(files, 0.1)
  assert len(val) == 4 and sorted(train + val) == files
  # Independent of list order and of where the folder lives.
  assert ip_files.split_files(files[::-1], 0.1) == (train, val)
  moved = ip_files.split_files([f.replace("/x/", "/y/z/") for f in files], 0.1)[1]
  assert [os.path.basename(f) for f in moved] == [os.path.basename(f) for f in val]
  assert len(ip_files.split_files(files[:3], 0.01)[1]) == 1


@pytest.mark.parametrize("case", ["missing", "empty", "text_as_png", "unset"])
def test_validate_rejects_bad_folders(tmp_path, case):
  folder = tmp_path / "data"
  if case != "missing":
    folder.mkdir()
  if case == "text_as_png":
    (folder / "x.png").write_text("<html>not found</html>")
  image_dir = "" if case == "unset" else str(folder)
  config = _config(source="folder", image_dir=image_dir)
  with pytest.raises(ValueError, match="config.data.image_dir") as info:
    data_check.validate_data_config(config)
  if case != "unset":
    assert str(folder) in str(info.value)
  with pytest.raises(ValueError, match="config.data.image_dir"):
    datasets.create_train_dataset(config, seed=0)


@pytest.mark.parametrize("field, value, message", [
    ("source", "safebooru", "config.data.source"),
    ("extractors", ("xdog", "sketchkeras"), "config.data.extractors"),
    ("image_width", 8, "config.data.image_width"),
    ("image_size", "64", "config.data.image_size"),
    ("num_val", 0, "config.data.num_val"),
    ("crop_scale", (0.9, 0.5), "config.data.crop_scale"),
])
def test_validate_rejects_bad_fields(field, value, message):
  with pytest.raises(ValueError, match=message):
    data_check.validate_data_config(_config(**{field: value}))


def test_validate_rejects_a_folder_with_one_image(tmp_path):
  Image.fromarray(synthetic.render(0, 0, 32, 32)).save(tmp_path / "only.png")
  with pytest.raises(ValueError, match="at least 2"):
    data_check.validate_data_config(_config(source="folder", image_dir=str(tmp_path)))


def test_image_hw():
  assert data_check.image_hw(_config(image_size=64, image_width=0)) == (64, 64)
  assert data_check.image_hw(_config(image_size=32, image_width=48)) == (32, 48)


def test_folder_source_on_anime_faces(tmp_path):
  subset = _ANIME_FACES / "ci_subset.txt"
  if not subset.exists():
    pytest.skip(f"real data not found at {_ANIME_FACES} (only in the development checkout)")
  folder = tmp_path / "faces"
  folder.mkdir()
  names = [line.strip() for line in subset.read_text().splitlines() if line.strip()]
  for name in names:
    os.symlink(_ANIME_FACES / name, folder / Path(name).name)
  config = _config(source="folder", image_dir=str(folder))
  data_check.validate_data_config(config)
  for batch in _take(datasets.create_train_dataset(config, seed=0), 2):
    assert batch["target"].shape == (4,) + _HW + (3,)
    assert batch["target"].min() >= -1.0 and batch["target"].max() <= 1.0
    # Real faces give both ink and paper.
    assert (batch["lineart"] < 0).mean() > 0.02 and (batch["lineart"] > 0.9).mean() > 0.3
  n_val = datasets.count_eval_images(config)
  assert n_val == max(1, round(len(names) * config.data.val_fraction))
  batches = list(datasets.create_eval_dataset(config).as_numpy_iterator())
  assert sum(b["valid"].sum() for b in batches) == n_val


def test_test_split_is_held_out_before_validation_and_never_trained_on(tmp_path):
  folder = tmp_path / "images"
  folder.mkdir()
  for i in range(40):
    Image.fromarray(np.full((20, 24, 3), i * 6, np.uint8)).save(folder / f"{i:02d}.png")
  files = sorted(str(p) for p in folder.iterdir())
  rest, test = ip_files.hold_out_test(files, 0.1)
  assert len(test) == 4 and not set(test) & set(rest) and sorted(rest + test) == files
  assert ip_files.hold_out_test(files[::-1], 0.1) == (rest, test)  # order-free
  assert ip_files.hold_out_test(files, 0.0) == (files, [])  # the default: nothing held out
  config = _config(source="folder", image_dir=str(folder), val_fraction=0.25,
                   test_fraction=0.1)
  names = lambda split: {n.decode() for b in datasets.create_eval_dataset(
      config, split=split).as_numpy_iterator() for n, v in zip(b["name"], b["valid"]) if v}
  test_names = names("test")
  assert test_names == {os.path.basename(f) for f in test}
  assert not test_names & names("val")
  train = sources.create_source(config, "train")
  assert not {os.path.basename(f) for f in train.files} & test_names
  # Without a test fraction, train and validation are exactly what they always were.
  config.data.test_fraction = 0.0
  assert sources.create_source(config, "train").files == ip_files.split_files(files, 0.25)[0]
