"""Command line: colour line art with a trained model.

  python -m mangacolor_jax.colorize --workdir runs/faces --input sketch.png --output out.png
  python -m mangacolor_jax.colorize --workdir runs/faces --input sketches/ --output coloured/
  python -m mangacolor_jax.colorize --workdir runs/faces --input s.png --output o.png \
      --hints hints.png     # RGBA, same size as the sketch: opaque pixels are colour hints

Ensembles average several models' outputs (optionally weighted; see
inference.EnsembleColorizer):
  python -m mangacolor_jax.colorize --ensemble runs/a,runs/b,runs/c --input s.png \
      --output o.png [--ensemble_weights uniform|psnr|disc]
  python -m mangacolor_jax.colorize --workdir runs/a --checkpoint 1000,2000,3000 ...

Any size and aspect: the sketch is padded with paper, never squashed. `--max_side` first
scales a large sketch down (aspect kept) to about the scale the model was trained at and
scales the result back up. Outputs are written atomically; inputs are never modified.
"""

import os

from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS


def define_flags():
  """Flags of the command line (defined only when run as a command, so that the
  library functions here can be imported beside other commands)."""
  flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.")
  flags.DEFINE_string("ensemble", None, "Comma-separated workdirs whose outputs are "
                      "averaged (instead of --workdir).")
  flags.DEFINE_enum("ensemble_weights", "uniform", ["uniform", "psnr", "disc"],
                    "Ensemble weights: uniform; psnr (each member's validation PSNR saved "
                    "with its checkpoint); disc (each member's discriminator's score of its "
                    "output, per image).")
  flags.DEFINE_string("input", None, "A line-art image, or a folder of them.")
  flags.DEFINE_string("output", None, "Output image path, or a folder for a folder input.")
  flags.DEFINE_string("hints", None, "Optional RGBA hint image (single input only).")
  flags.DEFINE_string("checkpoint", "best", "best | latest | a step number, or several "
                      "comma-separated steps of --workdir to average (an ensemble).")
  flags.DEFINE_integer("max_side", 0, "If > 0, colour at this longest side, then resize the "
                       "result back to the input size. 0: native resolution.")
  flags.DEFINE_bool("normalize", True, "Stretch the sketch's levels to black lines on white.")
  flags.mark_flags_as_required(["input", "output"])

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def colorize_file(colorizer, src: str, dst: str, hints_path: str | None, max_side: int,
                  normalize: bool) -> None:
  """Colours one file into `dst` (atomic write)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import hints as hints_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import inference  # pylint: disable=g-import-not-at-top

  lineart = inference.read_lineart(src, normalize=normalize)
  h, w = lineart.shape[:2]
  hint_tensor = None
  if hints_path:
    if not colorizer.takes_hints:
      logging.warning("the model was trained without hints (hints.mode=none): %s is "
                      "ignored", hints_path)
    else:
      with Image.open(hints_path) as im:
        rgba = np.asarray(im.convert("RGBA"))
      if rgba.shape[:2] != (h, w):
        raise ValueError(f"--hints {hints_path} is {rgba.shape[1]}x{rgba.shape[0]} but the "
                         f"line art {src} is {w}x{h}; they must be the same size")
      hint_tensor = hints_lib.hints_from_rgba(rgba)
  scale = max_side / max(h, w) if max_side and max(h, w) > max_side else 1.0
  if scale != 1.0:
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    small = Image.fromarray(lineart[..., 0]).resize((sw, sh), Image.BILINEAR)
    lineart = np.asarray(small)[..., None]
    if hint_tensor is not None:
      hint_tensor = _resize_hints(hint_tensor, sh, sw)
  rgb = colorizer(lineart, hint_tensor)
  if scale != 1.0:
    rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BICUBIC))
  os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
  save_image(dst, rgb)


def _resize_hints(hint_tensor, h, w):
  """Nearest-neighbour placement of hint pixels on a smaller grid."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  out = np.zeros((h, w, 4), np.float32)
  ys, xs = np.nonzero(hint_tensor[..., 3] > 0)
  sy, sx = h / hint_tensor.shape[0], w / hint_tensor.shape[1]
  out[np.minimum((ys * sy).astype(int), h - 1),
      np.minimum((xs * sx).astype(int), w - 1)] = hint_tensor[ys, xs]
  return out


def save_image(dst, rgb):
  """Writes atomically (temp file + rename), in the format of dst's extension."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  root, ext = os.path.splitext(dst)
  tmp = f"{root}.tmp{ext}"
  Image.fromarray(rgb).save(tmp)
  os.replace(tmp, dst)


def create_colorizer(workdir, ensemble, checkpoint, weights="uniform"):
  """A Colorizer, or an EnsembleColorizer for --ensemble or several --checkpoint steps."""
  from mangacolor_jax import inference  # pylint: disable=g-import-not-at-top
  if bool(workdir) == bool(ensemble):
    raise app.UsageError("give exactly one of --workdir (one run) and --ensemble (several)")
  if workdir and "," not in checkpoint:
    colorizer = inference.Colorizer(workdir, checkpoint)
    logging.info("colouring with step %d of %s", colorizer.step, workdir)
    return colorizer
  try:
    members = inference.parse_members(workdir or ensemble, checkpoint)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  colorizer = inference.EnsembleColorizer(members, weights)
  logging.info("colouring with an ensemble (%s weights) of %s", weights,
               [f"{m.workdir}@{m.step}" for m in colorizer.members])
  return colorizer


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  src, dst = FLAGS.input, FLAGS.output
  if os.path.isdir(src):
    names = sorted(n for n in os.listdir(src) if n.lower().endswith(EXTENSIONS))
    if not names:
      raise app.UsageError(f"--input folder {src} holds no {EXTENSIONS} image")
    if FLAGS.hints:
      raise app.UsageError("--hints needs a single --input image, not a folder")
    if os.path.abspath(dst) == os.path.abspath(src):
      raise app.UsageError("--output must differ from --input: inputs are never overwritten")
    pairs = [(os.path.join(src, n), os.path.join(dst, os.path.splitext(n)[0] + ".png"))
             for n in names]
  elif os.path.isfile(src):
    if os.path.isdir(dst):
      dst = os.path.join(dst, os.path.splitext(os.path.basename(src))[0] + ".png")
    if os.path.abspath(dst) == os.path.abspath(src):
      raise app.UsageError("--output must differ from --input: inputs are never overwritten")
    pairs = [(src, dst)]
  else:
    raise app.UsageError(f"--input {src} does not exist")
  if FLAGS.hints and not os.path.isfile(FLAGS.hints):
    raise app.UsageError(f"--hints {FLAGS.hints} does not exist")

  colorizer = create_colorizer(FLAGS.workdir, FLAGS.ensemble, FLAGS.checkpoint,
                               FLAGS.ensemble_weights)
  for s, d in pairs:
    colorize_file(colorizer, s, d, FLAGS.hints, FLAGS.max_side, FLAGS.normalize)
    print(f"{s} -> {d}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
