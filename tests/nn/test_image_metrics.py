"""Tests for mangacolor_jax.image_metrics.

tf.image.ssim / tf.image.psnr are the references; gradients are checked
against finite differences in float64, black and constant images included.
"""

import jax
import jax.numpy as jnp
from jax import test_util as jtu
import numpy as np
import pytest
import tensorflow as tf

from mangacolor_jax.nn import image_metrics
from mangacolor_jax.utils import images

# TensorFlow is only the reference here: keep it off any accelerator.
tf.config.set_visible_devices([], "GPU")

BATCH_METRICS = {
    "psnr": lambda x, y: image_metrics.psnr(x, y),
    "ssim": lambda x, y: image_metrics.ssim(x, y),
    "lab_l1": lambda x, y: image_metrics.lab_l1(x, y),
    "colourfulness": lambda x, y: image_metrics.colourfulness(x),
}


def _pattern(batch, height, width, phase=0.0):
  """Smooth deterministic images in [0.05, 0.95] (not random-looking)."""
  b, i, j, c = np.meshgrid(
      np.arange(batch),
      np.arange(height),
      np.arange(width),
      np.arange(3),
      indexing="ij",
  )
  values = 0.5 + 0.45 * np.sin(0.7 * i + 1.3 * j + 2.1 * c + 0.9 * b + phase)
  return values.astype(np.float32)


def _manga_panel(height=36, width=44):
  """A small line-art-like image: sky gradient, flat fills, black strokes."""
  i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  image = np.zeros((height, width, 3), np.float32)
  # Sky: vertical gradient from light blue to white.
  t = (i / (height - 1))[..., None]
  image[:] = (1 - t) * np.array([0.55, 0.75, 0.95]) + t * np.array([1, 1, 1])
  # Face: a flat skin-tone disc with a black outline.
  dist = np.hypot(i - height * 0.55, j - width * 0.4)
  radius = height * 0.3
  image[dist < radius] = [0.98, 0.85, 0.75]
  image[np.abs(dist - radius) < 0.8] = 0.0
  # Hair: a flat dark-red block with hatching lines.
  hair = (i < height * 0.35) & (j > width * 0.55)
  image[hair] = [0.45, 0.1, 0.12]
  image[hair & ((i + j) % 5 == 0)] = 0.0
  # A horizontal panel border.
  image[height - 3 : height - 1] = 0.0
  return image


def _degrade(image):
  """A plausible colorizer output: colour shift, box blur, 8-bit quantised."""
  shifted = image * np.array([0.9, 1.0, 1.08], np.float32) + 0.02
  padded = np.pad(shifted, ((1, 1), (1, 1), (0, 0)), mode="edge")
  blurred = sum(
      padded[di : di + image.shape[0], dj : dj + image.shape[1]]
      for di in range(3)
      for dj in range(3)
  ) / 9.0
  blurred = 0.7 * blurred + 0.3 * shifted
  return (np.round(np.clip(blurred, 0, 1) * 255) / 255).astype(np.float32)


def _tf_ssim(x, y, **kwargs):
  return tf.image.ssim(tf.constant(x), tf.constant(y), **kwargs).numpy()


# --- PSNR ---------------------------------------------------------------------


def test_psnr_constant_offset_is_20db():
  target = 0.8 * _pattern(2, 5, 7)
  pred = target + np.float32(0.1)
  result = image_metrics.psnr(pred, target)
  assert result.shape == (2,) and result.dtype == jnp.float32
  np.testing.assert_allclose(result, 20.0, atol=1e-4)
  np.testing.assert_allclose(
      result, tf.image.psnr(pred, target, max_val=1.0).numpy(), atol=1e-4
  )


def test_psnr_identical_is_capped_at_100db():
  black = np.zeros((2, 4, 6, 3), np.float32)
  for image in (black, _pattern(2, 4, 6)):
    result = np.asarray(image_metrics.psnr(image, image))
    np.testing.assert_allclose(result, 100.0, atol=1e-4)
  grad = jax.grad(lambda x: image_metrics.psnr(x, black).sum())(black)
  assert np.all(np.isfinite(grad))


