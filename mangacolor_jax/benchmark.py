"""Command line: training and inference speed of a config on this machine.

  python -m mangacolor_jax.benchmark --config configs/default.py [--config.batch_size=N]
  python -m mangacolor_jax.benchmark --config configs/pix2pix.py:256 --input_batches 0

Prints one JSON line: steady-state training images/s (compilation excluded; the step is the
real `train_step`, fed a fixed in-memory batch so only the model is timed) with the
min/median/max of the per-step times, the process CPU time and minor page faults per step,
the compiled step's temporary buffer and its final losses, inference images/s
(generator forward), the input pipeline's images/s on the config's data source, compile
seconds, peak host memory, device kind and count. Speed targets live here, never in tests.

`TrainBench` is the timed step on its own: scripts/bench_vs_torch.py and scripts/gpu_check.py
use it. Nothing here imports TensorFlow unless the input pipeline is timed
(`--input_batches` > 0), so it also runs where TensorFlow is not installed.

To compare with the PyTorch pix2pix peer, alternating, in one run:
  bash scripts/bench_vs_torch.sh 256
"""

import json
import resource
import statistics
import time

from absl import app
from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Configuration file.", lock_config=True)
flags.DEFINE_integer("steps", 20, "Timed training steps (after warm-up).")
flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
flags.DEFINE_integer("input_batches", 20, "Batches timed for the input pipeline (0: skip).")
flags.mark_flags_as_required(["config"])


def peak_host_memory_mb() -> float:
  # ru_maxrss is in KiB on Linux.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def step_stats(step_s: list[float]) -> dict:
  """min / median / max of per-step seconds, in ms."""
  return {"step_ms_min": round(1000 * min(step_s), 2),
          "step_ms_median": round(1000 * statistics.median(step_s), 2),
          "step_ms_max": round(1000 * max(step_s), 2)}


class TrainBench:
  """The config's real training step, compiled once, on a fixed synthetic batch.

  Attributes:
    compile_s: seconds to lower and compile the step.
    setup, state, batch, mesh: for further measurements (inference) on the same state.
  """

  def __init__(self, config, seed: int = 0):
    import functools  # pylint: disable=g-import-not-at-top
    import jax  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from mangacolor_jax import host_memory  # pylint: disable=g-import-not-at-top
    from mangacolor_jax import sharding  # pylint: disable=g-import-not-at-top
    from mangacolor_jax import trainer  # pylint: disable=g-import-not-at-top
    from mangacolor_jax import xla_cpu  # pylint: disable=g-import-not-at-top

    self._jax = jax
    self.config = config
    # What the trainer does (host_memory): before JAX's CPU client exists.
    reuse_step_memory = host_memory.prepare(config)
    self.mesh = sharding.create_mesh()
    sharding.check_batch_size(config.batch_size, self.mesh)
    self.setup = trainer.Setup(config)
    repl, data = sharding.replicated(self.mesh), sharding.data_sharded(self.mesh)
    h, w = self.setup.image_hw
    b = config.batch_size
    rng = np.random.default_rng(seed)
    self.batch = sharding.place_batch({
        "lineart": rng.uniform(-1, 1, (b, h, w, 1)).astype(np.float32),
        "target": rng.uniform(-1, 1, (b, h, w, 3)).astype(np.float32)}, self.mesh)
    self.state = jax.jit(self.setup.create_state, out_shardings=repl)(jax.random.key(seed))
    step_fn = xla_cpu.jit(functools.partial(trainer.train_step, self.setup), config,
                          in_shardings=(repl, data), out_shardings=(repl, repl),
                          donate_argnums=0)
    t0 = time.perf_counter()
    self.compiled = step_fn.lower(self.state, self.batch).compile()
    self.compile_s = time.perf_counter() - t0
    # XLA's compile-time heap (about 0.5 GB at 256x256) back to the OS, as in the trainer.
    host_memory.after_compiling(reuse_step_memory)
    self.metrics = None

  def run(self, steps: int, per_step: bool = True) -> list[float]:
    """Runs `steps` steps; returns each one's seconds (per_step) or [total seconds].

    Per-step times block on every step; without, the steps are dispatched back to back
    (what a training loop does on an accelerator) and only the total is timed.
    """
    jax = self._jax
    times = []
    t0 = time.perf_counter()
    for _ in range(steps):
      self.state, self.metrics = self.compiled(self.state, self.batch)
      if per_step:
        jax.block_until_ready(self.metrics)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        t0 = t1
    if not per_step:
      jax.block_until_ready((self.state, self.metrics))
      times.append(time.perf_counter() - t0)
    return times

  def check_finite(self) -> dict:
    """Loss values of the last step; raises if any is not finite."""
    import math  # pylint: disable=g-import-not-at-top
    losses = {k: float(v) for k, v in self._jax.device_get(self.metrics).items()
              if k in ("d_loss", "g_loss", "g_l1", "g_adv")}
    if not all(math.isfinite(v) for v in losses.values()):
      raise FloatingPointError(f"non-finite losses {losses}")
    return losses

  def temp_bytes(self) -> int:
    """Bytes of the compiled step's temporary buffer (its intermediate values; 0 if unknown)."""
    memory = self.compiled.memory_analysis()
    return int(getattr(memory, "temp_size_in_bytes", 0) or 0)

  def flops_per_step(self) -> float:
    """XLA's count of floating-point operations of one compiled step (0 if unknown)."""
    cost = self.compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", 0.0))


def benchmark(config, steps: int = 20, warmup: int = 2, input_batches: int = 20) -> dict:
  """Measures the config's training step, generator inference and input pipeline."""
  import jax  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import hints as hints_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import models  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import trainer  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import xla_cpu  # pylint: disable=g-import-not-at-top

  trainer.validate_config(config)
  bench = TrainBench(config)
  b = config.batch_size
  h, w = bench.setup.image_hw
  bench.run(warmup)
  cpu0, faults0 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  step_s = bench.run(steps)
  cpu_s = time.process_time() - cpu0
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
  losses = bench.check_finite()
  train_s = sum(step_s)
  state, batch = bench.state, bench.batch

  gen_fn = xla_cpu.jit(bench.setup.generate, config)
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
      **step_stats(step_s),
      "train_cpu_ms_per_step": round(1000 * cpu_s / steps, 1),
      # Pages the OS mapped afresh per step: near 0 when the step's scratch buffer is reused
      # (config.cpu_reuse_step_memory), about temp_buffer_mb / 4 KiB when it is not.
      "train_page_faults_per_step": round(faults / steps),
      "temp_buffer_mb": round(bench.temp_bytes() / 2**20, 1),
      "train_losses": losses,
      "inference_images_per_sec": round(b * steps / infer_s, 3),
      "compile_seconds": round(bench.compile_s, 2),
      "xla_gflop_per_step": round(bench.flops_per_step() / 1e9, 2),
      "g_params": models.count_params(state.g_params),
      "d_params": models.count_params(state.d_params),
      "device_kind": jax.devices()[0].device_kind,
      "device_count": jax.device_count(),
      "process_count": jax.process_count(),
  }
  if input_batches > 0:
    from mangacolor_jax import input_pipeline  # pylint: disable=g-import-not-at-top
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
  app.run(main)
