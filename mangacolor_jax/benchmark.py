"""Command line: training and inference speed of a config on this machine.

  python -m mangacolor_jax.benchmark --config configs/default.py [--config.batch_size=N]

Prints one JSON line: steady-state training images/s (compilation excluded; the step is the
real `train_step`, fed a fixed in-memory batch so only the model is timed), inference
images/s (generator forward), the input pipeline's images/s on the config's data source,
compile seconds, peak host memory, device kind and count. Speed targets live here, never
in tests.
"""

import json
import resource
import time

from absl import app
from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS


def define_flags():
  """Flags of the command line (defined only when run as a command, so that the
  library functions here can be imported beside other commands)."""
  config_flags.DEFINE_config_file("config", None, "Configuration file.", lock_config=True)
  flags.DEFINE_integer("steps", 20, "Timed training steps (after warm-up).")
  flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
  flags.DEFINE_integer("input_batches", 20, "Batches timed for the input pipeline (0: skip).")
  flags.mark_flags_as_required(["config"])


def peak_host_memory_mb() -> float:
  # ru_maxrss is in KiB on Linux.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def benchmark(config, steps: int = 20, warmup: int = 2, input_batches: int = 20) -> dict:
  """Measures the config's training step, generator inference and input pipeline."""
  import functools  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import hints as hints_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import models  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import sharding  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import trainer  # pylint: disable=g-import-not-at-top

  trainer.validate_config(config)
  mesh = sharding.create_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  setup = trainer.Setup(config)
  repl, data = sharding.replicated(mesh), sharding.data_sharded(mesh)
  h, w = setup.image_hw
  b = config.batch_size
  rng = np.random.default_rng(0)
  batch = sharding.place_batch({
      "lineart": rng.uniform(-1, 1, (b, h, w, 1)).astype(np.float32),
      "target": rng.uniform(-1, 1, (b, h, w, 3)).astype(np.float32)}, mesh)
  state = jax.jit(setup.create_state, out_shardings=repl)(jax.random.key(0))

  step_fn = jax.jit(functools.partial(trainer.train_step, setup),
                    in_shardings=(repl, data), out_shardings=(repl, repl), donate_argnums=0)
  t0 = time.perf_counter()
  compiled = step_fn.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  for _ in range(warmup):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  train_s = time.perf_counter() - t0

  gen_fn = jax.jit(setup.generate)
  empty = hints_lib.no_hints(batch["lineart"])
  jax.block_until_ready(gen_fn(state, batch["lineart"], empty))
  t0 = time.perf_counter()
  for _ in range(steps):
    out = gen_fn(state, batch["lineart"], empty)
  jax.block_until_ready(out)
  infer_s = time.perf_counter() - t0

  result = {
      "config_batch_size": b,
      "image_size": [h, w],
      "dtype": config.dtype,
      "train_images_per_sec": round(b * steps / train_s, 3),
      "train_step_ms": round(1000 * train_s / steps, 2),
      "inference_images_per_sec": round(b * steps / infer_s, 3),
      "compile_seconds": round(compile_s, 2),
      "g_params": models.count_params(state.g_params),
      "d_params": models.count_params(state.d_params),
      "device_kind": jax.devices()[0].device_kind,
      "device_count": jax.device_count(),
      "process_count": jax.process_count(),
  }
  if input_batches > 0:
    ds = input_pipeline.create_train_dataset(config, seed=0)
    it = ds.as_numpy_iterator()
    next(it)  # start-up (file listing, first decode) is not throughput
    t0 = time.perf_counter()
    for _ in range(input_batches):
      next(it)
    result["input_images_per_sec"] = round(
        input_batches * (b // jax.process_count()) / (time.perf_counter() - t0), 1)
  result["peak_host_memory_mb"] = round(peak_host_memory_mb(), 1)
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  print(json.dumps(benchmark(FLAGS.config, FLAGS.steps, FLAGS.warmup, FLAGS.input_batches)))


if __name__ == "__main__":
  define_flags()
  app.run(main)
