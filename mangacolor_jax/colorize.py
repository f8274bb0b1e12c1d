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
scales the result back up. Outputs are written atomically; inputs are never modified, and
nothing colorize did not write is overwritten: a folder --output is new, empty or an
earlier colorize's (its marker), and a file --output may only replace an image that
colorize wrote (PNG and JPEG outputs record it).
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from mangacolor_jax.utils import files

FLAGS = flags.FLAGS
COMMAND = "colorize"


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
  files.save_image(dst, rgb, COMMAND)


def _resize_hints(hint_tensor, h, w):
  """Nearest-neighbour placement of hint pixels on a smaller grid."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  out = np.zeros((h, w, 4), np.float32)
  ys, xs = np.nonzero(hint_tensor[..., 3] > 0)
  sy, sx = h / hint_tensor.shape[0], w / hint_tensor.shape[1]
  out[np.minimum((ys * sy).astype(int), h - 1),
      np.minimum((xs * sx).astype(int), w - 1)] = hint_tensor[ys, xs]
  return out


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


def plan_outputs(src: str, dst: str, hints: str | None) -> list[tuple[str, str]]:
  """(input, output) pairs for --input / --output, after checking that nothing a user
  owns would be overwritten: a folder --output must be colorize's own (or new), and a file
  --output may only replace an image that colorize wrote.

  Raises:
    app.UsageError / files.OutputError: naming the flag.
  """
  if os.path.isdir(src):
    names = sorted(n for n in os.listdir(src) if n.lower().endswith(EXTENSIONS))
    if not names:
      raise app.UsageError(f"--input folder {src} holds no {EXTENSIONS} image")
    if hints:
      raise app.UsageError("--hints needs a single --input image, not a folder")
    if os.path.abspath(dst) == os.path.abspath(src):
      raise app.UsageError("--output must differ from --input: inputs are never overwritten")
    files.claim_folder(dst, COMMAND, "--output")
    return [(os.path.join(src, n), os.path.join(dst, os.path.splitext(n)[0] + ".png"))
            for n in names]
  if not os.path.isfile(src):
    raise app.UsageError(f"--input {src} does not exist")
  if os.path.isdir(dst):
    dst = os.path.join(dst, os.path.splitext(os.path.basename(src))[0] + ".png")
  if os.path.abspath(dst) == os.path.abspath(src):
    raise app.UsageError("--output must differ from --input: inputs are never overwritten")
  if os.path.lexists(dst) and not files.written_by(dst, COMMAND):
    raise files.OutputError(f"--output={dst} exists and was not written by colorize: "
                            "choose another name (colorize never overwrites other files)")
  return [(src, dst)]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  try:
    pairs = plan_outputs(FLAGS.input, FLAGS.output, FLAGS.hints)
  except files.OutputError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
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
