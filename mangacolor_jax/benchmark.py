"""Command line: training and inference speed of a config on this machine.

  python -m mangacolor_jax.benchmark --config configs/default.py [--config.batch_size=N]
  python -m mangacolor_jax.benchmark --config configs/pix2pix.py:256 --input_batches 0
  python -m mangacolor_jax.benchmark --config configs/anime_faces_tfds.py --steps 0 \
      --input_batches 200   # the input pipeline alone: images/s and peak host memory

Prints one JSON line: steady-state training images/s (compilation excluded; the step is the
real `train_step`, fed a fixed in-memory batch so only the model is timed) with the
min/median/max of the per-step times, the process CPU time and minor page faults per step,
the compiled step's temporary buffer and its final losses, inference images/s
(generator forward), the input pipeline's images/s on the config's data source, compile
seconds, peak host memory, device kind and count. Speed targets live here, never in tests.

The measurements are `perf.timing` (`TrainBench` is the timed step on its own). Nothing
imports TensorFlow unless the input pipeline is timed (`--input_batches` > 0), so it also
runs where TensorFlow is not installed.

To compare with the PyTorch pix2pix peer, alternating, in one run:
  bash scripts/bench_vs_torch.sh 256
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from mangacolor_jax.perf import timing
from mangacolor_jax.training import config_check
from mangacolor_jax.utils import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Configuration file.", lock_config=True)
flags.DEFINE_integer("steps", 20, "Timed training steps (after warm-up); 0: time the input "
                     "pipeline alone (--input_batches), whose peak host memory is then "
                     "the pipeline's.")
flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
flags.DEFINE_integer("input_batches", 20, "Batches timed for the input pipeline (0: skip).")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  with cli.user_errors():
    config_check.validate_config(FLAGS.config)
  print(json.dumps(timing.benchmark(FLAGS.config, FLAGS.steps, FLAGS.warmup,
                                    FLAGS.input_batches)))


if __name__ == "__main__":
  cli.run(main)