def test_psnr_max_val_255():
  target = 200.0 * _pattern(1, 6, 4)
  pred = target + 10.0
  # 20 log10(255 / 10).
  np.testing.assert_allclose(
      image_metrics.psnr(pred, target, max_val=255.0), 28.1308, atol=1e-3
  )


# --- SSIM ---------------------------------------------------------------------


def test_ssim_identical_is_one():
  images = np.concatenate(
      [
          _pattern(1, 16, 13),
          np.zeros((1, 16, 13, 3), np.float32),  # black
          np.full((1, 16, 13, 3), 0.37, np.float32),  # constant
          np.ones((1, 16, 13, 3), np.float32),  # white
      ]
  )
  result = image_metrics.ssim(images, images)
  assert result.shape == (4,) and result.dtype == jnp.float32
  np.testing.assert_allclose(result, 1.0, atol=1e-5)


def test_ssim_matches_tf_on_random_images():
  rng = np.random.default_rng(0)
  target = rng.uniform(size=(3, 19, 27, 3)).astype(np.float32)
  noise = rng.normal(scale=0.15, size=target.shape)
  pred = np.clip(target + noise, 0, 1).astype(np.float32)
  np.testing.assert_allclose(
      image_metrics.ssim(pred, target), _tf_ssim(pred, target, max_val=1.0),
      atol=1e-4,
  )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"filter_size": 7, "sigma": 1.0, "k1": 0.02, "k2": 0.05},
    ],
)
def test_ssim_matches_tf_on_structured_images(kwargs):
  target = np.stack([_manga_panel(), _pattern(1, 36, 44)[0]])
  pred = np.stack([_degrade(target[0]), _degrade(target[1])])
  # Include a constant and a black image against the structured target.
  pred = np.concatenate([pred, np.full_like(pred[:1], 0.5), 0 * pred[:1]])
  target = np.concatenate([target, target[:1], target[:1]])
  tf_kwargs = {
      "filter_sigma" if k == "sigma" else k: v for k, v in kwargs.items()
  }
  expected = _tf_ssim(pred, target, max_val=1.0, **tf_kwargs)
  result = image_metrics.ssim(pred, target, **kwargs)
  np.testing.assert_allclose(result, expected, atol=1e-4)
  # The degraded panels are similar but not identical.
  assert np.all((result[:2] > 0.5) & (result[:2] < 0.99))


def test_ssim_max_val_255_matches_unit_range():
  target = _manga_panel()[None]
  pred = _degrade(target[0])[None]
  np.testing.assert_allclose(
      image_metrics.ssim(255 * pred, 255 * target, max_val=255.0),
      image_metrics.ssim(pred, target),
      atol=1e-5,
  )


@pytest.mark.parametrize(
    "height, width, used_size",
    [(7, 9, 7), (10, 12, 9), (12, 30, 11)],
)
def test_ssim_small_images_shrink_filter(height, width, used_size):
  # Noisy data: a pure sinusoid scores nearly the same for any window size.
  rng = np.random.default_rng(1)
  target = rng.uniform(size=(2, height, width, 3)).astype(np.float32)
  noise = rng.normal(scale=0.15, size=target.shape)
  pred = np.clip(target + noise, 0, 1).astype(np.float32)
  np.testing.assert_allclose(
      image_metrics.ssim(pred, target),
      _tf_ssim(pred, target, max_val=1.0, filter_size=used_size),
      atol=1e-4,
  )


def test_ssim_tiny_image_is_finite():
  target = _pattern(2, 1, 5)
  result = image_metrics.ssim(target, target)
  np.testing.assert_allclose(result, 1.0, atol=1e-5)
  grad = jax.grad(lambda x: image_metrics.ssim(x, target).sum())(0.9 * target)
  assert np.all(np.isfinite(grad))


