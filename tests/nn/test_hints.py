"""Training strokes: where they start."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import default
from mangacolor_jax.nn import hints as hints_lib


def _halves(n=16, side=32):
  """Targets whose left half is red and right half blue, on all-paper line art, and a
  colouring that gets the right half right and the left half grey."""
  target = np.full((n, side, side, 3), -1.0, np.float32)
  target[:, :, :side // 2, 0] = 1.0
  target[:, :, side // 2:, 2] = 1.0
  plain = target.copy()
  plain[:, :, :side // 2] = 0.0
  return jnp.asarray(target), jnp.ones((n, side, side, 1), jnp.float32), jnp.asarray(plain)


def _hints_config(**fields):
  config = ml_collections.ConfigDict(default.get_config().hints.to_dict())
  config.update(mode="strokes", drop_prob=0.0, max_strokes=10, **fields)
  return config


def _share_left(hints):
  mask = np.asarray(hints[..., 3])
  return mask[:, :, :16].sum((1, 2)) / np.maximum(mask.sum((1, 2)), 1)


def test_guided_training_strokes_go_where_the_colouring_without_hints_is_wrong():
  """guided_share=1: every image's strokes start where `plain` is wrong (the left half),
  in that region's colour; 0, or no colouring given: anywhere on paper, about half on
  each side, exactly the strokes it always drew."""
  target, lineart, plain = _halves()
  key = jax.random.key(3)
  anywhere = hints_lib.training_hints(key, _hints_config(), target, lineart, plain)
  guided = hints_lib.training_hints(key, _hints_config(guided_share=1.0), target, lineart,
                                    plain)
  assert 0.3 < _share_left(anywhere).mean() < 0.7
  assert _share_left(guided).min() > 0.95
  painted = np.asarray(guided[..., 3]) > 0
  colours = np.asarray(guided[..., :3])[painted]
  np.testing.assert_allclose(colours, np.broadcast_to([1.0, -1.0, -1.0], colours.shape),
                             atol=1e-5)
  no_plain = hints_lib.training_hints(key, _hints_config(guided_share=1.0), target, lineart)
  count_key, stroke_key = jax.random.split(key)
  before = hints_lib.stroke_hints(stroke_key, target, lineart,
                                  hints_lib.stroke_counts(count_key, 16, 10, 0.0),
                                  _hints_config())
  np.testing.assert_array_equal(np.asarray(anywhere), np.asarray(before))
  np.testing.assert_array_equal(np.asarray(no_plain), np.asarray(before))


def test_guided_share_picks_that_share_of_the_images():
  target, lineart, plain = _halves(n=64)
  hints = hints_lib.training_hints(jax.random.key(5), _hints_config(guided_share=0.5),
                                   target, lineart, plain)
  assert 0.3 < (_share_left(hints) > 0.95).mean() < 0.75


def test_error_weight_is_the_protocols_guided_weight_inside_the_image():
  """The square of the 5x5 mean of the colour error, as `protocol.testset.guided_hints`
  weighs starts (away from the border, where the two pad differently)."""
  from scipy import ndimage
  rng = np.random.default_rng(0)
  plain, target = rng.uniform(-1, 1, (2, 2, 12, 12, 3)).astype(np.float32)
  expected = np.square(ndimage.uniform_filter(np.abs(plain - target).mean(-1),
                                              size=(1, 5, 5)))
  np.testing.assert_allclose(np.asarray(hints_lib.error_weight(plain, target))[:, 2:-2, 2:-2],
                             expected[:, 2:-2, 2:-2], rtol=1e-5)


def test_error_weight_at_the_border_averages_only_the_pixels_inside():
  """At the image's border the 5x5 window is cut off: the mean is over the pixels that
  remain (on a 7x6 image, where every pixel is within two of a border)."""
  rng = np.random.default_rng(1)
  plain, target = rng.uniform(-1, 1, (2, 1, 7, 6, 3)).astype(np.float32)
  error = np.abs(plain - target).mean(-1)[0]
  expected = np.array([[error[max(i - 2, 0):i + 3, max(j - 2, 0):j + 3].mean() for j in range(6)]
                       for i in range(7)]) ** 2
  np.testing.assert_allclose(np.asarray(jax.jit(hints_lib.error_weight)(plain, target))[0],
                             expected, rtol=1e-5)


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_guided_share_outside_0_1_is_a_config_error(share):
  with pytest.raises(ValueError, match=r"config\.hints\.guided_share"):
    hints_lib.validate_hints_config(_hints_config(guided_share=share))
