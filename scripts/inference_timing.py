r"""Seconds to colour one large line art on this machine, after compilation; recompiles.

Either a trained workdir (the real `inference.Colorizer`: padding, jitted generator) or a
config with freshly initialised weights (the time does not depend on the weights):

  .venv/bin/python scripts/inference_timing.py --workdir runs/faces --side 1024
  .venv/bin/python scripts/inference_timing.py --config configs/pix2pix.py:256 --side 1024

Prints the first call (with compilation), the min / median of --repeats further calls of
the same shape, and how many times the generator was compiled (1 = no recompilation).
"""

import os
import statistics
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config (random weights) instead of a workdir.")
flags.DEFINE_string("workdir", "", "Trained workdir (uses inference.Colorizer).")
flags.DEFINE_integer("side", 1024, "Line art height and width in pixels.")
flags.DEFINE_integer("repeats", 5, "Timed calls after the first.")


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  lineart = np.where(rng.uniform(size=(FLAGS.side, FLAGS.side, 1)) < 0.05, -1.0,
                     1.0).astype(np.float32)
  if FLAGS.workdir:
    from mangacolor_jax import inference  # pylint: disable=g-import-not-at-top
    colorizer = inference.Colorizer(FLAGS.workdir)
    fn, jitted = (lambda: colorizer(lineart)), colorizer._generate  # pylint: disable=protected-access
    what = f"workdir {FLAGS.workdir} (step {colorizer.step})"
  else:
    from mangacolor_jax import hints as hints_lib  # pylint: disable=g-import-not-at-top
    from mangacolor_jax import trainer  # pylint: disable=g-import-not-at-top
    from mangacolor_jax import xla_cpu  # pylint: disable=g-import-not-at-top
    setup = trainer.Setup(FLAGS.config)
    state = jax.jit(setup.create_state)(jax.random.key(0))
    jitted = xla_cpu.jit(setup.generate, FLAGS.config)
    x = jax.numpy.asarray(lineart[None])
    fn = lambda: np.asarray(jitted(state, x, hints_lib.no_hints(x)))
    what = "config (random weights)"
  t0 = time.perf_counter()
  fn()
  first = time.perf_counter() - t0
  times = []
  for _ in range(FLAGS.repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  print(f"{what}: {FLAGS.side}x{FLAGS.side} line art: first call {first:.2f} s (with "
        f"compilation), then min {min(times):.3f} s, median {statistics.median(times):.3f} s "
        f"over {len(times)} calls; generator compiled {jitted._cache_size()} time(s)")  # pylint: disable=protected-access


if __name__ == "__main__":
  app.run(main)
