r"""How much the protocol's painted strokes can give: a trained model against two oracles.

  .venv/bin/python scripts/hint_headroom.py --config configs/anime_faces.py \
      --workdir runs/quality/faces/images_32000/seed_0 \
      --config.data.image_dir=../shared/data/anime_faces/faces64

On the quality protocol's test set (docs/quality.md: XDoG line art, the fixed test strokes
of `protocol.testset`), prints the model's PSNR gain over its own no-hint output with 10
and 30 strokes, beside what an oracle that knows each stroke's true region gains on top of
the same no-hint output. A stroke's region is the target's connected area of colours within
TOL (max over channels, [-1, 1] units) of the stroke's colour that the stroke touches:
- "flat" paints the region in the stroke's colour (a bucket fill that knows the region);
- "shift" moves the no-hint output's colours there by the difference of their mean to the
  stroke's colour (the model's shading kept).
When the model gains as much as these, its strokes are spread about as far as their colour
reaches: a larger gain needs strokes that say more (or a model that infers the colours of
unpainted regions from the painted ones).
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mangacolor_jax.infer import colorizer as colorizer_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.protocol import testset as testset_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "The run's config (its test split is read).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "A trained run (its latest checkpoint is scored).")
flags.DEFINE_list("tolerances", ["0.1", "0.2", "0.5"], "Region tolerances TOL.")
flags.mark_flags_as_required(["config", "workdir"])


def psnr(fake: np.ndarray, target: np.ndarray) -> float:
  """Mean PSNR (dB) of [N, H, W, 3] images in [-1, 1]."""
  mse = np.mean(((fake - target) / 2.0)**2, axis=(1, 2, 3))
  return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def oracles(plain: np.ndarray, target: np.ndarray, hints: np.ndarray, tol: float):
  """(flat, shift, share of the pixels in some stroke's region) on top of `plain`."""
  flat, shift, covered = plain.copy(), plain.copy(), []
  for b in range(len(target)):
    strokes, count = ndimage.label(hints[b, ..., 3] > 0)
    done = np.zeros(target.shape[1:3], bool)
    for s in range(1, count + 1):
      painted = strokes == s
      colour = hints[b][painted][:, :3].mean(0)
      close = np.max(np.abs(target[b] - colour), axis=-1) <= tol
      areas, _ = ndimage.label(close)
      touched = np.unique(areas[painted & close])
      region = (np.isin(areas, touched[touched > 0]) | painted) & ~done
      flat[b][region] = colour
      shift[b][region] = np.clip(plain[b][region] - plain[b][region].mean(0) + colour, -1, 1)
      done |= region
    covered.append(done.mean())
  return flat, shift, float(np.mean(covered))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  test = testset_lib.build_test_set(FLAGS.config, strokes=(0, 10, 30))
  model = colorizer_lib.Colorizer(FLAGS.workdir, "latest")
  art, target = test.lineart["xdog"], test.target

  def predict(hints):
    return np.concatenate([model.predict_batch(
        art[i:i + 100], None if hints is None else hints[i:i + 100])
                           for i in range(0, len(art), 100)])

  plain = predict(None)
  base = psnr(plain, target)
  print(f"{FLAGS.workdir} (step {model.step}): no hints {base:.2f} dB")
  for count in (10, 30):
    hints = test.hints[count]
    line = f"{count} strokes: model {psnr(predict(hints), target) - base:+.2f} dB"
    for tol in (float(t) for t in FLAGS.tolerances):
      flat, shift, covered = oracles(plain, target, hints, tol)
      line += (f"; TOL {tol}: flat {psnr(flat, target) - base:+.2f}, shift "
               f"{psnr(shift, target) - base:+.2f} ({covered:.0%} of the pixels)")
    print(line, flush=True)


if __name__ == "__main__":
  app.run(main)