# --- Lab ----------------------------------------------------------------------


def test_rgb_to_lab_known_colours():
  rgb = jnp.array(
      [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
  )
  expected = np.array(
      [
          [100.0, 0.0, 0.0],
          [0.0, 0.0, 0.0],
          [53.24, 80.09, 67.20],
          [32.30, 79.19, -107.86],
      ]
  )
  np.testing.assert_allclose(image_metrics.rgb_to_lab(rgb), expected, atol=0.05)


def test_rgb_to_lab_keeps_shape():
  rgb = _pattern(2, 5, 7)
  lab = image_metrics.rgb_to_lab(rgb)
  assert lab.shape == rgb.shape and lab.dtype == jnp.float32
  assert np.all((lab[..., 0] >= 0) & (lab[..., 0] <= 100))


def test_lab_l1_known_values():
  white = np.ones((1, 3, 5, 3), np.float32)
  black = np.zeros((1, 3, 5, 3), np.float32)
  both = np.concatenate([white, black])
  # |L| differs by 100, a and b by 0: mean over 3 channels is 100 / 3.
  np.testing.assert_allclose(
      image_metrics.lab_l1(both, both[::-1]), [100 / 3, 100 / 3], atol=1e-3
  )
  np.testing.assert_allclose(image_metrics.lab_l1(both, both), 0.0, atol=1e-6)


# --- Colourfulness ------------------------------------------------------------


def test_colourfulness_gray_is_zero():
  gray = np.stack([np.full((6, 9, 3), v, np.float32) for v in (0, 0.5, 1)])
  gray = np.concatenate([gray, np.repeat(_pattern(1, 6, 9)[..., :1], 3, -1)])
  np.testing.assert_allclose(image_metrics.colourfulness(gray), 0.0, atol=1e-3)


def test_colourfulness_red_green_checkerboard():
  i, j = np.meshgrid(np.arange(8), np.arange(10), indexing="ij")
  red = np.array([1.0, 0.0, 0.0], np.float32)
  green = np.array([0.0, 1.0, 0.0], np.float32)
  board = np.where(((i + j) % 2 == 0)[..., None], red, green)[None]
  # rg = +-255 (std 255, mean 0); yb = 127.5 everywhere (std 0):
  # M = 255 + 0.3 * 127.5.
  result = image_metrics.colourfulness(board)
  np.testing.assert_allclose(result, [293.25], rtol=1e-5)
  assert result[0] > 100


# --- Shared properties --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BATCH_METRICS))
def test_shapes_and_batch_independence(name):
  metric = BATCH_METRICS[name]
  pred = _pattern(3, 13, 17)
  target = _pattern(3, 13, 17, phase=0.5)
  result = np.asarray(metric(pred, target))
  assert result.shape == (3,) and result.dtype == np.float32
  assert np.all(np.isfinite(result))
  for i in range(3):
    alone = metric(pred[i : i + 1], target[i : i + 1])
    np.testing.assert_allclose(alone, result[i : i + 1], rtol=1e-6)
  # Replacing the other images (here with black ones) must not move image 0.
  pred_other = pred.copy()
  pred_other[1:] = 0.0
  np.testing.assert_allclose(
      metric(pred_other, target)[0], result[0], rtol=1e-6
  )


@pytest.mark.parametrize("name", sorted(BATCH_METRICS))
def test_jit_matches_eager(name):
  metric = BATCH_METRICS[name]
  pred, target = _pattern(2, 12, 14), _pattern(2, 12, 14, phase=1.0)
  np.testing.assert_allclose(
      jax.jit(metric)(pred, target), metric(pred, target), rtol=1e-5
  )


def test_bfloat16_inputs_give_float32():
  pred = jnp.asarray(_pattern(2, 12, 14), jnp.bfloat16)
  for name, metric in BATCH_METRICS.items():
    assert metric(pred, pred).dtype == jnp.float32, name


def test_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match="equal shape"):
    image_metrics.ssim(_pattern(1, 12, 14), _pattern(1, 14, 12))
  with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
    image_metrics.psnr(_pattern(1, 12, 14)[0], _pattern(1, 12, 14)[0])


