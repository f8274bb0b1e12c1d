r"""Tuning commands: a learning-rate range test and jittered log-grid sweeps.

  python -m mangacolor_jax.tune lr_range --config CONFIG --workdir DIR \
      [--min 1e-7 --max 1 --steps 100]
  python -m mangacolor_jax.tune sweep --config CONFIG --workdir DIR \
      --param optim.g_lr=1e-5:1e-2:log:4 --param loss.l1_weight=1:1000:log:4 \
      [--jitter 0.3] [--trials_in_parallel K] [--metric eval_psnr] [--steps N] \
      [--refine] [--no_extend]

Any `--config.x=y` override applies to every ramp and trial, as in `train`. `--workdir`
must be a new or empty folder, or one that tune made (its marker, `.mangacolor_jax.json`).

lr_range raises the learning rate geometrically from --min to --max over --steps short
training steps (the real `trainer.train_step` on the real data), smooths the loss with a
bias-corrected moving average, stops once the smoothed loss exceeds --diverge_factor times
its minimum (or is not finite), smooths the curve again without lag (forwards and
backwards) and suggests a tenth of the rate at the minimum (the "minimum / 10" rule of the
range test; the steepest-descent rate is reported as well). For a GAN each network gets its
own ramp. First g_lr, with D training at the config's d_lr, watching the generator's L1
term (its adversarial term need not fall as the generator improves). Then d_lr, watching
the discriminator's loss, with the generator held still (--disc_ramp_g_lr=0): while G
learns, D's loss rises as the fakes improve whatever D's rate, which the test would read
as divergence; against a fixed G, D's task is an ordinary classification whose loss only
its own rate moves (on the faces the two readings differed by 2x: minimum at 2.5e-5 with
G learning at 2e-4, 5.7e-5 with G still). D's loss says how fast D can learn, not how
fast it should in a GAN: read its suggestion as a lower bound and the rate where it
diverged as the upper one. Writes
DIR/lr_range.json, DIR/lr_range.png and the curves to TensorBoard in DIR (x axis: ramp
step, which is log10(lr) up to a shift and scale).

sweep runs one normal training run per point of a grid, on a log (or linear) scale, over
one or more config fields, each point moved at random by up to --jitter grid steps (seeded
by --seed, so the same command gives the same points). Trial k trains in DIR/trial_k (point
TensorBoard at DIR to compare them) and, once finished, writes DIR/trial_k/result.json
atomically: a rerun of the same command skips finished trials and resumes unfinished ones
from their checkpoints. A trial's score is --metric at its best checkpoint (the one
`colorize` / `evaluate` use by default). When the best point lies on an edge of the grid,
the grid is extended one step past that edge around it and those points are run
(--no_extend turns this off; at most --max_extensions times); --refine then runs a grid
of half the spacing around the best point. Writes DIR/results.csv, DIR/results.md (the
ranked table) and DIR/sweep.png (the metric against each parameter; for two parameters
also a heat map over the grid).

--trials_in_parallel K runs K trials at once, each as its own
`python -m mangacolor_jax.train` process: useful on a machine with several accelerators or
spare cores. On a 2-core CPU keep K=1 (the default, trials run in this process): XLA
already uses every core for one trial, and K > 1 only adds contention and memory.
"""

import json
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from mangacolor_jax.tuning import grid
from mangacolor_jax.tuning import overrides
from mangacolor_jax.utils import cli

FLAGS = flags.FLAGS
COMMANDS = ("lr_range", "sweep")


def define_flags():
  """Flags of the command line (defined only when run as a command)."""
  config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for everything the command writes.")
  # lr_range
  flags.DEFINE_float("min", 1e-7, "lr_range: first learning rate of the ramp.")
  flags.DEFINE_float("max", 1.0, "lr_range: last learning rate of the ramp.")
  flags.DEFINE_integer("steps", None, "lr_range: steps per ramp (default 100). sweep: "
                       "config.num_train_steps of every trial (default: the config's).")
  flags.DEFINE_float("smoothing", 0.9, "lr_range: moving-average factor of the loss.")
  flags.DEFINE_float("disc_ramp_g_lr", 0.0, "lr_range: g_lr during the d_lr ramp (0: G "
                     "held still, so that D's loss reflects D's rate alone).")
  flags.DEFINE_float("diverge_factor", 4.0, "lr_range: stop once the smoothed loss exceeds "
                     "this times its minimum.")
  # sweep
  flags.DEFINE_multi_string("param", [], "sweep: FIELD=LO:HI:log|lin:N, e.g. "
                            "optim.g_lr=1e-5:1e-2:log:4 (repeat for several fields).")
  flags.DEFINE_float("jitter", 0.3, "sweep: each point moves by up to this many grid "
                     "steps (uniformly, seeded).")
  flags.DEFINE_integer("seed", 0, "sweep: seed of the jitter.")
  flags.DEFINE_integer("trials_in_parallel", 1, "sweep: trials run at once (K > 1: one "
                       "train process each; keep 1 on a 2-core CPU).")
  flags.DEFINE_string("metric", "eval_psnr", "sweep: validation metric ranking trials.")
  flags.DEFINE_enum("mode", "auto", ["auto", "max", "min"], "sweep: whether a higher "
                    "metric is better (auto: min for l1/lab/loss/mse metrics).")
  flags.DEFINE_bool("no_extend", False, "sweep: do not extend the grid past an edge that "
                    "holds the best point.")
  flags.DEFINE_integer("max_extensions", 2, "sweep: edge extensions at most.")
  flags.DEFINE_bool("refine", False, "sweep: then run a finer grid around the best point.")
  flags.DEFINE_integer("refine_points", 3, "sweep: points per field of the refined grid.")
  flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  """Runs the command named on the command line: lr_range or sweep."""
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"give one command: {' | '.join(COMMANDS)}")
  # Imported here, as in `train`, so that --help answers without loading JAX and TensorFlow.
  from mangacolor_jax.tuning import lr_range as lr_range_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.tuning import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  config = FLAGS.config
  if argv[1] == "lr_range":
    with cli.user_errors():  # the user's mistakes, before the ramps start
      lr_range_lib.check_inputs(config, FLAGS.workdir)
    result = lr_range_lib.lr_range(
        config, FLAGS.workdir, FLAGS.min, FLAGS.max, FLAGS.steps or 100,
        FLAGS.smoothing, FLAGS.diverge_factor, FLAGS.disc_ramp_g_lr)
    summary = {k: {f: v[f] for f in ("suggested_lr", "min_loss_lr", "steepest_lr",
                                     "diverged_at_lr")}
               for k, v in result["networks"].items()}
    print(json.dumps({"suggested": result["suggested"], "overrides": result["overrides"],
                      "networks": summary}, indent=1))
    return
  with cli.user_errors():
    params = [grid.parse_param(s) for s in FLAGS.param]
    opts = sweep_lib.Options(
        jitter=FLAGS.jitter, seed=FLAGS.seed, metric=FLAGS.metric, mode=FLAGS.mode,
        steps=FLAGS.steps, refine_points=FLAGS.refine_points,
        parallel=FLAGS.trials_in_parallel, config_file=FLAGS["config"].config_filename,
        config_args=tuple(overrides.config_args_from_argv(sys.argv[1:])))
    sweep = sweep_lib.Sweep(config, FLAGS.workdir, params, opts)
  ranked = sweep.run(extend=not FLAGS.no_extend, max_extensions=FLAGS.max_extensions,
                     refine=FLAGS.refine)
  print(sweep.markdown(ranked))
  print(f"wrote {os.path.join(FLAGS.workdir, 'results.csv')}, results.md and sweep.png")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
