"""Training strokes: where they start."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import default
from mangacolor_jax.nn import hints as hints_lib


def _blue_squares(n=16, side=32, square=8):
  """Skin-coloured targets on all-paper line art, each with a blue 8x8 square (1/16 of it)."""
  target = np.broadcast_to(np.float32([0.9, 0.6, 0.4]), (n, side, side, 3)).copy()
  target[:, 4:4 + square, 20:20 + square] = [-0.8, -0.6, 0.9]
  return jnp.asarray(target), jnp.ones((n, side, side, 1), jnp.float32)


def _hints_config(**fields):
  config = ml_collections.ConfigDict(default.get_config().hints.to_dict())
  config.update(mode="strokes", drop_prob=0.0, max_strokes=10, **fields)
  return config


def _share_on_square(hints):
  mask = np.asarray(hints[..., 3])
  return mask[:, 4:12, 20:28].sum() / mask.sum()


def test_distinct_strokes_start_on_the_colours_a_character_does_not_share():
  """distinct_share=1: strokes start where the colour is far from the batch's mean (the
  blue square), so most painted pixels are blue; 0: anywhere on paper, so about the
  square's share of the image (1/16). 0 draws exactly the strokes it always drew."""
  target, lineart = _blue_squares()
  key = jax.random.key(3)
  anywhere = hints_lib.training_hints(key, _hints_config(), target, lineart)
  distinct = hints_lib.training_hints(key, _hints_config(distinct_share=1.0), target, lineart)
  assert _share_on_square(anywhere) < 0.2
  assert _share_on_square(distinct) > 0.8
  # Strokes keep to their region and carry its colour wherever they start.
  painted = np.asarray(distinct[..., 3]) > 0
  np.testing.assert_allclose(np.asarray(distinct[..., :3])[painted][:, 2].max(), 0.9,
                             atol=1e-5)
  counts = hints_lib.stroke_counts(jax.random.split(key)[0], 16, 10, 0.0)
  before = hints_lib.stroke_hints(jax.random.split(key)[1], target, lineart, counts,
                                  _hints_config())
  np.testing.assert_array_equal(np.asarray(anywhere), np.asarray(before))


def test_distinct_share_picks_that_share_of_the_images():
  target, lineart = _blue_squares(n=64)
  hints = hints_lib.training_hints(jax.random.key(5), _hints_config(distinct_share=0.5),
                                   target, lineart)
  per_image = np.asarray(hints[:, 4:12, 20:28, 3]).sum((1, 2)) / np.maximum(
      np.asarray(hints[..., 3]).sum((1, 2)), 1)
  mostly_square = (per_image > 0.8).mean()
  assert 0.3 < mostly_square < 0.75


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_distinct_share_outside_0_1_is_a_config_error(share):
  with pytest.raises(ValueError, match=r"config\.hints\.distinct_share"):
    hints_lib.validate_hints_config(_hints_config(distinct_share=share))
