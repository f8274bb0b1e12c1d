r"""Seconds to colour one large line art on this machine, after compilation; recompiles.

Either a trained workdir (the real `infer.colorizer.Colorizer`: padding, jitted generator) or a
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
flags.DEFINE_string("workdir", "", "Trained workdir (uses infer.colorizer.Colorizer).")
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
    from mangacolor_jax.infer import colorizer as colorizer_lib  # pylint: disable=g-import-not-at-top
    colorizer = colorizer_lib.Colorizer(FLAGS.workdir)
    fn, jitted = (lambda: colorizer(lineart)), colorizer._generate  # pylint: disable=protected-access
    what = f"workdir {FLAGS.workdir} (step {colorizer.step})"
  else:
    from mangacolor_jax.nn import hints as hints_lib  # pylint: disable=g-import-not-at-top
    from mangacolor_jax.runtime import compile as compile_lib  # pylint: disable=g-import-not-at-top
    from mangacolor_jax.training import state as state_lib  # pylint: disable=g-import-not-at-top
    nets = state_lib.create_networks(FLAGS.config)
    state = jax.jit(nets.create_state)(jax.random.key(0))
    jitted = compile_lib.jit(nets.generate, FLAGS.config)
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
