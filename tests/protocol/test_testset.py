"""The quality protocol's test set: fixed, whatever the trained config."""

import numpy as np

from mangacolor_jax.protocol import scoring
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


def _halves(n=8, side=32):
  """Targets whose left half is red and right half blue, on all-paper line art."""
  target = np.zeros((n, side, side, 3), np.float32) - 1.0
  target[:, :, :side // 2, 0] = 1.0
  target[:, :, side // 2:, 2] = 1.0
  return target, np.ones((n, side, side, 1), np.float32)


def test_guided_strokes_go_where_the_colours_are_wrong():
  """A model that colours the right half right and the left half wrong gets its strokes
  on the left half, in the left half's colour (strokes started anywhere would put half
  of them on the right)."""
  target, lineart = _halves()
  plain = target.copy()
  plain[:, :, :16] = 0.0  # grey where red belongs
  hints = testset.guided_hints(plain, target, lineart, count=10)
  mask = hints[..., 3]
  assert mask[:, :, :16].sum() > 0
  assert mask[:, :, 16:].sum() <= 0.05 * mask.sum()
  painted = mask[:, :, :16] > 0
  colours = hints[:, :, :16][painted][:, :3]
  np.testing.assert_allclose(colours, np.broadcast_to([1.0, -1.0, -1.0], colours.shape),
                             atol=1e-5)
  # The same outputs give the same strokes (the key is fixed).
  np.testing.assert_array_equal(hints, testset.guided_hints(plain, target, lineart, count=10))


def test_thirty_guided_strokes_are_painted_in_rounds():
  """Past ten, strokes go where the colouring with the strokes so far is still wrong. The
  model is far off on the left half and a little off on the right, and colours a half
  right once a stroke lands on it: one look puts all 30 strokes on the left (the right's
  error is small beside it), rounds put the second ten on the right, which the first ten
  fixed nothing of."""
  target, lineart = _halves()
  plain = target.copy()
  plain[:, :, :16] = 0.0  # grey where red belongs
  plain[:, :, 16:, 2] = 0.9  # blue, a little pale

  def predict(art, hints):
    out = plain.copy()
    for half in (slice(0, 16), slice(16, 32)):
      painted = hints[:, :, half, 3].sum(axis=(1, 2)) > 0
      out[painted, :, half] = target[painted, :, half]
    return out

  one_look = testset.guided_hints(plain, target, lineart, count=30)
  assert (one_look[:, :, 16:, 3].sum(axis=(1, 2)) == 0).any()  # a look misses the right
  rounds = testset.paint_where_wrong(predict, plain, target, lineart, count=30)
  assert (rounds[:, :, 16:, 3].sum(axis=(1, 2)) > 0).all()
  np.testing.assert_array_equal(predict(lineart, rounds), target)
  # The first round is the ten strokes' own; fewer than ten are one look.
  ten = testset.guided_hints(plain, target, lineart, count=10)
  np.testing.assert_array_equal(
      testset.paint_where_wrong(predict, plain, target, lineart, count=10), ten)
  assert (rounds[..., 3] >= ten[..., 3]).all()


def test_scoring_reports_guided_strokes_and_their_gain(tiny_config, ci_faces):
  """A hint-taking model is scored with the test strokes and the guided ones (a model that
  fills each painted pixel with its hint colour gains from both, the more the strokes the
  more); the other extractors and a model without hints are scored without."""
  test = testset.build_test_set(_config(tiny_config, ci_faces), strokes=(0, 10))

  def predict(lineart, hints):
    out = np.zeros(lineart.shape[:-1] + (3,), np.float32)  # grey everywhere
    return out if hints is None else np.where(hints[..., 3:] > 0, hints[..., :3], out)

  scores = scoring.score(predict, True, test)
  xdog = scores["xdog"]
  assert set(xdog) == {"strokes_0", "strokes_10"} | {f"guided_{n}" for n in testset.GUIDED}
  assert set(scores["dilate"]) == {"strokes_0"}
  assert xdog["strokes_10"]["psnr"] > xdog["strokes_0"]["psnr"]
  assert xdog["guided_30"]["psnr"] > xdog["guided_10"]["psnr"] > xdog["guided_1"]["psnr"] > (
      xdog["strokes_0"]["psnr"])
  assert set(scoring.score(predict, False, test)["xdog"]) == {"strokes_0"}
