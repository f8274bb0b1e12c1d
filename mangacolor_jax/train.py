"""Command line: train a colorizer.

  python -m mangacolor_jax.train --config configs/default.py --workdir runs/default

Any config field can be overridden, e.g. `--config.optim.g_lr=1e-4`. Restarting on the same
workdir resumes from its latest checkpoint. On several hosts, each runs the same command
with the cluster in its environment (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
JAX_PROCESS_ID by hand; SLURM, Open MPI, or MANGACOLOR_DISTRIBUTED=1 on TPU pods:
mangacolor_jax/runtime/distributed.py and the README's "Several hosts").
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from mangacolor_jax.utils import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  # Imported here so that --help answers without loading JAX and TensorFlow.
  from mangacolor_jax.runtime import distributed  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import config_check  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import loop  # pylint: disable=g-import-not-at-top

  with cli.user_errors():  # seconds, before anything compiles or reads data in bulk
    config_check.validate_config(FLAGS.config)
    distributed.initialize_from_environment()
    loop.check_devices(FLAGS.config)
  loop.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  cli.run(main)
