"""The quality protocol's test set: fixed, whatever the trained config."""

import numpy as np

from mangacolor_jax.protocol import testset


def _config(tiny_config, folder):
  config = tiny_config
  config.data.source = "folder"
  config.data.image_dir = str(folder)
  config.data.image_size = config.data.image_width = 32
  config.data.test_fraction = 0.3
  config.hints.mode = "strokes"
  return config


def test_painted_strokes_are_the_defaults_and_ignore_trainings_strokes(tiny_config,
                                                                       ci_faces):
  defaults = tiny_config.hints
  for field, value in testset.PAINTED.items():
    assert tuple(np.atleast_1d(defaults[field])) == tuple(np.atleast_1d(value)), field
  config = _config(tiny_config, ci_faces)
  before = testset.build_test_set(config, strokes=(0, 10))
  config.hints.max_strokes = 60
  config.hints.stroke_length = (0.2, 0.5)
  after = testset.build_test_set(config, strokes=(0, 10))
  assert before.names == after.names and len(before.names) > 5
  np.testing.assert_array_equal(before.hints[10], after.hints[10])
  assert before.hints[10][..., 3].sum() > 0  # there are strokes
