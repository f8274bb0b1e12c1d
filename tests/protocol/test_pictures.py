"""The protocol's picture sheet shows the colourings that were scored."""

import numpy as np

from mangacolor_jax.protocol import pictures
from mangacolor_jax.protocol import testset
from mangacolor_jax.utils import images

SIDE = 32


def _test_set(n=70):
  rng = np.random.default_rng(0)
  target = rng.uniform(-1, 1, (n, SIDE, SIDE, 3)).astype(np.float32)
  # Paper with a few lines; each extractor's line art differs, so the columns can be told.
  art = {}
  for k, name in enumerate(testset.EXTRACTORS):
    a = np.ones((n, SIDE, SIDE, 1), np.float32)
    a[:, 4 + 6 * k::12, :] = -1.0
    art[name] = a
  return testset.TestSet([f"{i}.png" for i in range(n)], target, art, {0: None})


def _predict(lineart, hints):
  """A colorizer whose output tells its input: the line art tinted, hint colours painted."""
  out = lineart * np.array([1.0, 0.5, -0.5], np.float32)
  return out if hints is None else np.where(hints[..., 3:] > 0, hints[..., :3], out)


def _column(sheet, c, rows):
  return sheet[:rows * SIDE, c * SIDE:(c + 1) * SIDE]


def _stack(x):
  return images.to_uint8(x).reshape(-1, SIDE, 3)


def test_the_sheet_shows_the_scored_colourings_face_by_face():
  test = _test_set()  # longer than the batch the strokes are drawn in
  sheet = pictures.sheet(_predict, True, test, rows=5)
  assert sheet.shape == (5 * SIDE, 9 * SIDE, 3) and sheet.dtype == np.uint8
  xdog, dilate, thick = (test.lineart[k][:5] for k in ("xdog", "dilate", "xdog_thick"))
  # The strokes are the scored first round of ten where the colours are wrong.
  plain = _predict(test.lineart["xdog"], None)
  scored = testset.paint_where_wrong(_predict, plain, test.target, test.lineart["xdog"], 10)
  expected = [np.repeat(xdog, 3, -1), _predict(xdog, None),
              pictures.painted(xdog, scored[:5]), _predict(xdog, scored[:5]),
              np.repeat(dilate, 3, -1), _predict(dilate, None),
              np.repeat(thick, 3, -1), _predict(thick, None), test.target[:5]]
  for c, column in enumerate(expected):
    np.testing.assert_array_equal(_column(sheet, c, 5), _stack(column), err_msg=f"column {c}")
  # The painted column shows every stroke's colour where it is painted, line art elsewhere.
  assert scored[:5, ..., 3].sum() > 0
  strokes = scored[:5, ..., 3] > 0
  np.testing.assert_array_equal(pictures.painted(xdog, scored[:5])[strokes],
                                scored[:5, ..., :3][strokes])


def test_a_model_without_hints_gets_no_hint_columns():
  test = _test_set()
  sheet = pictures.sheet(_predict, False, test, rows=3)
  assert sheet.shape == (3 * SIDE, 7 * SIDE, 3)
  np.testing.assert_array_equal(_column(sheet, 6, 3), _stack(test.target[:3]))
  np.testing.assert_array_equal(_column(sheet, 3, 3),
                                _stack(_predict(test.lineart["dilate"][:3], None)))
