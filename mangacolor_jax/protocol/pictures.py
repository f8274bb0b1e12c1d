"""The protocol's pictures: what the scores are of, for the eye.

PSNR rewards blur, so every scored run also gets a sheet of its colourings of the first
test faces (`write`: WORKDIR/pictures.png). Each row is one face:

  xdog line art | no hints | 10 strokes where wrong, on the line art | with them |
  dilate line art | no hints | xdog_thick line art | no hints | target

The strokes are the protocol's own (`testset.guided_hints`, the first round of
`guided_10`), so the pictures show the colourings that were scored. A model that takes no
hints gets the hint columns left out.
"""

import os

import numpy as np

from mangacolor_jax.protocol import scoring
from mangacolor_jax.protocol import testset as testset_lib
from mangacolor_jax.utils import files
from mangacolor_jax.utils import images

PICTURES = "pictures.png"
ROWS = 8  # faces shown
# The strokes are drawn for the whole first batch, as scoring draws them, so that they are
# the scored ones.
_BATCH = 64


def painted(lineart: np.ndarray, hints: np.ndarray) -> np.ndarray:
  """Line art ([N, H, W, 1]) with the painted strokes ([N, H, W, 4]) on it, RGB."""
  grey = np.repeat(lineart, 3, axis=-1)
  return np.where(hints[..., 3:] > 0, hints[..., :3], grey)


def sheet(predict: scoring.Predict, takes_hints: bool, test: testset_lib.TestSet,
          rows: int = ROWS) -> np.ndarray:
  """The picture sheet of `predict` on `test` (uint8 [rows * H, columns * W, 3])."""
  n = min(_BATCH, len(test.target))
  target = test.target[:n]
  art = {name: a[:n] for name, a in test.lineart.items()}
  plain = np.asarray(predict(art["xdog"], None))
  grey = lambda a: np.repeat(a, 3, axis=-1)
  columns = [grey(art["xdog"]), plain]
  if takes_hints:
    hints = testset_lib.guided_hints(plain, target, art["xdog"], 10)
    columns += [painted(art["xdog"], hints), np.asarray(predict(art["xdog"], hints))]
  for name in ("dilate", "xdog_thick"):
    columns += [grey(art[name]), np.asarray(predict(art[name], None))]
  columns.append(target)
  grid = np.concatenate([images.to_uint8(c[:rows]) for c in columns], axis=2)
  return grid.reshape(-1, grid.shape[2], 3)  # the rows one above the other


def write(workdir: str, predict: scoring.Predict, takes_hints: bool,
          test: testset_lib.TestSet) -> None:
  """Writes the sheet of a scored run to WORKDIR/pictures.png (atomically)."""
  files.save_image(os.path.join(workdir, PICTURES), sheet(predict, takes_hints, test))
