"""Line art on the device (`nn.lineart`, `training.inputs`) against the CPU path."""

import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from mangacolor_jax.input_pipeline import datasets
from mangacolor_jax.input_pipeline import lineart as host
from mangacolor_jax.input_pipeline import synthetic
from mangacolor_jax.nn import lineart as device
from mangacolor_jax.runtime import mesh as mesh_lib
from mangacolor_jax.training import inputs


def _images(anime_faces_dir=None):
  """float32 [N, 48, 64, 3] in [0, 1]: synthetic characters (H != W), and 64x64 real faces
  cropped to that size where the shared folder is present."""
  images = [synthetic.render(0, i, 48, 64) for i in range(8)]
  if anime_faces_dir is not None:
    names = (anime_faces_dir / "ci_subset.txt").read_text().split()[:24]
    images += [np.asarray(Image.open(anime_faces_dir / n).convert("RGB"))[8:56]
               for n in names]
  return np.stack(images).astype(np.float32) / 255.0


@pytest.fixture
def images(request):
  faces = None
  try:
    faces = request.getfixturevalue("anime_faces")
  except pytest.skip.Exception:
    pass  # the synthetic characters alone
  return _images(faces)


def _assert_same_lineart(host_art, device_art):
  """Equal to float rounding, except pixels where XDoG's hard threshold falls between the
  two paths' roundings: a handful in a thousand at most."""
  diff = np.abs(np.asarray(host_art) - np.asarray(device_art))
  off = diff > 1.0 / 255
  assert off.mean() <= 1e-3, f"{off.mean():.5f} of the pixels differ by more than 1/255"
  assert diff.mean() <= 1e-4


def test_the_upscale_is_tfs_bicubic_edges_included():
  x = np.random.default_rng(0).uniform(0, 1, (2, 12, 10, 1)).astype(np.float32)
  want = tf.image.resize(x, [24, 20], method="bicubic").numpy()
  np.testing.assert_allclose(np.asarray(device.upscale2(jnp.asarray(x))), want, atol=1e-6)


@pytest.mark.parametrize("sigma, max_sigma", [(0.3, 0.5), (0.45, 0.5), (0.4, 0.4),
                                              (0.8, 0.8)])
def test_xdog_matches_the_cpu_path(images, sigma, max_sigma):
  want = np.stack([host.xdog(tf.constant(im), tf.constant(sigma), max_sigma=max_sigma).numpy()
                   for im in images])
  got = device.xdog(jnp.asarray(images), jnp.full((len(images),), sigma),
                    device.kernel_radius(max_sigma))
  assert (want < 0.5).mean() > 0.02  # there are lines to compare
  _assert_same_lineart(want, got)


def test_dilation_difference_matches_the_cpu_path(images):
  gains = np.linspace(2.0, 3.0, len(images)).astype(np.float32)
  want = np.stack([host.dilation_difference(tf.constant(im), tf.constant(g)).numpy()
                   for im, g in zip(images, gains)])
  got = device.dilation_difference(jnp.asarray(images), jnp.asarray(gains))
  np.testing.assert_allclose(np.asarray(got), want, atol=1.0 / 255)


def test_thicken_matches_the_cpu_path_and_spreads_ink_one_pixel(images):
  art = np.stack([host.xdog(tf.constant(im), tf.constant(0.4)).numpy() for im in images])
  strengths = np.linspace(0.0, 1.0, len(images)).astype(np.float32)
  want = np.stack([host.thicken(tf.constant(a), tf.constant(w)).numpy()
                   for a, w in zip(art, strengths)])
  got = np.asarray(device.thicken(jnp.asarray(art), jnp.asarray(strengths)))
  np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_array_equal(want[0], art[0])  # strength 0: the line art as it was
  dot = np.ones((1, 5, 5, 1), np.float32)
  dot[0, 2, 2] = 0.0
  heavy = np.asarray(device.thicken(jnp.asarray(dot), jnp.asarray([0.5])))[0, ..., 0]
  np.testing.assert_allclose(heavy[1:4, 1:4], [[.5, .5, .5], [.5, 0, .5], [.5, .5, .5]])
  assert heavy[0].min() == heavy[:, 0].min() == 1.0  # one pixel each way, no further


def test_the_evaluation_sigma_and_extractor_indices_are_the_cpu_paths():
  # The draw's `kind` indexes both tuples: the device path keeps its own copy (nn imports
  # nothing from the input pipeline).
  assert device.EVAL_SIGMA == host.EVAL_SIGMA
  assert device.EXTRACTORS == host.EXTRACTORS


@pytest.mark.parametrize("training, line_weight, line_tone",
                         [(True, 0.0, 0.0), (False, 0.0, 0.0), (True, 0.8, 0.0),
                          (True, 0.8, 0.7)])
def test_device_batches_are_the_host_batches(tiny_config, training, line_weight, line_tone):
  """The same examples, the same extractor, parameter, line-weight and tone draws: a
  device-path batch, completed on the mesh, is the host path's batch."""
  config = tiny_config
  config.data.lineart_on = "device"
  config.data.line_weight = line_weight
  config.data.line_tone = line_tone
  mesh = mesh_lib.create_mesh()

  def first(on_device):
    if training:
      ds = datasets.create_train_dataset(config, seed=3, start_index=16,
                                         lineart_on_device=on_device)
    else:
      ds = datasets.create_eval_dataset(config, lineart_on_device=on_device)
    batch = next(ds.as_numpy_iterator())
    batch.pop("name", None)
    batch.pop("valid", None)
    return batch

  want, draw = first(False), first(True)
  assert set(draw) == {"target", "lineart_kind", "lineart_param"} | (
      {"lineart_weight"} if line_weight else set()) | (
      {"lineart_gamma"} if line_tone else set())
  if training:  # both extractors drawn (8 examples)
    assert set(draw["lineart_kind"]) == {0, 1}
  got = mesh_lib.fetch(inputs.Placer(config, mesh, training=training)(draw))
  # The device path's pipeline enlarges crops by plain bilinear, which is the antialiased
  # kernel's result when enlarging, to float rounding.
  np.testing.assert_allclose(got["target"], want["target"], atol=1e-5)
  _assert_same_lineart((want["lineart"] + 1) / 2, (got["lineart"] + 1) / 2)


def test_a_bad_place_is_refused_by_name(tiny_config):
  from mangacolor_jax.training import config_check  # pylint: disable=g-import-not-at-top
  tiny_config.data.lineart_on = "gpu"
  with pytest.raises(ValueError, match="config.data.lineart_on='gpu'"):
    config_check.validate_config(tiny_config)
