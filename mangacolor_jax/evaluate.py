"""Command line: metrics of a trained model over a folder of colour images.

  python -m mangacolor_jax.evaluate --workdir runs/faces [--image_dir DIR] \
      [--save_images DIR] [--checkpoint best|latest|STEP]

Line art is made from each colour image the way training's validation makes it (fixed
extractor). Prints one JSON object: PSNR, SSIM, L1 in Lab and colourfulness of the outputs
against the targets' colourfulness, without hints and (for a model trained with hints) with
sparse hints sampled from the target with a fixed seed. Without --image_dir it uses the
run's own validation split. --save_images writes `line art | output | target` triptychs
under DIR/triptychs and the plain outputs under DIR/outputs, named like the inputs; DIR
must be a new or empty folder, or an earlier --save_images folder of evaluate.

Ensembles: `--ensemble DIR1,DIR2,...` (each run's --checkpoint), or `--workdir DIR
--checkpoint 1000,2000,3000` (several steps of one run), averages the members' outputs
(`--ensemble_weights uniform|psnr|disc`, see infer.ensemble.EnsembleColorizer) and reports the
ensemble's metrics beside each member's, all on the same images and hints.
"""

import json
import os

from absl import app
from absl import flags

from mangacolor_jax.infer import ensemble
from mangacolor_jax.infer import evaluation
from mangacolor_jax.utils import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.")
flags.DEFINE_string("image_dir", None, "Folder of colour images (default: validation split).")
flags.DEFINE_string("save_images", None, "Folder for triptychs and outputs.")
flags.DEFINE_string("checkpoint", "best", "best | latest | a step number, or several "
                    "comma-separated steps of --workdir to evaluate as an ensemble.")
flags.DEFINE_string("ensemble", None, "Comma-separated workdirs to evaluate as an "
                    "ensemble (instead of --workdir).")
flags.DEFINE_enum("ensemble_weights", "uniform", ensemble.WEIGHTINGS,
                  ensemble.WEIGHTINGS_HELP)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  with cli.user_errors():
    if FLAGS.image_dir and not os.path.isdir(FLAGS.image_dir):
      raise ValueError(f"--image_dir {FLAGS.image_dir} is not a folder")
    if bool(FLAGS.workdir) == bool(FLAGS.ensemble):
      raise ValueError("give exactly one of --workdir (one run) and --ensemble (several)")
    if FLAGS.workdir and "," not in FLAGS.checkpoint:
      result = evaluation.evaluate_run(FLAGS.workdir, FLAGS.image_dir, FLAGS.save_images,
                                       FLAGS.checkpoint)
    else:
      members = ensemble.parse_members(FLAGS.workdir or FLAGS.ensemble, FLAGS.checkpoint)
      result = evaluation.evaluate_ensemble(members, FLAGS.ensemble_weights,
                                            FLAGS.image_dir, FLAGS.save_images)
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  cli.run(main)
