r"""How a trained run's no-hint scores move with its colours' strength and its line art's
tone, pen width and XDoG scale.

  .venv/bin/python scripts/sensitivity.py --config configs/anime_faces.py \
      --workdir runs/quality/o1_strokes60/images_32000/seed_0 \
      --config.data.image_dir=../shared/data/anime_faces/faces64

Three sweeps on the protocol's test split of `--config`, nothing trained:

* Colour: the run's colourings of the XDoG line art with their chroma scaled about each
  pixel's grey (x0: grey, x1: as made, x1.3: 30% more colourful), scored for PSNR and the
  colourfulness ratio. It shows what the protocol's PSNR pays for the model's colours, and
  what a brighter colouring of the same guesses would cost.
* Tone: each extractor's line art with its grey levels raised to a power (< 1 lighter,
  > 1 darker; paper and full ink stay), coloured and scored. It shows how much of a gap
  between extractors is the lines' tone (`config.data.line_tone` trains against it).
* Width: XDoG line art at other sigmas (the protocol's `xdog_thick` is 0.8) and the
  protocol's XDoG thickened toward its 3x3 minimum (`config.data.line_weight`'s op), coloured
  and scored. It shows how fast a model falls off the line widths it trained on
  (`config.data.xdog_sigma`).
"""

import os
import sys

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mangacolor_jax.infer import colorizer as colorizer_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.input_pipeline import lineart  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.nn import image_metrics  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.protocol import testset as testset_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "The run's config (its test split and "
                                "image folder are read).", lock_config=True)
flags.DEFINE_string("workdir", None, "A trained run.")
flags.DEFINE_string("checkpoint", "latest", "Its checkpoint: latest | best | a step.")
flags.DEFINE_list("chroma", ["0", "0.5", "0.8", "1", "1.1", "1.2", "1.3", "1.4", "1.5"],
                  "Scales of the colourings' chroma.")
flags.DEFINE_list("powers", ["0.5", "0.6", "0.8", "1", "1.25"],
                  "Powers of the line art's grey levels.")
flags.DEFINE_list("sigmas", ["0.4", "0.5", "0.6", "0.7", "0.8"],
                  "XDoG sigmas (in the upscaled pixels of config.data.lineart_upscale).")
flags.DEFINE_list("thicken", ["0.25", "0.5"],
                  "Shares by which the protocol's XDoG moves toward its 3x3 minimum.")
flags.mark_flags_as_required(["config", "workdir"])


def scale_chroma(images: np.ndarray, scale: float) -> np.ndarray:
  """[..., 3] in [-1, 1] with each pixel's distance from its grey scaled by `scale`."""
  grey = images.mean(axis=-1, keepdims=True)
  return np.clip(grey + scale * (images - grey), -1.0, 1.0)


def tone(lineart: np.ndarray, power: float) -> np.ndarray:
  """[..., 1] in [-1, 1] with its grey levels (in [0, 1]) raised to `power`."""
  return ((lineart + 1.0) / 2.0) ** power * 2.0 - 1.0


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("too many arguments")
  model = colorizer_lib.Colorizer(FLAGS.workdir, FLAGS.checkpoint)
  test = testset_lib.build_test_set(FLAGS.config, strokes=(0,))
  metrics = jax.jit(step_lib.quality_metrics)
  target_colour = float(np.mean(np.asarray(image_metrics.colourfulness(
      image_metrics.to_unit(test.target)))))

  def colour(art, batch=50):
    return np.concatenate([np.asarray(model.predict_batch(art[i:i + batch], None))
                           for i in range(0, len(art), batch)])

  def score(outputs):
    m = jax.device_get(metrics(outputs, test.target))
    return (float(np.mean(m["psnr"])),
            float(np.mean(m["colourfulness"])) / target_colour)

  print(f"{FLAGS.workdir} (step {model.step}): PSNR dB, colourfulness ratio")
  plain = colour(test.lineart["xdog"])
  for s in FLAGS.chroma:
    print("chroma x{}: {:.2f} {:.2f}".format(s, *score(scale_chroma(plain, float(s)))))
  for name, art in test.lineart.items():
    for p in FLAGS.powers:
      print("{} power {}: {:.2f} {:.2f}".format(name, p, *score(colour(tone(art, float(p))))))
  upscale = int(FLAGS.config.data.lineart_upscale)
  for s in FLAGS.sigmas:
    art = testset_lib.line_art(test.target,
                               lambda im, s=float(s): lineart.xdog(im, s, upscale=upscale))
    print("xdog sigma {}: {:.2f} {:.2f}".format(s, *score(colour(art))))
  for share in FLAGS.thicken:
    art = testset_lib.line_art(test.target, lambda im, share=float(share): lineart.thicken(
        lineart.xdog(im, lineart.EVAL_SIGMA, upscale=upscale), share))
    print("xdog thickened {}: {:.2f} {:.2f}".format(share, *score(colour(art))))


if __name__ == "__main__":
  app.run(main)
