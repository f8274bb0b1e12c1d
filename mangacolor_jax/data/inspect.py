r"""Command line: look at the batches a config feeds the model, and check them, before training.

  python -m mangacolor_jax.data.inspect --config configs/anime_faces_tfds.py \
      --config.data.tfds_dir=/tmp/faces_tfds --output /tmp/faces_inspect [--num_batches 4]

The series' data checks, run on the project's own pipeline (`input_pipeline`) with the
config's seed, as `train` would: the first `--num_batches` training batches (the data seed
and the sparse hints derived from `config.seed` the way the trainer derives them, so these
are the very batches of steps 1, 2, ...) and the first validation batch (with the trainer's
fixed evaluation hints).

Writes to `--output` (a new or empty folder, or an earlier inspect's: never a folder of
someone else's): `train_batch_<k>.png` and `validation_batch.png` (one row per example:
line art | hints, when the config gives hints | target, every value mapped from
[-1, 1] to [0, 255] exactly as the model receives it: a missing hint is 0, mid-grey),
`histograms.png` (the input values of each tensor, train and validation), `report.json`
(statistics per tensor and the checks), and the same images, histograms and means as
TensorBoard events (`tensorboard --logdir OUTPUT`).

Exits non-zero, naming the problem, when: two training batches are identical (the same batch
fed again and again) or a validation batch equals a training batch; every example of a
batch is the same image; a value is not finite or leaves [-1, 1]; a tensor's mean is
farther than `--max_abs_mean` from zero (line art is mostly paper, so its mean sits near
+0.6 on real drawings: the default 0.9 catches blank line art and unscaled inputs, not
paper); the target is never negative (scaled to [0, 1], not [-1, 1]) or the line art has
no ink; validation statistics stray from training's (scaled differently); or shapes differ
from [batch, H, W, C] of the config, between batches, or between train and validation.
Everything is written first, so the pictures show what failed.
"""

import json
import os

from absl import app
from absl import flags
from ml_collections import config_flags

from mangacolor_jax.data import command_line
from mangacolor_jax.data import inspection
from mangacolor_jax.utils import cli

FLAGS = flags.FLAGS


def define_flags():
  """The command's flags; defined only when it runs (the module imports as a library)."""
  config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                  lock_config=True)
  flags.DEFINE_string("output", None, "Folder for the grids, histograms, report and "
                      "TensorBoard events.")
  flags.DEFINE_integer("num_batches", 4, "Training batches to look at (>= 2).")
  flags.DEFINE_integer("max_images", 8, "Examples per grid at most.")
  flags.DEFINE_float("max_abs_mean", 0.9, "Fail when a tensor's mean is farther from 0.")
  flags.mark_flags_as_required(["config", "output"])


def main(argv):
  command_line.check_args(argv, ())
  try:
    report = inspection.inspect_data(
        FLAGS.config, FLAGS.output, num_batches=FLAGS.num_batches,
        max_images=FLAGS.max_images, max_abs_mean=FLAGS.max_abs_mean)
  except inspection.InspectionError as e:
    raise SystemExit(f"inspect: {e}") from None
  except ValueError as e:
    cli.fail(str(e))
  print(json.dumps({"output": os.path.abspath(FLAGS.output), "checks": report["checks"]}))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
