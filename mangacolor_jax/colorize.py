"""Command line: colour line art with a trained model.

  python -m mangacolor_jax.colorize --workdir runs/faces --input sketch.png --output out.png
  python -m mangacolor_jax.colorize --workdir runs/faces --input sketches/ --output coloured/
  python -m mangacolor_jax.colorize --workdir runs/faces --input s.png --output o.png \
      --hints hints.png     # RGBA, same size as the sketch: opaque pixels are colour hints

Ensembles average several models' outputs (optionally weighted; see
infer.ensemble.EnsembleColorizer):
  python -m mangacolor_jax.colorize --ensemble runs/a,runs/b,runs/c --input s.png \
      --output o.png [--ensemble_weights uniform|psnr|disc]
  python -m mangacolor_jax.colorize --workdir runs/a --checkpoint 1000,2000,3000 ...

Any size and aspect: the sketch is padded with paper, never squashed. `--max_side` first
scales a large sketch down (aspect kept) to about the scale the model was trained at and
scales the result back up. Outputs are written atomically; inputs are never modified, and
nothing colorize did not write is overwritten: a folder --output is new, empty or an
earlier colorize's (its marker), and a file --output may only replace an image that
colorize wrote (PNG and JPEG outputs record it).

On a folder, sketches of one size are coloured together (8 at a time) under a progress bar
with images/s and the time left; an output newer than its
input, its hints and the model's checkpoint is kept, so a second run resumes where the
first stopped (`--redo` colours all again); a file that fails (not an image, hints of
another size) is reported by name at the end, after the others are done, and the exit
status is then 2.
"""

import os
import sys

from absl import app
from absl import flags
import tqdm

from mangacolor_jax.infer import ensemble
from mangacolor_jax.infer import sketches
from mangacolor_jax.utils import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.")
flags.DEFINE_string("ensemble", None, "Comma-separated workdirs whose outputs are "
                    "averaged (instead of --workdir).")
flags.DEFINE_enum("ensemble_weights", "uniform", ensemble.WEIGHTINGS,
                  ensemble.WEIGHTINGS_HELP)
flags.DEFINE_string("input", None, "A line-art image, or a folder of them (read "
                    "recursively, its tree mirrored under --output).")
flags.DEFINE_string("output", None, "Output image path, or a folder for a folder input.")
flags.DEFINE_string("hints", None, "Optional RGBA hint image (single input only).")
flags.DEFINE_string("checkpoint", "best", "best | latest | a step number, or several "
                    "comma-separated steps of --workdir to average (an ensemble).")
flags.DEFINE_integer("max_side", 0, "If > 0, colour at this longest side, then resize the "
                     "result back to the input size. 0: native resolution.")
flags.DEFINE_bool("normalize", True, "Stretch the sketch's levels to black lines on white.")
flags.DEFINE_bool("redo", False, "Colour every input again, even those whose output is "
                  "newer than the input and the model (kept by default: a run resumes).")
flags.mark_flags_as_required(["input", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  with cli.user_errors():
    pairs = sketches.plan_outputs(FLAGS.input, FLAGS.output, FLAGS.hints)
    if FLAGS.hints and not os.path.isfile(FLAGS.hints):
      raise ValueError(f"--hints {FLAGS.hints} does not exist")
    colorizer = sketches.create_colorizer(FLAGS.workdir, FLAGS.ensemble, FLAGS.checkpoint,
                                          FLAGS.ensemble_weights)
  since = sketches.model_time(colorizer)
  resume = os.path.isdir(FLAGS.input) and not FLAGS.redo  # one file is always coloured
  todo = [(s, d) for s, d in pairs
          if not (resume and sketches.up_to_date(s, d, FLAGS.hints, since))]
  if len(todo) < len(pairs):
    print(f"{len(pairs) - len(todo)} of {len(pairs)} outputs are newer than their input and "
          f"the model: kept (--redo colours them again)", file=sys.stderr)
  failed = []
  progress = tqdm.tqdm(total=len(todo), unit="image", disable=len(todo) < 2, file=sys.stderr)
  if FLAGS.hints:  # one input
    try:
      sketches.colorize_file(colorizer, *todo[0], FLAGS.hints, FLAGS.max_side,
                             FLAGS.normalize)
    except (ValueError, OSError) as e:  # not an image, hints of another size
      failed.append((todo[0][0], e))
  else:  # sketches of one size together
    for s, error in sketches.colorize_files(colorizer, todo, FLAGS.max_side, FLAGS.normalize):
      if error is not None:
        failed.append((s, error))
      progress.update()
  progress.close()
  for s, e in failed:
    print(f"error: {s}: {e}", file=sys.stderr)
  print(f"colorize: {len(todo) - len(failed)} coloured, {len(pairs) - len(todo)} kept, "
        f"{len(failed)} failed -> {FLAGS.output}")
  if failed:
    sys.exit(2)


if __name__ == "__main__":
  cli.run(main)
