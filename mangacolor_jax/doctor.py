r"""Command line: run the series' debugging checklist on a config, in a few minutes on a CPU.

  python -m mangacolor_jax.doctor --config configs/default.py --workdir runs/doctor

Prints one line per check -- PASS / WARN / FAIL, the measured number, what it means -- writes
the same to WORKDIR/doctor.json, and exits with status 1 when any check FAILs (2 when the
config itself is invalid). Nothing is trained or checkpointed in the workdir.

The checks, in order:

  data       input_range, input_centring, batches_differ, target_aligned, input_shapes,
             finite
  model      weights_init, initial_loss, one_step_lowers_loss, update_ratio,
             gradients_reach_layers, dead_units, frozen_stay_frozen,
             inference_deterministic, batchnorm_updates, non_square_shapes
  last       overfit_tiny_subset (the slowest: up to --overfit_steps training steps)
  --run DIR  late_fall: a training run's own TensorBoard curves, its validation L1 rising
             from its best while its training L1 falls (debug/curves)

Every check is a function of explicit inputs (batches, a `state.Networks`, a state), so
tests plant a fault -- zero weights, a pipeline repeating one batch, unscaled [0, 255]
inputs, a learning rate 1e4 times too high, a layer cut off from the loss -- by passing a
broken input, and see that check FAIL. The model checks run unsharded on the default device
on a fixed batch of `--images` training images; a check that raises counts as a FAIL.
The checks are the library `debug/` (`checklist`, `data_checks`, `model_checks`); this
module is the command line over it.
"""

import os
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

from mangacolor_jax.utils import cli

FLAGS = flags.FLAGS


def define_flags():
  """Flags of the command line (defined only when run as a command)."""
  config_flags.DEFINE_config_file("config", None, "Configuration file.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for doctor.json.")
  flags.DEFINE_integer("images", 8, "Images in the fixed batch of the model checks.")
  flags.DEFINE_integer("overfit_steps", 200, "Step budget of the overfitting check.")
  flags.DEFINE_float("overfit_factor", 5.0, "L1 reduction the overfitting check needs.")
  flags.DEFINE_list("skip", [], "Checks not to run.")
  flags.DEFINE_string("run", None, "A training run's workdir: also check its own curves for "
                      "the late fall (validation L1 rising while training L1 falls).")
  flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  """Runs the checks, prints a line each, writes doctor.json; exit 1 on a FAIL."""
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  # Imported here, as in `train` and `tune`, so that --help answers without loading JAX and
  # TensorFlow.
  import jax  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.debug import checklist  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.debug import curves  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import config_check  # pylint: disable=g-import-not-at-top
  config = FLAGS.config
  with cli.user_errors():
    config_check.validate_config(config)
  run_check = None
  if FLAGS.run:
    try:  # before the long checks: a wrong --run is one line, not minutes later
      status, measured, meaning = curves.check_run(FLAGS.run)
    except ValueError as e:
      cli.fail(f"--run: {e}")
    run_check = checklist.Result(
        "late_fall", status, None if measured is None else measured.val_rise, meaning)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  t0 = time.perf_counter()
  print(f"doctor: {len(jax.devices())} {jax.devices()[0].platform} device(s); model checks on "
        f"{FLAGS.images} training images", flush=True)
  opts = checklist.Options(images=FLAGS.images, overfit_steps=FLAGS.overfit_steps,
                           overfit_factor=FLAGS.overfit_factor, skip=tuple(FLAGS.skip))
  results = checklist.run_checks(config, opts, echo=lambda line: print(line, flush=True))
  if run_check is not None:
    print(run_check.line(), flush=True)
    results.append(run_check)
  path = os.path.join(FLAGS.workdir, "doctor.json")
  seconds = time.perf_counter() - t0
  checklist.write_report(results, path, {"config": config.to_dict(),
                                         "seconds": round(seconds, 1)})
  failed = [r.name for r in results if r.status == checklist.FAIL]
  warned = [r.name for r in results if r.status == checklist.WARN]
  print(f"doctor: {len(results) - len(failed) - len(warned)} PASS, {len(warned)} WARN, "
        f"{len(failed)} FAIL in {seconds:.0f} s; report {path}", flush=True)
  if failed:
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