def test_to_unit_and_to_uint8():
  x = jnp.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0])
  np.testing.assert_allclose(
      image_metrics.to_unit(x), [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]
  )
  as_uint8 = images.to_uint8(jnp.append(x, jnp.nan))
  assert isinstance(as_uint8, np.ndarray) and as_uint8.dtype == np.uint8
  # 0 -> 127.5 rounds half to even; 0.5 -> 191.25 rounds down.
  np.testing.assert_array_equal(as_uint8, [0, 0, 128, 191, 255, 255, 0])


# --- Gradients ----------------------------------------------------------------

# Inputs away from the sRGB / Lab branch thresholds so the finite differences
# (step 1e-4 along a random direction) stay on one branch.
_GRAD_CASES = {
    "pattern": lambda: _pattern(2, 12, 13),
    "black": lambda: np.zeros((2, 12, 13, 3)),
    "constant": lambda: np.full((2, 12, 13, 3), 0.6),
}

_GRAD_FUNCTIONS = {
    "ssim": lambda x, y: image_metrics.ssim(x, y),
    "rgb_to_lab": lambda x, y: image_metrics.rgb_to_lab(x),
    "lab_l1": lambda x, y: image_metrics.lab_l1(x, y),
    "colourfulness": lambda x, y: image_metrics.colourfulness(x),
}


@pytest.mark.parametrize("case", sorted(_GRAD_CASES))
@pytest.mark.parametrize("name", sorted(_GRAD_FUNCTIONS))
def test_gradients(name, case):
  fn = _GRAD_FUNCTIONS[name]
  # Second argument: a different smooth image, so lab_l1 is not at its kink.
  other = _pattern(2, 12, 13, phase=2.0)
  with jax.enable_x64(True):
    x = jnp.asarray(_GRAD_CASES[case](), jnp.float64)
    y = jnp.asarray(other, jnp.float64)
    # jit: one compile instead of one per primitive and shape (2-core CI).
    f = jax.jit(lambda x: fn(x, y))
    jtu.check_grads(f, (x,), order=1, modes=["rev"], atol=1e-6, rtol=1e-5)
    grad64 = jax.grad(lambda x: jnp.sum(f(x)))(x)
    assert grad64.dtype == jnp.float64
    assert np.all(np.isfinite(grad64))
  # float32, as training and evaluation run.
  grad32 = jax.jit(jax.grad(lambda x: jnp.sum(fn(x, other))))(
      jnp.asarray(_GRAD_CASES[case](), jnp.float32)
  )
  assert np.all(np.isfinite(grad32))


@pytest.mark.parametrize("value", [0.0, 0.6])
def test_ssim_gradients_identical_flat_images(value):
  # Both images flat: zero variance on both sides of every SSIM ratio.
  with jax.enable_x64(True):
    x = jnp.full((1, 12, 13, 3), value, jnp.float64)
    jtu.check_grads(
        jax.jit(image_metrics.ssim),
        (x, x),
        order=1,
        modes=["rev"],
        atol=1e-6,
        rtol=1e-5,
    )
  grads = jax.grad(
      lambda a, b: image_metrics.ssim(a, b).sum(), argnums=(0, 1)
  )(jnp.asarray(x, jnp.float32), jnp.asarray(x, jnp.float32))
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_rgb_to_lab_finite_outside_unit_range():
  # Unclipped generator outputs can leave [0, 1] slightly; no branch may NaN.
  rgb = jnp.linspace(-0.2, 1.2, 3 * 29).reshape(29, 3)
  lab, vjp = jax.vjp(image_metrics.rgb_to_lab, rgb)
  assert np.all(np.isfinite(lab))
  assert np.all(np.isfinite(vjp(jnp.ones_like(lab))[0]))
