"""Command line: train a colorizer.

  python -m mangacolor_jax.train --config configs/default.py --workdir runs/default

Any config field can be overridden, e.g. `--config.optim.g_lr=1e-4`. Restarting on the same
workdir resumes from its latest checkpoint. On several hosts, each runs the same command;
`jax.distributed.initialize()` is called when JAX_COORDINATOR_ADDRESS or SLURM_JOB_ID is
set (nothing else is detected yet).
"""

import os

from absl import app
from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  # Imported here so that --help answers without loading JAX and TensorFlow.
  import jax  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import loop  # pylint: disable=g-import-not-at-top

  if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("SLURM_JOB_ID"):
    jax.distributed.initialize()
  # The loop logs the process index and devices: asking JAX here would create its
  # backends before the loop has set them up (runtime.host_memory).
  loop.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
